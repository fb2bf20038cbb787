"""Suite parsing: bundled suites validate; bad files fail with the key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conceptspace.suite._spec import SuiteError, load_suite, parse_suite

PROBES = Path(__file__).resolve().parents[2] / "probes"

GOOD = """\
[suite]
name = "t"
seed = 3

[quick]
max_items = 16

[claims.C4]
min_effect = 0.1
beat = ["untrained"]

[[analysis]]
id = "probe_truth"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = [1, 2]
max_items = 100
quick = { layers = [1] }
"""


@pytest.mark.parametrize("path", sorted(PROBES.glob("*.toml")), ids=lambda p: p.name)
def test_bundled_suites_validate(path):
    suite = load_suite(path)
    assert suite.analyses and set(a.claim for a in suite.analyses) <= set(suite.claims)


def test_battery_covers_every_claim():
    suite = load_suite(PROBES / "concept_space.toml")
    assert {a.claim for a in suite.analyses} == {"C1", "C2", "C3", "C4", "C5", "P5", "A6"}
    assert suite.correction == "holm"


def test_defaults_quick_and_overrides():
    suite = parse_suite(GOOD, "good.toml")
    spec = suite.analyses[0]
    assert spec.params["probe"] == "ridge" and spec.params["controls"] == ["control_task", "untrained", "lexical"]
    assert suite.seed == 3 and suite.n_permutations == 999
    quick = spec.resolved(True, 16)
    assert quick["layers"] == [1] and quick["max_items"] == 16
    assert spec.resolved(False, None)["max_items"] == 100
    run = suite.for_run(quick=True, seed=7, model="minilm-l6")
    assert run.seed == 7 and run.model == "minilm-l6"


def _error(text: str) -> str:
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "bad.toml")
    return str(info.value)


def test_unknown_key_names_line_and_suggests():
    message = _error(GOOD.replace("layers = [1, 2]", "layer = [1, 2]"))
    assert "bad.toml:17:" in message and "'layer'" in message and "did you mean 'layers'" in message


def test_unknown_suite_key_line():
    message = _error(GOOD.replace('seed = 3', 'sed = 3'))
    assert "bad.toml:3: suite.sed" in message and "did you mean 'seed'" in message


def test_wrong_type_names_key():
    message = _error(GOOD.replace('seed = 3', 'seed = "three"'))
    assert "bad.toml:3: suite.seed" in message and "integer" in message


def test_unknown_dataset_suggests():
    message = _error(GOOD.replace("animal_class\"", "animal_clas\""))
    assert "bad.toml:16:" in message and "unknown dataset" in message and "did you mean" in message


def test_unknown_analysis_kind():
    message = _error(GOOD.replace('kind = "probe"', 'kind = "prob"'))
    assert "bad.toml:15: analysis[0].kind" in message and "did you mean 'probe'" in message


def test_claim_must_match_kind_and_have_rule():
    assert "tests C4, not C1" in _error(GOOD.replace('claim = "C4"\nkind', 'claim = "C1"\nkind'))
    text = GOOD.replace("[claims.C4]", "[claims.C1]")
    assert "no verdict rule" in _error(text)


def test_bad_quick_key_and_toml_syntax():
    assert "analysis[0].quick.layerz" in _error(GOOD.replace("quick = { layers", "quick = { layerz"))
    assert "not valid TOML" in _error(GOOD + "\n[[analysis\n")


def test_duplicate_ids():
    block = GOOD[GOOD.index("[[analysis]]"):]
    assert "duplicate analysis id" in _error(GOOD + "\n" + block)
