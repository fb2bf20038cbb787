"""The concept-space theory as a battery of named claims, and the verdict rule that judges each one.

Why the rule lives here and its thresholds in the suite: a verdict is only worth reading if it could not be
tuned after seeing the numbers. The rule is one function of the family's adjusted p-values
(:mod:`conceptspace.theory._family`: primary tests only, Bonferroni within a claim, Holm across claims), effect
sizes measured against each test's null, and paired comparisons with the controls; the thresholds
(``min_effect``, ``margin``, which controls to ``beat``) are read from the suite file and written into the report
*before* any analysis runs (``rule_text``).

The rule, per claim (primary tests = the one pre-declared test of each analysis of the claim):

* **supported**: a primary test is significant after the family's correction, its effect is at least
  ``min_effect``, and for each control in ``beat`` the lower bound of the paired difference (test minus control,
  on shared resamples, or a probe score's on the same repeated nested-CV folds; for the twin, over its seeds
  too) is at least ``margin``;
* **not supported**: no primary test passes, and every primary test is either ruled out by its CI (upper bound
  below ``min_effect``) or explained by a control (upper bound of the paired difference below ``margin``): the
  same kind of evidence, an interval, decides both directions;
* **not testable as run**: every primary test carries a reason why the design cannot separate the claim from an
  artifact (``extra["not_testable"]``), which the report states, or a control named in the claim's
  ``must_fail`` (one with no learned structure, such as an untrained twin) shows the effect itself: its own
  effect's lower 95% bound reaches ``min_effect``, so the test measures the architecture or a tautology;
* **inconclusive**: anything else (e.g. a large effect that is not significant after correction);
* **not run**: the claim has no tests in this run (the reason is reported), never a made-up result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conceptspace.stats._results import ResultSet, TestKey, TestResult, is_sanity_check
from conceptspace.theory._claims import CLAIMS, ClaimRule
from conceptspace.theory._family import is_primary_role

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
NOT_TESTABLE = "not testable as run"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTABLE, NOT_RUN)


def is_primary(result: TestResult) -> bool:
    """The pre-declared primary test of an analysis (``extra["role"] == "primary"``): the only kind of test in
    the corrected family and in a verdict."""
    return is_primary_role(result) and result.control is None and not is_sanity_check(result)


def rule_text(claim_id: str, rule: ClaimRule, alpha: float, correction: str) -> str:
    """The verdict rule of a claim in words, as fixed by the suite before the run."""
    beats = ", ".join(rule.beat) if rule.beat else "no control (the twin is shown beside, not required)"
    must_fail = (f" Not testable as run if [{', '.join(rule.must_fail)}] show the effect themselves (their CI low "
                 f">= {rule.min_effect:g})." if rule.must_fail else "")
    return (
        f"{claim_id} supported if a primary test has p <= {alpha:g} after {correction} across claims (Bonferroni "
        f"within the claim), effect over its null >= {rule.min_effect:g}, and the lower 95% bound of its paired "
        f"difference with [{beats}] >= {rule.margin:g}; not supported if every primary test has CI high < "
        f"{rule.min_effect:g} or a paired difference with CI high < {rule.margin:g}; else inconclusive.{must_fail}"
    )


def control_shows_effect(result: TestResult, by_key: Mapping[TestKey, TestResult], rule: ClaimRule) -> str | None:
    """Why ``result`` cannot test its claim, if a ``must_fail`` control shows the effect itself, else None.

    Why a control that passes invalidates the test rather than merely failing to be beaten: a control such as an
    untrained twin has no learned geometry, so a statistic it clears on its own is produced by the architecture
    or by the definition of the quantity (P5 at mid-depth: near-identity blocks make the context vector the
    logit lens's own input); "not supported" would then be a verdict the design forced.
    """
    shown = []
    for control in rule.must_fail:
        other = by_key.get(result.key.counterpart(control))
        if other is not None and math.isfinite(other.ci_low) and other.ci_low >= rule.min_effect:
            shown.append(f"the {control} control shows the effect itself ({other.effect_size:.3g} "
                         f"[{other.ci_low:.3g}, {other.ci_high:.3g}] >= {rule.min_effect:g})")
    if not shown:
        return None
    return "; ".join(shown) + ": the statistic measures the architecture or a tautology, not the claim"


@dataclass(frozen=True)
class TestJudgement:
    """How one primary test fared under the rule."""

    __test__ = False

    test_id: str
    passes: bool
    ruled_out: bool
    explained_by: tuple[str, ...]
    control_effects: Mapping[str, float | None]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim and the tests behind it."""

    claim: str
    verdict: str
    reason: str
    rule: str
    test_ids: tuple[str, ...]
    best_test_id: str | None = None
    judgements: tuple[TestJudgement, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "title": CLAIMS[self.claim].title if self.claim in CLAIMS else self.claim,
            "verdict": self.verdict,
            "reason": self.reason,
            "rule": self.rule,
            "test_ids": list(self.test_ids),
            "best_test_id": self.best_test_id,
            "judgements": [
                {"test_id": j.test_id, "passes": j.passes, "ruled_out": j.ruled_out,
                 "explained_by": list(j.explained_by),
                 "control_effects": {k: _finite(v) for k, v in j.control_effects.items()}, "notes": list(j.notes)}
                for j in self.judgements
            ],
        }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def control_difference(result: TestResult, other: TestResult, control: str) -> tuple[float, float, float, bool]:
    """(difference, low, high, paired) of ``result`` minus its ``control`` counterpart: the paired interval the
    runner attached (``extra["paired"][control]``: the nested-CV or signal-world one a probe family gave, else
    the paired bootstrap) when the analysis drew both on shared resamples, else the
    conservative unpaired interval [low - other's high, high - other's low]."""
    paired = result.extra.get("paired", {}).get(control)
    diff = result.effect_size - other.effect_size
    if paired and paired.get("ci_low") is not None and paired.get("ci_high") is not None:
        return diff, float(paired["ci_low"]), float(paired["ci_high"]), True
    return diff, result.ci_low - other.ci_high, result.ci_high - other.ci_low, False


def judge_test(result: TestResult, by_key: Mapping[TestKey, TestResult], rule: ClaimRule) -> TestJudgement:
    """Apply the rule to one primary (corrected) test; its controls are found by key
    (:meth:`~conceptspace.stats.TestKey.counterpart`) and compared through the paired difference."""
    effects: dict[str, float | None] = {}
    explained: list[str] = []
    notes: list[str] = []
    beats_all = True
    for control in rule.beat:
        other = by_key.get(result.key.counterpart(control))
        if other is None:
            effects[control] = None
            beats_all = False
            notes.append(f"no {control} counterpart")
            continue
        effects[control] = other.effect_size
        diff, low, high, paired = control_difference(result, other, control)
        kind = "paired" if paired else "unpaired"
        if not (math.isfinite(low) and low >= rule.margin):
            beats_all = False
        if math.isfinite(high) and high < rule.margin:
            explained.append(control)
        notes.append(f"minus {control}: {diff:.3g} [{low:.3g}, {high:.3g}] ({kind})")
    effect_ok = math.isfinite(result.effect_size) and result.effect_size >= rule.min_effect
    passes = bool(result.significant) and effect_ok and beats_all
    ruled_out = math.isfinite(result.ci_high) and result.ci_high < rule.min_effect
    return TestJudgement(result.test_id, passes, ruled_out, tuple(explained), effects, tuple(notes))


def judge_claim(
    claim_id: str,
    results: ResultSet,
    rule: ClaimRule,
    *,
    alpha: float,
    correction: str,
    not_run_reason: str | None = None,
) -> Verdict:
    """The verdict on ``claim_id`` from the corrected results of the whole run."""
    text = rule_text(claim_id, rule, alpha, correction)
    mine = [r for r in results if r.claim == claim_id]
    primary = [r for r in mine if is_primary(r)]
    if not primary:
        reason = not_run_reason or "no test of this claim ran"
        return Verdict(claim_id, NOT_RUN, reason, text, tuple(r.test_id for r in mine))
    by_key = {r.key: r for r in results}
    why_not = {r.test_id: r.extra.get("not_testable") or control_shows_effect(r, by_key, rule) for r in primary}
    if all(why_not.values()):
        reasons = "; ".join(sorted({str(why) for why in why_not.values()}))
        return Verdict(claim_id, NOT_TESTABLE, reasons, text, tuple(r.test_id for r in mine))
    primary = [r for r in primary if not why_not[r.test_id]]
    judgements = [judge_test(r, by_key, rule) for r in primary]
    passing = [j for j, r in zip(judgements, primary, strict=True) if j.passes]
    ranked = sorted(zip(judgements, primary, strict=True),
                    key=lambda jr: (not jr[0].passes, -(jr[1].effect_size if math.isfinite(jr[1].effect_size)
                                                         else -math.inf)))
    best = ranked[0][1]
    if passing:
        verdict = SUPPORTED
        reason = (f"{len(passing)} of {len(primary)} primary tests pass (significant, effect >= {rule.min_effect:g}, "
                  f"beat {', '.join(rule.beat) or 'no control'})")
    elif all(j.ruled_out or j.explained_by for j in judgements):
        verdict = NOT_SUPPORTED
        n_out = sum(j.ruled_out for j in judgements)
        n_expl = sum(bool(j.explained_by) and not j.ruled_out for j in judgements)
        reason = (f"no primary test passes; {n_out} ruled out by their CI (< {rule.min_effect:g}), "
                  f"{n_expl} explained by a control")
    else:
        verdict = INCONCLUSIVE
        n_sig = sum(bool(r.significant) for r in primary)
        unsettled = sum(r.extra.get("settled") is False for r in primary)
        hinge = (f"; {unsettled} primary test(s) reached the Monte Carlo cap unsettled, so the decision hinges on "
                 "Monte Carlo error" if unsettled else "")
        reason = (f"no primary test passes, but not all are ruled out: {n_sig} of {len(primary)} significant; "
                  f"effects or control margins fall between the thresholds{hinge}")
    ids = [r.test_id for r in mine]
    return Verdict(claim_id, verdict, reason, text, tuple(ids), best.test_id, tuple(judgements))


def judge_all(
    results: ResultSet,
    rules: Mapping[str, ClaimRule],
    *,
    alpha: float,
    correction: str,
    not_run: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
) -> list[Verdict]:
    """Verdicts for every claim with a rule (in ``order``, default the battery's order)."""
    names = [c for c in (order or CLAIMS) if c in rules]
    reasons = dict(not_run or {})
    return [judge_claim(c, results, rules[c], alpha=alpha, correction=correction,
                        not_run_reason=reasons.get(c)) for c in names]
