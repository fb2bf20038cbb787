"""The concept-space theory as named claims, and the pre-registered rule that turns tests into a verdict each.

Why a layer of its own: a verdict is only worth reading if it could not be tuned after seeing the numbers, so the
rule is one function of corrected results and the thresholds fixed in the suite before the run; the analyses
produce tests, this layer alone judges them.
"""

from __future__ import annotations

from conceptspace.theory._claims import CLAIMS, Claim, ClaimRule
from conceptspace.theory._family import (
    ClaimTest,
    analyses_per_claim,
    attach_paired,
    correct_by_claim,
    decision_thresholds,
    role,
)
from conceptspace.theory._verdicts import (
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICTS,
    TestJudgement,
    Verdict,
    is_primary,
    is_sanity_check,
    judge_all,
    judge_claim,
    rule_text,
)

__all__ = [
    "CLAIMS",
    "INCONCLUSIVE",
    "NOT_RUN",
    "NOT_SUPPORTED",
    "NOT_TESTABLE",
    "SUPPORTED",
    "VERDICTS",
    "Claim",
    "ClaimRule",
    "ClaimTest",
    "TestJudgement",
    "Verdict",
    "analyses_per_claim",
    "attach_paired",
    "correct_by_claim",
    "decision_thresholds",
    "is_primary",
    "is_sanity_check",
    "judge_all",
    "judge_claim",
    "role",
    "rule_text",
]
