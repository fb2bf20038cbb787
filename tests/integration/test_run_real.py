"""`conceptspace run` on the bundled model: files written, twin beside every claim, same seed -> same results."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conceptspace.cli import main
from conceptspace.utils.threads import one_thread

SUITE = """\
[suite]
name = "small"
seed = 0
n_permutations = 99
n_bootstrap = 50

[claims.C4]
min_effect = 0.1
beat = ["untrained", "control_task"]

[claims.A6]
min_effect = 0.5
beat = []

[claims.C5]
min_effect = 0.1

[[analysis]]
id = "truth"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = [6, 18]
max_items = 40
controls = ["control_task", "untrained"]

[[analysis]]
id = "a6"
claim = "A6"
kind = "aggregation"
datasets = ["truth_is_universal/animal_class"]
max_items = 24
"""


def _without_timings(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("timings")
    for analysis in doc["analyses"]:
        analysis.pop("seconds", None)
    return doc


def test_run_writes_reports_and_is_deterministic(tmp_path, capsys):
    """Same suite and seed, same results: again, and in two worker processes (``--jobs 2``) on the real model.

    The first run is on one thread, as each worker computes: the float sums of a forward depend on the thread
    count (a one-process run on 2 threads differs from --jobs 2 in the last bits of uncached forwards)."""
    suite = tmp_path / "small.toml"
    suite.write_text(SUITE)
    with one_thread():
        assert main(["run", str(suite), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["run", str(suite), "--out", str(tmp_path / "b"), "--quiet", "--jobs", "2"]) == 0
    workers = json.loads((tmp_path / "b" / "results.json").read_text())["timings"]["workers"]
    assert workers == min(2, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else workers == 1
    for name in ("report.md", "report.html", "results.json"):
        assert (tmp_path / "a" / name).stat().st_size > 500
    assert list((tmp_path / "a" / "figures").glob("*.png"))
    first, second = _without_timings(tmp_path / "a" / "results.json"), _without_timings(tmp_path / "b" / "results.json")
    assert first == second
    verdicts = {v["claim"]: v for v in first["verdicts"]}
    assert verdicts["C5"]["verdict"] == "not run" and "no analysis" in verdicts["C5"]["reason"]
    controls = {(t["claim"], t["control"]) for t in first["tests"]}
    assert ("C4", "untrained") in controls and ("A6", "untrained") in controls
    # only primary tests are corrected (one per analysis); every other role keeps its raw p, unadjusted
    primary = [t for t in first["tests"] if t["extra"].get("role") == "primary"]
    assert len(primary) == 2 and all(t["p_adjusted"] is not None for t in primary)
    assert all(t["p_adjusted"] is None for t in first["tests"] if t["extra"].get("role") != "primary")
    assert first["model"]["parameters"] > 100_000_000 and len(first["model"]["weights_sha256"]) == 64
    out = capsys.readouterr().out
    assert "C4" in out and "report:" in out


def test_other_seed_changes_results(tmp_path):
    suite = tmp_path / "small.toml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["run", str(suite), "--out", str(tmp_path / "c"), "--seed", "1", "--quiet"]) == 0
    a, c = _without_timings(tmp_path / "a" / "results.json"), _without_timings(tmp_path / "c" / "results.json")
    assert c["seed"] == 1 and a["tests"] != c["tests"]


def test_bad_suite_is_a_one_line_error(tmp_path, capsys):
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace("max_items = 40", "max_item = 40"))
    assert main(["run", str(suite), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml:" in err and "did you mean 'max_items'" in err
