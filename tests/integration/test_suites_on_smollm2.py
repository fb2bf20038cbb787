"""Every bundled suite runs with --quick on the embedded default, SmolLM2-135M-Instruct (the main job and the
categories suite are run by test_real_models.py and test_compare_real.py; these are the other four)."""

from __future__ import annotations

import json

import pytest

from conceptspace.cli import main
from conceptspace.resources import probes_dir


@pytest.mark.parametrize("suite", ["analogies.toml", "sentiment.toml", "space_time.toml", "truth.toml"])
def test_bundled_suite_runs_quick_on_smollm2(suite, tmp_path, capsys):
    out = tmp_path / "report"
    status = main(["run", str(probes_dir() / suite), "--quick", "--out", str(out), "--quiet"])
    assert status == 0, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["model"]["n_layers"] == 30
    assert all(a["status"] == "ok" and a["n_tests"] > 0 for a in doc["analyses"]), doc["analyses"]
    assert {v["verdict"] for v in doc["verdicts"]} <= {"supported", "not supported", "inconclusive"}
