"""TestResult / ResultSet: immutability, correction across the whole set, serialisation, rendering."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from conceptspace.errors import InvalidInputError
from conceptspace.stats import correct
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from tests.result_factory import make_result, names


def make(name: str, p: float, **kw) -> TestResult:
    kw.setdefault("claim", "linear")
    return make_result(name, p_value=p, **kw)


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
    assert len(both) == 3 and names(both)[2] == "c"
    assert isinstance(both[:2], ResultSet)
    assert names(both.filter(control=None)) == ["a", "c"]
    assert names(both.filter(dataset="cities", control="control_task")) == ["b"]
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
    assert list(frame["test_id"]) == [r.key.id for r in rs]
    assert list(frame["layer"]) == [3, 3] and list(frame["site"]) == ["layer.3", "layer.3"]
    assert {"p_value", "p_adjusted", "significant", "ci_low", "extra"} <= set(frame.columns)
    text = rs.summary(title="Probe results")
    lines = text.splitlines()
    assert "Probe results" in lines[0]
    assert any(line.startswith("test") and "p_adj" in line for line in lines)
    assert any(line.startswith(rs[0].test_id + " ") and line.rstrip().endswith("*") for line in lines)
    assert "Correction: holm" in text
    widths = {len(line) for line in lines[1:] if set(line) <= {"=", "-"}}
    assert len(widths) == 1  # fixed width rules


def test_key_names_counterparts_by_field_not_by_string():
    key = TestKey(test="probe", dataset="truth", method="RidgeProbe", site="layer.9", position="last",
                  analysis="c4_truth")
    assert key.id == "c4_truth/probe/truth/layer.9/last/RidgeProbe/task"
    twin = key.counterpart("untrained")
    assert (twin.control, twin.model, twin.site) == ("untrained", "untrained", "layer.9")
    lexical = key.counterpart("lexical")
    assert (lexical.control, lexical.site, lexical.model) == ("lexical", "embed", "trained")
    assert key.counterpart("control_task") == key.replace(control="control_task")
    # the twin convention is one rule: a test on the untrained model is its "untrained" control ...
    assert TestKey(test="t", dataset="d", method="m", model="untrained").control == "untrained"
    # ... and a placebo run on the twin says both, so it never collides with the model's placebo
    placebo = key.replace(control="random_direction")
    on_twin = placebo.replace(model="untrained")
    assert placebo.id != on_twin.id and on_twin.id.endswith("random_direction@untrained")


def test_key_refuses_what_cannot_name_a_test():
    with pytest.raises(InvalidInputError, match="method"):
        TestKey(test="probe", dataset="d", method="")
    with pytest.raises(InvalidInputError, match="model"):
        TestKey(test="probe", dataset="d", method="m", model="half-trained")


def test_result_fields_come_from_its_key_and_round_trip():
    r = make("a", 0.01, site="layer.12", control="control_task")
    assert (r.layer, r.site, r.dataset, r.control) == (12, "layer.12", "cities", "control_task")
    assert make("b", 0.01, site="unembed").layer is None
    moved = r.replace(analysis="c4", control=None, p_value=0.2)
    assert moved.key.analysis == "c4" and moved.control is None and moved.p_value == 0.2 and r.control == "control_task"
    back = TestResult.from_dict(json.loads(json.dumps(moved.to_dict())))
    assert back == moved and back.key == moved.key


def test_correct_warns_when_the_permutation_floor_cannot_reach_alpha_over_m():
    """96 tests with 199 permutations each: p >= 0.005 > 0.05 / 96, so Holm can reject none of them alone."""
    from conceptspace.stats import PValueFloorWarning, attainable_floor

    rs = ResultSet(make(f"t{i}", 1 / 200, extra={"n_permutations": 199}) for i in range(96))
    assert attainable_floor(rs[0]) == 1 / 200
    with pytest.warns(PValueFloorWarning, match="96 of 96 tests cannot reach alpha/m") as caught:
        corrected = rs.correct("holm")
    assert "can never pass" not in str(caught[0].message)
    assert not any(r.significant for r in corrected)  # the warning says exactly what happened
    with warnings.catch_warnings():  # enough permutations, or a test without a floor: silence
        warnings.simplefilter("error", PValueFloorWarning)
        ResultSet(make(f"t{i}", 1 / 5000, extra={"n_permutations": 4999}) for i in range(96)).correct("holm")
        ResultSet(make(f"t{i}", 0.001) for i in range(96)).correct("holm")
    few = ResultSet([make("a", 0.1, extra={"n_placebo": 9}), make("b", 0.5)])
    with pytest.warns(PValueFloorWarning, match="1 can never pass"):
        few.correct("holm")
