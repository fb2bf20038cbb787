"""The cost model's bookkeeping (benchmarks/cost_model.py): phase attribution, exponent fits, the 70B projection.

Why test a benchmark script: BENCHMARKS.md's cost model is only as good as the rule that splits time between
nested phases; a wrapper that double counts, or lets a forward under ``extract`` count as an intervention,
would move seconds between rows without any number looking wrong.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "cost_model.py"
spec = importlib.util.spec_from_file_location("cost_model", PATH)
assert spec is not None and spec.loader is not None
cost_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cost_model)


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_innermost_phase_wins_and_totals_add_up() -> None:
    clock = cost_model.PhaseClock()
    forward = clock.wrap(lambda: _busy(0.2), "forwards")

    def draws() -> None:
        _busy(0.03)
        forward()  # a forward inside a placebo draw is a forward, not a permutation

    permutations = clock.wrap(draws, "permutations")
    permutations()
    totals = clock.totals()
    # busy-waiting guarantees the lower bounds; the upper one only says the nested forward (0.2 s) was not
    # charged to the permutations as well (a loaded machine can stretch any phase by some milliseconds)
    assert totals["phases"]["forwards"]["wall_s"] >= 0.2
    assert 0.03 <= totals["phases"]["permutations"]["wall_s"] < 0.2
    assert abs(totals["unattributed_wall_s"]) < 1e-6
    assert totals["phases"]["forwards"]["cpu_s"] > 0  # busy-waiting burns CPU (less than wall on a shared machine)


def test_extraction_absorbs_the_forwards_under_it() -> None:
    clock = cost_model.PhaseClock()
    forward = clock.wrap(lambda: _busy(0.04), "forwards")
    extract = clock.wrap(lambda: forward(), "extraction")
    extract()
    totals = clock.totals()
    assert totals["phases"]["forwards"]["wall_s"] < 0.005
    assert totals["phases"]["extraction"]["wall_s"] >= 0.04


def test_time_is_charged_to_the_analysis_that_runs() -> None:
    clock = cost_model.PhaseClock()
    clock.set_analysis("c5")
    clock.wrap(lambda: _busy(0.02), "bootstrap")()
    by_analysis = clock.totals()["by_analysis"]
    assert by_analysis["c5"]["bootstrap"]["wall_s"] >= 0.02
    assert "bootstrap" not in by_analysis.get("(runner)", {})


def test_exponent_fit_recovers_a_power_law() -> None:
    points = [{"size": n, "total": {"cpu_s": 3.0 * n**1.5, "wall_s": 2.0 * n},
               "phases": {p: {"cpu_s": 0.01, "wall_s": 0.01} for p in cost_model.PHASES}} for n in (24, 48, 96)]
    fits = cost_model.fit_exponents(points)
    assert fits["total"]["cpu_s"] == pytest.approx(1.5, abs=0.01)
    assert fits["total"]["wall_s"] == pytest.approx(1.0, abs=0.01)
    assert fits["load"]["cpu_s"] is None  # below the floor: no exponent from noise


def test_tensor_classes_follow_the_shape() -> None:
    assert cost_model._tensor_class((49152, 576), 576, 49152) == "matrix"
    assert cost_model._tensor_class((8, 49152), 576, 49152) == "vocab"
    assert cost_model._tensor_class((48, 3, 576), 576, 49152) == "d"
    assert cost_model._tensor_class((8, 4), 576, 49152) == "other"


def test_projection_scales_each_class_by_its_own_rule() -> None:
    run = {"model": {"d_model": 576, "vocab": 49152},
           "download_bytes": {"a": {"d": 4 * 576 * 1000, "matrix": 4 * 576 * 49152, "other": 400}},
           "traces": {"a": {"traces": 3, "remote_traces": 2}}}
    row = cost_model.project(run)["per_analysis"]["a"]
    expected = (2 * 8192 * 1000 + 2 * 8192 * 128256 + 200) / 2**20
    assert row["projected_mb"] == pytest.approx(expected, abs=0.1)
    assert row["remote_traces"] == 2
