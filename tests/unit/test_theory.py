"""Verdict rules: each outcome arises from the numbers it should, and only from them."""

from __future__ import annotations

from conceptspace.stats._results import ResultSet
from conceptspace.suite._runner import correct_family
from conceptspace.theory import ClaimRule
from conceptspace.theory._verdicts import (
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    judge_claim,
    rule_text,
)
from tests.result_factory import make_result

RULE = ClaimRule(min_effect=0.1, margin=0.05, beat=("untrained",))


def _r(name, effect, p, lo=None, hi=None, control=None, claim="C4", **extra):
    """``name`` is ``<analysis>/<...>``: the analysis part scopes the key; controls share the rest."""
    return make_result(
        "x", analysis=name.split("/")[0], dataset="d", method="m", control=control, claim=claim,
        statistic_name="s", statistic=effect, effect_size_name="e", effect_size=effect,
        ci_low=effect - 0.05 if lo is None else lo, ci_high=effect + 0.05 if hi is None else hi, p_value=p, n=10,
        extra=extra,
    )


def _judge(*results, rule=RULE):
    corrected = correct_family(ResultSet(results), "holm", 0.05)
    return judge_claim("C4", corrected, rule, alpha=0.05, correction="holm")


def test_supported_needs_significance_effect_and_twin_margin():
    v = _judge(_r("a/L3/task", 0.3, 0.001), _r("a/L3/untrained", 0.05, 0.3, control="untrained"))
    assert v.verdict == SUPPORTED and v.best_test_id == _r("a/L3/task", 0.3, 0.001).test_id


def test_twin_as_good_means_not_supported():
    v = _judge(_r("a/L3/task", 0.3, 0.001), _r("a/L3/untrained", 0.28, 0.001, control="untrained"))
    assert v.verdict == NOT_SUPPORTED and v.judgements[0].explained_by == ("untrained",)


def test_small_ci_is_not_supported_large_nonsignificant_is_inconclusive():
    twin = _r("a/L3/untrained", 0.0, 0.5, control="untrained")
    assert _judge(_r("a/L3/task", 0.02, 0.2, hi=0.06), twin).verdict == NOT_SUPPORTED
    assert _judge(_r("a/L3/task", 0.3, 0.2, lo=-0.1, hi=0.7), twin).verdict == INCONCLUSIVE


def test_correction_across_the_family_can_remove_support():
    twin = _r("a/L3/untrained", 0.0, 0.5, control="untrained")
    alone = _judge(_r("a/L3/task", 0.3, 0.01), twin)
    assert alone.verdict == SUPPORTED
    many = [_r(f"b{i}/L3/task", 0.0, 0.9, claim="C1") for i in range(10)]
    crowded = _judge(_r("a/L3/task", 0.3, 0.01), twin, *many)
    assert crowded.verdict == INCONCLUSIVE


def test_missing_control_counterpart_blocks_support():
    v = _judge(_r("a/L3/task", 0.3, 0.001))
    assert v.verdict != SUPPORTED and "no untrained counterpart" in v.judgements[0].notes


def test_sanity_checks_are_never_evidence_nor_corrected():
    identity = _r("p/identity", 1.0, 1.0, control="identity", sanity_check=True)
    corrected = correct_family(ResultSet([identity, _r("a/L3/task", 0.3, 0.001)]), "holm", 0.05)
    assert corrected[0].p_adjusted is None and corrected[1].p_adjusted == 0.001
    v = judge_claim("C4", ResultSet([identity]), RULE, alpha=0.05, correction="holm", not_run_reason="x missing")
    assert v.verdict == NOT_RUN and v.reason == "x missing"


def test_lexical_counterpart_is_found_at_the_embedding_site_and_rule_text():
    rule = ClaimRule(min_effect=0.1, margin=0.05, beat=("lexical",))
    task = _r("a/L3/task", 0.3, 0.001)
    lexical = make_result("x", analysis="a", dataset="d", method="m", site="embed", control="lexical",
                          effect_size=0.28, p_value=0.001)
    v = _judge(task, lexical, rule=rule)
    assert v.verdict == NOT_SUPPORTED and v.judgements[0].explained_by == ("lexical",)
    assert v.judgements[0].control_effects["lexical"] == 0.28
    text = rule_text("C4", RULE, 0.05, "holm")
    assert "holm-adjusted p < 0.05" in text and "effect >= 0.1" in text and "untrained" in text
