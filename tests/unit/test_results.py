"""TestResult / ResultSet: immutability, correction across the whole set, serialisation, rendering."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from conceptspace.errors import InvalidInputError
from conceptspace.stats import correct
from conceptspace.stats._results import ResultSet, TestResult


def make(test_id: str, p: float, **kw) -> TestResult:
    fields = dict(
        test_id=test_id,
        claim="linear",
        dataset="cities",
        layer=3,
        position="last",
        method="RidgeProbe",
        control=None,
        statistic_name="balanced_accuracy",
        statistic=0.8,
        effect_size_name="balanced_accuracy_minus_chance",
        effect_size=0.3,
        ci_low=0.25,
        ci_high=0.35,
        p_value=p,
        n=100,
        n_groups=25,
    )
    fields.update(kw)
    return TestResult(**fields)


P = [0.001, 0.01, 0.02, 0.04, 0.3]


def test_result_is_frozen_and_extra_is_deeply_immutable():
    r = make("a", 0.01, extra={"fold_scores": [0.7, 0.8], "meta": {"k": 1}, "arr": np.array([1.0, 2.0])})
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.p_value = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.extra["new"] = 1  # type: ignore[index]
    assert r.extra["fold_scores"] == (0.7, 0.8)
    with pytest.raises(TypeError):
        r.extra["meta"]["k"] = 2  # type: ignore[index]
    assert r.to_dict()["extra"] == {"fold_scores": [0.7, 0.8], "meta": {"k": 1}, "arr": [1.0, 2.0]}
    with pytest.raises(InvalidInputError, match="JSON-like"):
        make("b", 0.1, extra={"bad": object()})


def test_p_values_outside_unit_interval_are_rejected():
    with pytest.raises(InvalidInputError, match="p_value"):
        make("a", 0.0)
    with pytest.raises(InvalidInputError, match="p_value"):
        make("a", 1.5)


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_correction_adjusts_across_every_result_and_keeps_raw_p(method):
    rs = ResultSet(make(f"t{i}", p) for i, p in enumerate(P))
    corrected = rs.correct(method, alpha=0.05)
    reject, adjusted, _, _ = multipletests(P, alpha=0.05, method=method)
    assert [r.p_value for r in corrected] == P
    np.testing.assert_allclose([r.p_adjusted for r in corrected], adjusted)
    assert [r.significant for r in corrected] == list(reject)
    assert all(r.correction == method and r.alpha == 0.05 for r in corrected)
    assert all(r.p_adjusted is None for r in rs)  # original untouched
    assert correct(list(rs), method) == corrected


def test_holm_and_bh_differ_where_they_should():
    rs = ResultSet(make(f"t{i}", p) for i, p in enumerate(P))
    holm = [r.significant for r in rs.correct("holm")]
    bh = [r.significant for r in rs.correct("fdr_bh")]
    assert sum(bh) > sum(holm)


def test_nan_p_value_is_an_error_at_correction_time():
    rs = ResultSet([make("ok", 0.01), make("broken", math.nan)])
    with pytest.raises(InvalidInputError, match="broken"):
        rs.correct()
    with pytest.raises(InvalidInputError, match="holm"):
        ResultSet([make("ok", 0.01)]).correct("bonferroni")  # type: ignore[arg-type]


def test_sequence_behaviour_filter_and_concatenation():
    a = ResultSet([make("a", 0.01), make("b", 0.2, control="control_task")])
    b = ResultSet([make("c", 0.03, dataset="animals")])
    both = a + b
    assert len(both) == 3 and both[2].test_id == "c"
    assert isinstance(both[:2], ResultSet)
    assert [r.test_id for r in both.filter(control=None)] == ["a", "c"]
    assert [r.test_id for r in both.filter(dataset="cities", control="control_task")] == ["b"]
    with pytest.raises(InvalidInputError, match="unknown field"):
        both.filter(colour="red")
    with pytest.raises(InvalidInputError, match="duplicate"):
        a + a


def test_json_round_trip_is_strict_and_lossless():
    rs = ResultSet([make("a", 0.01, extra={"seed": 3}), make("b", 0.5, ci_low=math.nan)]).correct()
    text = rs.to_json()
    assert "NaN" not in text
    assert json.loads(text)["results"][1]["ci_low"] is None
    back = ResultSet.from_json(text)
    assert back[0] == rs[0]
    assert math.isnan(back[1].ci_low)


def test_frame_and_summary():
    rs = ResultSet([make("cities/L3", 0.001), make("cities/L3/control", 0.4, control="control_task")]).correct()
    frame = rs.to_frame()
    assert list(frame["test_id"]) == ["cities/L3", "cities/L3/control"]
    assert {"p_value", "p_adjusted", "significant", "ci_low", "extra"} <= set(frame.columns)
    text = rs.summary(title="Probe results")
    lines = text.splitlines()
    assert "Probe results" in lines[0]
    assert any(line.startswith("test") and "p_adj" in line for line in lines)
    assert any(line.startswith("cities/L3 ") and line.rstrip().endswith("*") for line in lines)
    assert "Correction: holm" in text
    widths = {len(line) for line in lines[1:] if set(line) <= {"=", "-"}}
    assert len(widths) == 1  # fixed width rules
