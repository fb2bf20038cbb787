"""Verdict rules and the run's family: each outcome arises from the numbers it should, and only from them."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.stats._results import ResultSet
from conceptspace.suite._runner import assign_roles, correct_family
from conceptspace.theory import ClaimRule, attach_paired, correct_by_claim, decision_thresholds
from conceptspace.theory._verdicts import (
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    judge_claim,
    rule_text,
)
from tests.result_factory import make_result

RULE = ClaimRule(min_effect=0.1, margin=0.05, beat=("untrained",))


def _r(name, effect, p, lo=None, hi=None, control=None, claim="C4", role=None, **extra):
    """``name`` is ``<analysis>/<...>``: the analysis part scopes the key; controls share the rest. A test on the
    real model is its analysis's primary test unless ``role`` says otherwise."""
    extra["role"] = role or ("primary" if control is None else "control")
    return make_result(
        "x", analysis=name.split("/")[0], dataset="d", method="m", control=control, claim=claim,
        statistic_name="s", statistic=effect, effect_size_name="e", effect_size=effect,
        ci_low=effect - 0.05 if lo is None else lo, ci_high=effect + 0.05 if hi is None else hi, p_value=p, n=10,
        extra=extra,
    )


def _paired(low, high):
    return {"untrained": {"difference": (low + high) / 2, "ci_low": low, "ci_high": high}}


def _judge(*results, rule=RULE):
    corrected = correct_family(ResultSet(results), "holm", 0.05)
    return judge_claim("C4", corrected, rule, alpha=0.05, correction="holm")


def test_supported_needs_significance_effect_and_twin_margin():
    v = _judge(_r("a/L3/task", 0.3, 0.001), _r("a/L3/untrained", 0.05, 0.3, control="untrained"))
    assert v.verdict == SUPPORTED and v.best_test_id == _r("a/L3/task", 0.3, 0.001).test_id


def test_a_twin_inside_the_paired_margin_explains_the_test():
    task = _r("a/L3/task", 0.3, 0.001, paired=_paired(-0.01, 0.03))
    v = _judge(task, _r("a/L3/untrained", 0.28, 0.001, control="untrained"))
    assert v.verdict == NOT_SUPPORTED and v.judgements[0].explained_by == ("untrained",)


def test_a_twin_close_in_point_estimate_but_uncertain_is_inconclusive_not_explained():
    """The margin is judged by an interval in both directions: unpaired [0.25-0.33, 0.35-0.23] straddles it."""
    v = _judge(_r("a/L3/task", 0.3, 0.001), _r("a/L3/untrained", 0.28, 0.001, control="untrained"))
    assert v.verdict == INCONCLUSIVE and not v.judgements[0].explained_by


def test_the_paired_lower_bound_decides_beating_the_control():
    twin = _r("a/L3/untrained", 0.2, 0.001, control="untrained")
    beats = _judge(_r("a/L3/task", 0.3, 0.001, paired=_paired(0.06, 0.14)), twin)
    short = _judge(_r("a/L3/task", 0.3, 0.001, paired=_paired(0.04, 0.14)), twin)
    assert beats.verdict == SUPPORTED and short.verdict == INCONCLUSIVE


def test_small_ci_is_not_supported_large_nonsignificant_is_inconclusive():
    twin = _r("a/L3/untrained", 0.0, 0.5, control="untrained")
    assert _judge(_r("a/L3/task", 0.02, 0.2, hi=0.06), twin).verdict == NOT_SUPPORTED
    assert _judge(_r("a/L3/task", 0.3, 0.2, lo=-0.1, hi=0.7), twin).verdict == INCONCLUSIVE


def test_more_primary_tests_in_a_claim_tighten_its_correction():
    twin = _r("a/L3/untrained", 0.0, 0.5, control="untrained")
    alone = _judge(_r("a/L3/task", 0.3, 0.01), twin)
    assert alone.verdict == SUPPORTED
    many = [_r(f"b{i}/L3/task", 0.0, 0.9) for i in range(10)]
    crowded = _judge(_r("a/L3/task", 0.3, 0.01), twin, *many)  # 11 primary tests: 11 x 0.01 > 0.05
    assert crowded.verdict == INCONCLUSIVE


def test_controls_exploratory_tests_and_other_claims_do_not_crowd_the_family():
    twin = _r("a/L3/untrained", 0.0, 0.5, control="untrained")
    noise = [_r(f"c{i}/L3/untrained", 0.0, 0.001, control="untrained") for i in range(20)]
    noise += [_r(f"e{i}/L{i}/task", 0.0, 0.9, role="exploratory") for i in range(20)]
    corrected = correct_family(ResultSet([_r("a/L3/task", 0.3, 0.01), twin, *noise]), "holm", 0.05)
    assert corrected[0].p_adjusted == pytest.approx(0.01)
    assert all(r.p_adjusted is None and r.significant is None for r in corrected[1:])


def test_holm_across_claims_and_bonferroni_within():
    tests = [_r("a/x", 0.3, 0.01, claim="C1"), _r("b/x", 0.3, 0.02, claim="C1"), _r("c/x", 0.3, 0.004, claim="C4")]
    corrected, family = correct_by_claim(ResultSet(tests), "holm", 0.05)
    assert family["C1"].p_value == pytest.approx(0.02) and family["C4"].p_value == pytest.approx(0.004)
    assert family["C4"].p_adjusted == pytest.approx(0.008) and family["C1"].p_adjusted == pytest.approx(0.02)
    assert [r.p_adjusted for r in corrected] == pytest.approx([0.02, 0.04, 0.008])
    assert decision_thresholds({"C1": 2, "C4": 1}, 0.05) == {"C1": (0.025, 0.0125), "C4": (0.05, 0.025)}


def test_roles_default_to_the_declared_site_and_a_second_primary_is_refused():
    a = make_result("a", site="layer.3", p_value=0.01)
    b = make_result("b", site="layer.5", p_value=0.01)
    twin = make_result("t", site="layer.5", control="untrained")
    roles = [r.extra["role"] for r in assign_roles(ResultSet([a, b, twin]), "layer.5")]
    assert roles == ["exploratory", "primary", "control"]
    with pytest.raises(Exception, match="exactly one primary"):
        from conceptspace.analyses import mark_roles
        mark_roles(ResultSet([a, b]), lambda r: True)


def test_attach_paired_pairs_a_primary_with_its_counterparts_replicates():
    task = _r("a/L3/task", 0.3, 0.001)
    twin = _r("a/L3/untrained", 0.1, 0.3, control="untrained")
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.2, 500)
    reps = {task.key: 0.3 + shared, twin.key: np.stack([0.1 + shared, 0.12 + shared])}
    out = attach_paired(ResultSet([task, twin]), reps)
    paired = out[0].extra["paired"]["untrained"]
    assert 0.17 < paired["ci_low"] < paired["ci_high"] < 0.21  # the shared noise cancels; seeds 0.10 / 0.12
    assert "paired" not in out[1].extra


def test_a_claim_whose_every_primary_test_is_untestable_says_so():
    v = _judge(_r("a/L3/task", 0.3, 0.001, not_testable="proximity at the last layer is the logit lens"))
    assert v.verdict == NOT_TESTABLE and "logit lens" in v.reason


def test_sanity_checks_are_never_evidence_nor_corrected():
    identity = _r("p/identity", 1.0, 1.0, control="identity", sanity_check=True, role="sanity")
    corrected = correct_family(ResultSet([identity, _r("a/L3/task", 0.3, 0.001)]), "holm", 0.05)
    assert corrected[0].p_adjusted is None and corrected[1].p_adjusted == 0.001
    v = judge_claim("C4", ResultSet([identity]), RULE, alpha=0.05, correction="holm", not_run_reason="x missing")
    assert v.verdict == NOT_RUN and v.reason == "x missing"


def test_lexical_counterpart_is_found_at_the_embedding_site_and_rule_text():
    rule = ClaimRule(min_effect=0.1, margin=0.05, beat=("lexical",))
    task = _r("a/L3/task", 0.3, 0.001, paired={"lexical": {"difference": 0.02, "ci_low": -0.01, "ci_high": 0.04}})
    lexical = make_result("x", analysis="a", dataset="d", method="m", site="embed", control="lexical",
                          effect_size=0.28, p_value=0.001, extra={"role": "baseline"})
    v = _judge(task, lexical, rule=rule)
    assert v.verdict == NOT_SUPPORTED and v.judgements[0].explained_by == ("lexical",)
    assert v.judgements[0].control_effects["lexical"] == 0.28
    text = rule_text("C4", RULE, 0.05, "holm")
    assert "p <= 0.05 after holm across claims" in text and ">= 0.1" in text and "untrained" in text


MUST_FAIL = ClaimRule(min_effect=0.1, margin=0.05, beat=("untrained",), must_fail=("untrained",))


def test_a_must_fail_control_that_shows_the_effect_makes_the_test_not_testable():
    """The twin clears min_effect on its own (CI low 0.15): whatever the model does, the statistic is the
    architecture's. The same twin below min_effect leaves the ordinary rule in charge, in both directions."""
    task = _r("a/L3/task", 0.3, 0.001, paired=_paired(0.08, 0.12))
    passing_twin = _r("a/L3/untrained", 0.2, 0.001, lo=0.15, hi=0.25, control="untrained")
    v = _judge(task, passing_twin, rule=MUST_FAIL)
    assert v.verdict == NOT_TESTABLE and "untrained control shows the effect itself" in v.reason
    assert _judge(task, passing_twin, rule=RULE).verdict == SUPPORTED  # the same numbers without the rule
    quiet_twin = _r("a/L3/untrained", 0.02, 0.3, lo=-0.03, hi=0.09, control="untrained")
    assert _judge(task, quiet_twin, rule=MUST_FAIL).verdict == SUPPORTED
    small = _r("a/L3/task", 0.03, 0.2, lo=0.0, hi=0.06)
    assert _judge(small, quiet_twin, rule=MUST_FAIL).verdict == NOT_SUPPORTED
    assert "Not testable as run if [untrained]" in rule_text("C4", MUST_FAIL, 0.05, "holm")


def test_must_fail_needs_every_primary_invalidated_to_decide_the_claim():
    """One primary invalidated by its twin, the other valid: the valid one decides."""
    bad = _r("a/L3/task", 0.3, 0.001)
    bad_twin = _r("a/L3/untrained", 0.3, 0.001, lo=0.25, hi=0.35, control="untrained")
    good = _r("b/L3/task", 0.3, 0.001, paired=_paired(0.2, 0.3))
    good_twin = _r("b/L3/untrained", 0.0, 0.5, lo=-0.05, hi=0.05, control="untrained")
    v = _judge(bad, bad_twin, good, good_twin, rule=MUST_FAIL)
    assert v.verdict == SUPPORTED and [j.test_id for j in v.judgements] == [good.test_id]


@pytest.mark.parametrize("method", ["nested_cv", "signal_world"])
def test_attach_paired_keeps_an_analysis_calibrated_interval_and_stores_the_bootstrap_beside_it(method):
    nested = {"difference": 0.2, "ci_low": 0.15, "ci_high": 0.25, "level": 0.95, "method": method}
    task = _r("a/L3/task", 0.3, 0.001).replace(extra={"role": "primary", "paired": {"untrained": nested}})
    twin = _r("a/L3/untrained", 0.1, 0.3, control="untrained")
    shared = np.random.default_rng(0).normal(0, 0.2, 500)
    out = attach_paired(ResultSet([task, twin]), {task.key: 0.3 + shared, twin.key: 0.1 + shared})
    paired = out[0].extra["paired"]["untrained"]
    assert (paired["ci_low"], paired["ci_high"], paired["method"]) == (0.15, 0.25, method)
    assert paired["bootstrap_ci"][0] == pytest.approx(0.2, abs=1e-9) and paired["bootstrap_difference"] == \
        pytest.approx(0.2)
