"""Paired differences between a test and its control, from bootstrap replicates drawn on the same resamples.

Why paired: "the model beats its control" is a statement about a difference measured on the same items. Two
separate intervals answer it badly (the comparison of point estimates ignores noise; the comparison of
intervals is needlessly strict because most of the noise is shared). An analysis that draws its replicates of
the real test and of every control on identical resamples (same seed, same groups) hands them over in
:class:`~conceptspace.analyses.AnalysisOutput`'s ``replicates``; the difference of replicates is then a paired
bootstrap of the difference, and a control "explains" a test unless the lower bound clears the margin.

A control measured on several twin seeds passes replicates of shape (S, B): each replicate then also draws
the seed (a two-level bootstrap), so the interval carries the seed-to-seed spread of the untrained network,
not only the item noise of one seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conceptspace.errors import InvalidInputError


def seed_mixture(replicates: np.ndarray, seed: int = 0) -> np.ndarray:
    """(B,) replicates of a statistic measured on S seeds: replicate b takes the value of a seed drawn uniformly
    at random (the outer level of the two-level bootstrap). A (B,) input is returned as it is."""
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim == 1:
        return reps
    if reps.ndim != 2 or reps.shape[0] < 1:
        raise InvalidInputError(f"replicates must be (B,) or (seeds, B); got shape {reps.shape}")
    rng = np.random.default_rng([seed, 7919])
    pick = rng.integers(0, reps.shape[0], size=reps.shape[1])
    return reps[pick, np.arange(reps.shape[1])]


def seed_mean_replicates(replicates: np.ndarray, seed: int = 0) -> np.ndarray:
    """(B,) replicates of the mean over S seeds, with the seeds themselves resampled in each replicate: the
    interval of a seed-averaged control effect (its point estimate is the plain mean over seeds)."""
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim == 1:
        return reps
    rng = np.random.default_rng([seed, 104729])
    s, b = reps.shape
    picks = rng.integers(0, s, size=(b, s))
    return reps[picks, np.arange(b)[:, None]].mean(axis=1)


def paired_difference(
    real: np.ndarray, control: np.ndarray, *, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Difference ``real - control`` with a percentile interval from replicates on shared resamples.

    ``real`` (B,); ``control`` (B,) or (S, B) for several seeds. Returns the point difference of the replicate
    means' centre (the median of the paired replicates), the interval, and how many replicates were usable.
    """
    a = np.asarray(real, dtype=np.float64)
    if a.ndim != 1:
        raise InvalidInputError(f"replicates of the real test must be (B,); got shape {a.shape}")
    c = seed_mean_replicates(control, seed)
    if c.shape != a.shape:
        raise InvalidInputError(f"paired replicates need the same resamples: {a.shape} vs {c.shape}")
    diff = a - c
    ok = np.isfinite(diff)
    if ok.sum() < 2:
        return {"difference": None, "ci_low": None, "ci_high": None, "n_bootstrap": int(ok.sum()), "level": level}
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diff[ok], [tail, 1.0 - tail])
    return {"difference": float(np.median(diff[ok])), "ci_low": float(low), "ci_high": float(high),
            "n_bootstrap": int(ok.sum()), "level": level}
