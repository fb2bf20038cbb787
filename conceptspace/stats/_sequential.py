"""Sequential Monte Carlo p-values: draw null statistics until the test's decision is settled.

Why: a permutation p-value with B draws can never be below 1 / (B + 1), so with a fixed B a test either sits on
that floor (a "significant" verdict that is only a statement about B) or B is set so large that every test pays
for the hardest one. Besag & Clifford (1991) stop drawing once the answer is clear; this module uses the same
idea with a stated error bound: after each batch it forms the Clopper-Pearson interval (at ``confidence``) for the
exceedance probability p = P(null >= observed), and stops when that interval contains none of the decision
thresholds the run will compare p with (Holm's alpha / (m_c * j)). Then every comparison the correction can make
is decided the same way it would be with infinitely many draws, except with probability <= 1 - confidence per
look. A test that reaches ``maximum`` unsettled is reported as such (its verdict hinges on Monte Carlo error).

The p-value reported is still (1 + k) / (B + 1) for the B drawn: valid (never anti-conservative) at whatever B the
procedure stopped, because each draw is exchangeable with the observed statistic under the null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta

from conceptspace.errors import InvalidInputError


@dataclass(frozen=True)
class SequentialPlan:
    """How many null draws a test may take: ``start`` first, doubling up to ``maximum``, until the Monte Carlo
    interval of the deciding row(s) excludes every value in ``thresholds``."""

    start: int = 999
    maximum: int = 19999
    thresholds: tuple[float, ...] = (0.05,)
    confidence: float = 0.99

    def __post_init__(self) -> None:
        if self.start < 1 or self.maximum < self.start:
            raise InvalidInputError(f"need 1 <= start <= maximum draws; got start={self.start}, maximum={self.maximum}")
        if not self.thresholds or not all(0.0 < t < 1.0 for t in self.thresholds):
            raise InvalidInputError(f"thresholds must be values in (0, 1); got {self.thresholds}")
        if not 0.5 < self.confidence < 1.0:
            raise InvalidInputError(f"confidence must be in (0.5, 1); got {self.confidence}")
        object.__setattr__(self, "thresholds", tuple(sorted(float(t) for t in self.thresholds)))

    @classmethod
    def fixed(cls, draws: int) -> SequentialPlan:
        """Exactly ``draws`` draws, no extension (the classical fixed-B test)."""
        return cls(start=draws, maximum=draws)


@dataclass(frozen=True)
class SequentialNull:
    """The null draws taken and what they say, per row (rows share the draws).

    ``null`` (rows, B); ``exceed`` (rows,) = #{null >= observed}; ``p_value`` = (1 + exceed) / (B + 1);
    ``mc_low``/``mc_high``: Clopper-Pearson interval of the exceedance probability at the plan's confidence;
    ``settled``: whether the deciding rows' intervals exclude every threshold.
    """

    observed: np.ndarray
    null: np.ndarray
    exceed: np.ndarray
    p_value: np.ndarray
    mc_low: np.ndarray
    mc_high: np.ndarray
    n_drawn: int
    settled: bool
    plan: SequentialPlan

    @property
    def null_mean(self) -> np.ndarray:
        return np.nanmean(self.null, axis=1)

    @property
    def null_sd(self) -> np.ndarray:
        return np.nanstd(self.null, axis=1, ddof=1) if self.n_drawn > 1 else np.full(self.null.shape[0], np.nan)


def exceedances(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """#{null >= observed} per row, with the relative tolerance 1e-10 of
    :func:`conceptspace.stats.permutation_p_value` (float noise never flips a tie); NaN draws never exceed."""
    obs = np.asarray(observed, dtype=np.float64)
    tol = 1e-10 * np.maximum(1.0, np.abs(obs))
    with np.errstate(invalid="ignore"):
        return (np.asarray(null, dtype=np.float64) >= (obs - tol)[..., None]).sum(axis=-1)


def mc_interval(exceed: np.ndarray | int, drawn: int, confidence: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval for the exceedance probability after ``exceed`` hits in ``drawn`` draws."""
    k = np.asarray(exceed, dtype=np.float64)
    tail = (1.0 - confidence) / 2.0
    low = np.where(k > 0, beta.ppf(tail, np.maximum(k, 1e-12), drawn - k + 1), 0.0)
    high = np.where(k < drawn, beta.ppf(1.0 - tail, k + 1, np.maximum(drawn - k, 1e-12)), 1.0)
    return low, high


def is_settled(low: np.ndarray, high: np.ndarray, thresholds: Sequence[float]) -> bool:
    """True when no threshold lies inside any row's interval [low, high]."""
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    inside = (np.asarray(low)[:, None] <= t) & (t <= np.asarray(high)[:, None])
    return not bool(inside.any())


def sequential_null(
    draw: Callable[[int, int], np.ndarray],
    observed: np.ndarray | Sequence[float] | float,
    plan: SequentialPlan,
    *,
    decide: Sequence[int] | None = None,
) -> SequentialNull:
    """Draw null statistics with ``draw(offset, count) -> (rows, count)`` until the rows in ``decide`` (default:
    all rows with a finite observed value) are settled against ``plan.thresholds``, or ``plan.maximum`` draws.

    ``draw`` must number its draws: the permutations ``offset .. offset + count - 1`` are the same whatever the
    batch sizes, so a run is reproducible from its seed and a longer run extends a shorter one.
    """
    obs = np.atleast_1d(np.asarray(observed, dtype=np.float64))
    rows = obs.shape[0]
    chosen = [i for i in range(rows) if np.isfinite(obs[i])] if decide is None else list(decide)
    for i in chosen:
        if not 0 <= i < rows:
            raise InvalidInputError(f"decide row {i} out of range for {rows} observed statistics")
    batches: list[np.ndarray] = []
    drawn = 0
    count = plan.start
    while True:
        batch = np.asarray(draw(drawn, count), dtype=np.float64)
        if batch.ndim == 1:
            batch = batch[None, :]
        if batch.shape != (rows, count):
            raise InvalidInputError(f"draw({drawn}, {count}) returned shape {batch.shape}; expected {(rows, count)}")
        batches.append(batch)
        drawn += count
        null = np.concatenate(batches, axis=1)
        exceed = exceedances(obs, null)
        low, high = mc_interval(exceed, drawn, plan.confidence)
        settled = not chosen or is_settled(low[chosen], high[chosen], plan.thresholds)
        if settled or drawn >= plan.maximum:
            break
        count = min(drawn, plan.maximum - drawn)  # double the total
    p = (1.0 + exceed) / (drawn + 1.0)
    return SequentialNull(obs, null, exceed, p, low, high, drawn, settled, plan)


def null_extra(result: SequentialNull, row: int = 0) -> dict[str, Any]:
    """The fields every Monte Carlo-tested result stores in ``extra`` (the report and the runner read them)."""
    sd = result.null_sd[row]
    return {
        "n_permutations": int(result.n_drawn),
        "p_mc_low": float(result.mc_low[row]),
        "p_mc_high": float(result.mc_high[row]),
        "mc_confidence": result.plan.confidence,
        "settled": bool(result.settled),
        "null_mean": float(result.null_mean[row]),
        "null_sd": float(sd) if np.isfinite(sd) else None,
    }
