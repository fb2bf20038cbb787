"""The concept-space theory as a battery of named claims, and the verdict rule that judges each one.

Why the rule lives here and its thresholds in the suite: a verdict is only worth reading if it could not be
tuned after seeing the numbers. The rule is one function of corrected p-values, effect sizes and control
comparisons; the thresholds (``min_effect``, ``margin``, which controls to ``beat``) are read from the suite file
and written into the report *before* any analysis runs (``rule_text``).

The rule, per claim (primary tests = the claim's tests on the real model, not controls, not sanity checks):

* **supported**: at least one primary test is significant after the run-wide correction, its effect size is at
  least ``min_effect``, and it exceeds the same test on each control in ``beat`` (the untrained twin, the
  last-token lexical baseline, the control task) by at least ``margin``;
* **not supported**: no primary test passes, and every primary test is either ruled out by its CI (upper bound
  below ``min_effect``) or explained by a control (real effect - control effect < ``margin``);
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

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_RUN)


def is_primary(result: TestResult) -> bool:
    """A test of the claim on the real model (not a control, not a sanity check, not a reference baseline)."""
    return result.control is None and not is_sanity_check(result) and not result.extra.get("baseline", False)


def rule_text(claim_id: str, rule: ClaimRule, alpha: float, correction: str) -> str:
    """The verdict rule of a claim in words, as fixed by the suite before the run."""
    beats = ", ".join(rule.beat) if rule.beat else "no control (the twin is shown beside, not required)"
    return (
        f"{claim_id} supported if a primary test has {correction}-adjusted p < {alpha:g}, effect >= "
        f"{rule.min_effect:g}, and exceeds the same test on [{beats}] by >= {rule.margin:g}; not supported if "
        f"every primary test has CI high < {rule.min_effect:g} or is explained by a control; else inconclusive."
    )


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


def judge_test(result: TestResult, by_key: Mapping[TestKey, TestResult], rule: ClaimRule) -> TestJudgement:
    """Apply the rule to one primary (corrected) test; its controls are found by key
    (:meth:`~conceptspace.stats.TestKey.counterpart`)."""
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
        if not result.effect_size - other.effect_size >= rule.margin:
            beats_all = False
            explained.append(control)
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
        reason = (f"no primary test passes, but not all are ruled out: {n_sig} of {len(primary)} significant; "
                  "effects or control margins fall between the thresholds")
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
