"""Suite parsing: bundled suites validate; bad files fail with the key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conceptspace.suite._spec import SuiteError, load_suite, parse_suite
from conceptspace.theory._claims import CLAIMS

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
    assert {a.claim for a in suite.analyses} == set(CLAIMS)  # C1-C5, P5, A6 and issue 15's claims
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


def test_renamed_keys_still_read_for_one_release_with_a_warning():
    """One vocabulary: steering's ``alphas`` is now ``strengths``; an old suite still runs, and is told where."""
    import warnings

    from conceptspace.analyses.causal import steering_test

    text = """\
[suite]
name = "old"
[claims.C5]
min_effect = 0.1
[[analysis]]
id = "steer"
claim = "C5"
kind = "steering"
dataset = "vader_lexicon/polarity"
layer = 1
positive = ["a"]
negative = ["o"]
prompts = ["x"]
alphas = [-1.0, 1.0]
quick = { alphas = [1.0] }
"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = parse_suite(text, "old.toml").analyses[0]
    assert spec.params["strengths"] == [-1.0, 1.0] and spec.quick["strengths"] == [1.0]
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("old.toml:15" in m and "'strengths'" in m for m in messages), messages
    with pytest.raises(SuiteError, match="give only 'strengths'"):
        parse_suite(text.replace("alphas = [-1.0, 1.0]", "alphas = [1.0]\nstrengths = [1.0]"), "both.toml")
    with pytest.warns(DeprecationWarning, match="'n_boot' is renamed 'n_bootstrap'"):
        from conceptspace.stats import grouped_bootstrap

        grouped_bootstrap(lambda rows: float(len(rows)), None, 10, n_boot=5, seed=0)
    with pytest.raises(TypeError, match="both 'name'"):
        steering_test(None, None, [], ([], []), site=0, name="a", dataset="b")


def test_an_analysis_may_cap_its_sequential_draws_below_the_suites():
    from conceptspace.suite._runner import _draw_cap

    suite = load_suite(PROBES / "concept_space.toml")
    steering = next(a for a in suite.analyses if a.kind == "steering")
    probe = next(a for a in suite.analyses if a.kind == "probe")
    assert _draw_cap(suite, steering) == 2000 and _draw_cap(suite, probe) == suite.max_permutations
    quick = suite.for_run(quick=True)
    assert _draw_cap(quick, steering) == 2000 and _draw_cap(quick, probe) == 10000
    assert suite.to_dict()["analyses"][[a.id for a in suite.analyses].index(steering.id)]["max_permutations"] == 2000


def test_must_fail_controls_are_read_checked_and_recorded():
    suite = parse_suite(GOOD.replace('beat = ["untrained"]', 'beat = ["untrained"]\nmust_fail = ["untrained"]'),
                        "good.toml")
    assert suite.claims["C4"].must_fail == ("untrained",)
    assert suite.to_dict()["claims"]["C4"]["must_fail"] == ["untrained"]
    assert parse_suite(GOOD, "good.toml").claims["C4"].must_fail == ()
    message = _error(GOOD.replace('beat = ["untrained"]', 'beat = ["untrained"]\nmust_fail = ["twin"]'))
    assert "bad.toml:11: claims.C4.must_fail" in message and "unknown control 'twin'" in message
    battery = load_suite(PROBES / "concept_space.toml")
    assert battery.claims["P5"].must_fail == ("untrained", "spectrum_matched")
