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
