"""One test result from a Monte Carlo null and bootstrap replicates drawn on the analysis's shared resamples.

Why one helper: every kind of the issue-13 design reports the same things for a permutation- or placebo-tested
statistic: effect = statistic - null mean, a percentile CI of that effect from bootstrap replicates (the same
item-level variance the null permutes), the sequential draw's Monte Carlo interval, and, for a control measured
on several twin seeds, the seed-mean with a two-level bootstrap interval and each seed's effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from conceptspace.stats import SequentialNull, TestKey, TestResult, null_extra, seed_mean_replicates


def effect_replicates(boot: np.ndarray, null_mean: float) -> np.ndarray:
    """Bootstrap replicates of the effect (statistic - null mean): (B,) or (seeds, B)."""
    return np.asarray(boot, dtype=np.float64) - float(null_mean)


def mc_result(key: TestKey, claim: str | None, *, statistic_name: str, effect_name: str, observed: float,
              null: SequentialNull, row: int, replicates: np.ndarray, n: int, seed: int,
              extra: Mapping[str, Any] | None = None) -> TestResult:
    """The result of row ``row`` of ``null``: ``observed`` is the statistic (the seed mean for a (seeds, B)
    control), ``replicates`` the effect replicates on the shared resamples ((B,) or (seeds, B))."""
    info = null_extra(null, row)
    reps = np.asarray(replicates, dtype=np.float64)
    pooled = seed_mean_replicates(reps, seed) if reps.ndim == 2 else reps
    ok = pooled[np.isfinite(pooled)]
    low, high = (np.quantile(ok, [0.025, 0.975]) if ok.size > 1 else (np.nan, np.nan))
    more: dict[str, Any] = dict(extra or {})
    return TestResult(
        key=key, claim=claim, statistic_name=statistic_name, statistic=float(observed),
        effect_size_name=effect_name, effect_size=float(observed) - info["null_mean"],
        ci_low=float(low), ci_high=float(high), p_value=float(null.p_value[row]), n=n, n_groups=n,
        extra={**info, "n_bootstrap": int(reps.shape[-1]), **more},
    )
