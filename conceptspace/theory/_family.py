"""The multiple-testing family of a run: primary tests only, Bonferroni within a claim, Holm across claims.

Why this shape. A verdict is a statement per claim, so the error rate to control is the chance of calling any
claim supported when it is not. Controls and baselines (the untrained twin, the control task, the lexical
baseline, placebo directions) are not hypotheses about the model; putting them in the family only tightened the
correction on the tests that matter (67 of 120 corrected tests were controls). Scanning layers or metrics and
then naming the best one inflates error unless the scan is corrected; instead each analysis declares one primary
test before the run (a site given as a fraction of depth, the kind's main statistic) and every other test is
reported as exploratory.

So, with K claims and m_c primary tests (one per analysis) in claim c:

* claim p-value: p_c = min(1, m_c * min_t p_t) (Bonferroni within the claim);
* claims: Holm (or Benjamini-Hochberg, if the suite asks) over the K values p_c, giving P_c;
* a primary test t of claim c at Holm rank r_c: p_adj(t) = max(P_c, min(1, (K - r_c + 1) * m_c * p_t)), so the
  best test of a claim carries the claim's adjusted p and every other test is judged at least as strictly.

The raw-p thresholds a primary test of claim c can ever be compared with are alpha / (m_c * j), j = 1..K; the
runner gives them to each analysis beforehand so that sequential Monte Carlo p-values draw until the test's
decision against every one of them is settled (:mod:`conceptspace.stats._sequential`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

from conceptspace.errors import InvalidInputError
from conceptspace.stats import ResultSet, TestKey, TestResult, paired_difference

PRIMARY = "primary"
#: the role of the main test of a wholly secondary analysis (suite ``role = "secondary"``): reported with its own
#: effect, interval, uncorrected p and controls beside its claim's verdict, never in the family, never judged
SECONDARY = "secondary"


def role(result: TestResult) -> str:
    """The role a test plays (``extra["role"]``); a test without one counts as exploratory (never evidence)."""
    return str(result.extra.get("role", "exploratory"))


def is_primary_role(result: TestResult) -> bool:
    return role(result) == PRIMARY


def as_secondary(results: ResultSet) -> ResultSet:
    """The rows of a secondary analysis: its primary test becomes ``secondary`` (every other role is kept), so
    that no row of it can enter the family or the verdict, whatever the kind marked."""
    return ResultSet(r.replace(extra={**dict(r.extra), "role": SECONDARY}) if is_primary_role(r) else r
                     for r in results)


@dataclass(frozen=True)
class ClaimTest:
    """The family's view of one claim: its primary tests, its Bonferroni p and its adjusted p across claims."""

    claim: str
    n_primary: int
    p_value: float
    p_adjusted: float
    rank: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {"claim": self.claim, "n_primary": self.n_primary, "p_value": self.p_value,
                "p_adjusted": self.p_adjusted, "rank": self.rank}


def decision_thresholds(primary_per_claim: Mapping[str, int], alpha: float) -> dict[str, tuple[float, ...]]:
    """The raw-p thresholds alpha / (m_c * j), j = 1..K, each claim's primary tests can meet in the correction."""
    k = len(primary_per_claim)
    return {c: tuple(alpha / (m * j) for j in range(1, k + 1)) for c, m in primary_per_claim.items() if m > 0}


def analyses_per_claim(claims: Iterable[str]) -> dict[str, int]:
    """m_c: how many analyses (each with one primary test) a suite has per claim."""
    return dict(Counter(claims))


def correct_by_claim(
    results: ResultSet, method: str = "holm", alpha: float = 0.05
) -> tuple[ResultSet, dict[str, ClaimTest]]:
    """Correct the primary tests of ``results`` as described in the module docstring; every other test keeps
    its raw p with ``p_adjusted``/``significant`` left None. Returns the results and the per-claim family."""
    if method not in ("holm", "fdr_bh"):
        raise InvalidInputError(f"correction method must be 'holm' or 'fdr_bh'; got {method!r}")
    by_claim: dict[str, list[TestResult]] = defaultdict(list)
    for r in results:
        if is_primary_role(r):
            if r.claim is None:
                raise InvalidInputError(f"{r.test_id}: a primary test must belong to a claim")
            if math.isnan(r.p_value):
                raise InvalidInputError(f"{r.test_id}: a primary test has a NaN p-value; every primary test must "
                                        "stay in the family")
            by_claim[r.claim].append(r)
    if not by_claim:
        return results, {}
    names = list(by_claim)
    m = {c: len(by_claim[c]) for c in names}
    p_claim = np.array([min(1.0, m[c] * min(r.p_value for r in by_claim[c])) for c in names])
    _, p_adj, _, _ = multipletests(p_claim, alpha=alpha, method=method)
    order = np.argsort(p_claim, kind="stable")
    rank = {names[i]: int(np.flatnonzero(order == i)[0]) + 1 for i in range(len(names))}
    family = {c: ClaimTest(c, m[c], float(p_claim[i]), float(p_adj[i]), rank[c]) for i, c in enumerate(names)}
    k = len(names)
    adjusted: dict[str, tuple[float, bool]] = {}
    for c, tests in by_claim.items():
        step = (k - rank[c] + 1) if method == "holm" else k / rank[c]
        for r in tests:
            pa = max(family[c].p_adjusted, min(1.0, step * m[c] * r.p_value))
            adjusted[r.test_id] = (pa, pa <= alpha)
    out = []
    for r in results:
        if r.test_id in adjusted:
            pa, sig = adjusted[r.test_id]
            out.append(r.replace(p_adjusted=pa, significant=sig, correction=f"{method} across claims", alpha=alpha))
        else:
            out.append(r.replace(p_adjusted=None, significant=None, correction=None, alpha=alpha))
    return ResultSet(out), family


#: paired intervals an analysis computes itself and the runner keeps over the bootstrap's paired replicates
CALIBRATED_PAIRED_METHODS = ("nested_cv", "signal_world")


def attach_paired(results: ResultSet, replicates: Mapping[TestKey, np.ndarray], *, seed: int = 0) -> ResultSet:
    """Store in each primary (and secondary) test's ``extra["paired"]`` the paired difference with every control whose
    replicates the analysis drew on the same resamples (``replicates``: TestKey -> (B,) or (seeds, B)).

    Where the analysis already gave a control's paired difference a calibrated interval (``method`` =
    ``"nested_cv"`` for a classification probe, ``"signal_world"`` for R^2;
    :func:`~conceptspace.analyses.probes._family.probe_family`), that interval is kept, because the bootstrap's
    paired interval errs wide (from about 100 groups for accuracies; 0.99-1.00 on pure noise for R^2;
    docs/STATISTICS.md), and the bootstrap's interval is stored beside it as ``bootstrap_ci``. The verdict judges
    "beats the control" by the lower bound of the kept interval (:func:`control_difference` in the verdict module
    falls back to a conservative unpaired interval where an analysis gave neither)."""
    if not replicates:
        return results
    out = []
    for r in results:
        mine = replicates.get(r.key)
        if role(r) not in (PRIMARY, SECONDARY) or mine is None:
            out.append(r)
            continue
        given = dict(r.extra.get("paired") or {})
        paired: dict[str, object] = {}
        for key, reps in replicates.items():
            control = key.control
            if control is None or key == r.key or r.key.counterpart(control) != key:
                continue
            entry = paired_difference(np.asarray(mine), np.asarray(reps), seed=seed)
            nested = given.pop(control, None)
            if isinstance(nested, Mapping) and nested.get("method") in CALIBRATED_PAIRED_METHODS:
                entry = {**nested, "bootstrap_ci": [entry["ci_low"], entry["ci_high"]],
                         "bootstrap_difference": entry["difference"]}
            paired[control] = entry
        paired.update(given)  # a nested-CV interval of a control without replicates stays as given
        out.append(r.replace(extra={**dict(r.extra), "paired": paired}) if paired else r)
    return ResultSet(out)
