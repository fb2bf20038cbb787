"""The analysis scripts in examples/ run on the bundled model, so the public API they show cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_one_concept_prints_a_summary():
    table = _load("probe_one_concept").main(["--items", "40", "--permutations", "49"])
    assert "Correction: holm" in table and "/layer.25/" in table


def test_compare_with_twin_saves_a_figure(tmp_path):
    out = _load("compare_with_twin").main(["--items", "40", "--permutations", "49", "--out", str(tmp_path / "f.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steer_dose_response_saves_a_figure(tmp_path):
    out = _load("steer_dose_response").main(["--items", "30", "--random", "2", "--out", str(tmp_path / "s.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steer_and_read_prints_three_different_generations():
    texts = _load("steer_and_read").main(["--tokens", "8"])
    assert sorted(texts) == [-0.4, 0.0, 0.4]
    assert all(len(row) == 2 and all(t.strip() for t in row) for row in texts.values())
    assert texts[0.4] != texts[0.0] and texts[-0.4] != texts[0.0] and texts[0.4] != texts[-0.4]


def test_probe_own_concept_prints_the_probe_beside_its_controls(tmp_path):
    table = _load("probe_own_concept").main(["--permutations", "49", "--out", str(tmp_path / "tense.csv")])
    assert (tmp_path / "tense.csv").read_text().count("\n") == 201  # header + 200 sentences
    for control in ("control_task", "untrained", "lexical"):
        assert control in table


def test_run_suite_on_minilm_writes_a_report(tmp_path):
    verdicts = _load("run_suite_on_minilm").main(["--out", str(tmp_path / "r")])
    assert set(verdicts) == {"C1", "C4"} and (tmp_path / "r" / "report.md").exists()
