"""conceptspace compare: one report across runs, verdicts claim by run, curves aligned by relative depth."""

from __future__ import annotations

import json

import pytest

from conceptspace.cli import main
from conceptspace.errors import InvalidInputError
from conceptspace.report import compare_runs, read_run, write_comparison

SUITE = """\
[suite]
name = "compare_check"
model = "{model}"
n_permutations = 19
n_bootstrap = 20

[claims.C4]
min_effect = 0.1
beat = ["untrained"]

[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = "all"
max_items = 32
controls = ["untrained"]
"""


@pytest.fixture(scope="module")
def two_runs(tiny_model_dirs, tmp_path_factory):
    """The same suite on a 3-block llama and a 3-block gpt2 (tiny random models), written by `conceptspace run`."""
    base = tmp_path_factory.mktemp("runs")
    folders = []
    for arch in ("llama", "gpt2"):
        suite = base / f"{arch}.toml"
        suite.write_text(SUITE.format(model=tiny_model_dirs[arch]))
        out = base / arch
        assert main(["run", str(suite), "--out", str(out), "--quiet"]) == 0
        folders.append(out)
    return folders


def test_runs_are_read_from_their_own_results(two_runs):
    runs = compare_runs(two_runs)
    document = json.loads((two_runs[0] / "results.json").read_text())
    assert runs[0].verdicts["C4"]["verdict"] == document["verdicts"][0]["verdict"]
    assert [r.test_id for r in runs[0].results] == [t["id"] for t in document["tests"]]
    # relative depth: block i of an L-block model sits at i / (L - 1)
    probe = [r for r in runs[1].results if r.control is None and r.layer is not None]
    n_layers = runs[1].model["n_layers"]
    assert sorted(runs[1].depth(r) for r in probe) == [i / (n_layers - 1) for i in range(n_layers)]


def test_comparison_writes_a_verdict_table_and_overlaid_curves(two_runs, tmp_path):
    paths = write_comparison(two_runs, tmp_path / "cmp", labels=["llama", "gpt2"])
    markdown = paths["markdown"].read_text()
    assert "| claim | llama | gpt2 |" in markdown
    assert any(line.startswith("| C4 |") for line in markdown.splitlines())
    assert (tmp_path / "cmp" / "figures" / "compare-C4.png").read_bytes().startswith(b"\x89PNG")
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "<script" not in html


def test_compare_command_and_its_errors(two_runs, tmp_path, capsys):
    assert main(["compare", str(two_runs[0]), str(two_runs[1]), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "compare.md").exists()
    assert main(["compare", str(two_runs[0]), str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    assert "no results.json" in capsys.readouterr().err and not (tmp_path / "d").exists()
    with pytest.raises(InvalidInputError, match="at least two"):
        compare_runs(two_runs[:1])
    with pytest.raises(InvalidInputError, match="one label per run"):
        compare_runs(two_runs, labels=["only one"])
    assert read_run(two_runs[0] / "results.json").label == read_run(two_runs[0]).label
