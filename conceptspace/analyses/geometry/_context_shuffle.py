"""The P5 statistic, its context-shuffle null and its interval, on the (contexts x contexts) Spearman matrix.

``M[i, j]`` is the Spearman correlation of context i's proximities (cosines) with context j's log-probabilities.
The statistic is the mean diagonal (each context against its own distribution); the null pairs contexts at
random (a uniform permutation pi: mean_i M[i, pi(i)]), so anything every context shares (token frequency, norm,
the unigram prior) cancels and p asks whether proximity tracks *this context's* probabilities.

Why the effect is the *paired per-context* effect and not "statistic minus a constant":

* The permutation null of the mean diagonal has an exact mean, the grand mean of M (each context meets each
  distribution with probability 1/n), and an exact variance (Hoeffding's combinatorial central limit theorem:
  ``Var sum_i M[i, pi(i)] = sum_ij D_ij^2 / (n - 1)`` with D the doubly-centred M). Both are stored.
* effect = mean diagonal - grand mean = mean_i e_i with ``e_i = D_ii``, the doubly-centred diagonal: context
  i's Spearman minus what a shuffled pairing predicts for it from how well its proximities agree with any
  distribution (row mean) and how well its distribution agrees with any proximities (column mean). Row and
  column effects (a context whose cosines track the unigram prior, a distribution that is close to it) cancel in
  e_i exactly as they cancel in the permutation test, so the bootstrap of mean(e) over contexts measures the
  variance the p-value uses. Subtracting the null mean as a constant instead gave the degenerate CI
  [0.261, 0.261] when every context had the same Spearman.

Everything here is a function of arrays, so the calibration tests run it on small synthetic matrices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.stats

from conceptspace.errors import InvalidInputError

#: permutations gathered at once per row (a (rows, chunk, contexts) float64 array)
_CHUNK = 1024


def paired_context_effects(M: np.ndarray) -> np.ndarray:
    """Per-context paired effects: the diagonal of the doubly-centred Spearman matrix (mean = observed - null mean)."""
    M = _square(M)
    D = M - M.mean(axis=1, keepdims=True) - M.mean(axis=0, keepdims=True) + M.mean()
    return np.diag(D).copy()


def shuffle_null_moments(M: np.ndarray) -> tuple[float, float]:
    """Exact mean and SD of mean_i M[i, pi(i)] over uniform permutations pi (Hoeffding)."""
    M = _square(M)
    n = M.shape[0]
    D = M - M.mean(axis=1, keepdims=True) - M.mean(axis=0, keepdims=True) + M.mean()
    variance = float((D**2).sum()) / (n - 1) / n**2
    return float(M.mean()), float(np.sqrt(max(variance, 0.0)))


def context_shuffle_draw(matrices: Sequence[np.ndarray], seed: int) -> Callable[[int, int], np.ndarray]:
    """``draw(offset, count)`` -> (rows, count): the mean diagonal of each matrix under the same permutations.

    Every row (layer, metric, control model) sees the same permutations; a batch is seeded from ``(seed,
    offset)`` so that the same seed gives the same null whatever else the run does.
    """
    stack = np.stack([_square(m) for m in matrices])
    n = stack.shape[1]
    rows = np.arange(n)[None, :]

    def draw(offset: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed), int(offset), 0x5E5])
        perms = np.argsort(rng.random((count, n)), axis=1)
        out = np.empty((stack.shape[0], count))
        for start in range(0, count, _CHUNK):  # (rows, chunk, n) at a time: bounded memory at 20,000 draws
            out[:, start:start + _CHUNK] = stack[:, rows, perms[start:start + _CHUNK]].mean(axis=2)
        return out

    return draw


def bootstrap_rows(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) context indices drawn with replacement: shared by every row and control (paired CIs)."""
    if n_bootstrap < 1:
        raise InvalidInputError(f"n_bootstrap must be at least 1; got {n_bootstrap}")
    return np.random.default_rng([int(seed), 0xB007]).integers(0, n, size=(n_bootstrap, n))


def effect_replicates(effects: np.ndarray, rows: np.ndarray, level: float = 0.95) -> np.ndarray:
    """(B,) bootstrap replicates of the mean paired effect over the resampled contexts.

    The deviations of the e_i are widened first, by two factors. ``sqrt(n (n - 1)) / (n - 2)``: double centring
    leaves each e_i only (1 - 2/n) of its own context's signal (the rest goes into its row and column means)
    while their mean keeps (1 - 1/n) of it, and a plain bootstrap of a mean has variance (n - 1)/n of the
    sample's; without it the interval's SD was 0.90 (n = 12) to 0.96 (n = 30) of the sampling SD. And
    ``t_(n-1) / z`` at ``level``: a percentile bootstrap of a mean is a z interval with an estimated SD, which
    under-covers with few contexts (0.92 at n = 12 after the first factor; 1.12x wider there, 1.04x at n = 30).
    """
    effects = np.asarray(effects, dtype=np.float64)
    n = effects.size
    centre = effects.mean()
    tail = 0.5 + level / 2
    factor = np.sqrt(n * (n - 1.0)) / (n - 2.0) * scipy.stats.t.ppf(tail, n - 1) / scipy.stats.norm.ppf(tail)
    return (centre + (effects - centre) * factor)[rows].mean(axis=1)


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (of one model, or of a seed-averaged pass)."""
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(np.asarray(replicates, dtype=np.float64), [tail, 1.0 - tail])
    return float(lo), float(hi)


def max_t_p_values(observed: np.ndarray, null: np.ndarray, means: np.ndarray, sds: np.ndarray) -> np.ndarray:
    """Single-step max-T adjusted p per row: rows standardised by their null moments, max over rows per draw.

    Rows share their permutations (one draw pairs the contexts the same way at every layer), so the maximum of the
    standardised null over rows is the right reference for "the best of these layers" (Westfall-Young).
    """
    sds = np.where(np.asarray(sds) > 0, sds, np.inf)
    z_obs = (np.asarray(observed) - means) / sds
    z_null = (np.asarray(null) - np.asarray(means)[:, None]) / sds[:, None]
    peak = z_null.max(axis=0)
    tolerance = 1e-10 * np.maximum(1.0, np.abs(z_obs))
    exceed = (peak[None, :] >= (z_obs - tolerance)[:, None]).sum(axis=1)
    return (1.0 + exceed) / (peak.size + 1.0)


def shuffled_pairing(n: int, seed: int) -> np.ndarray:
    """The null battery's pairing of contexts with target distributions: a seeded uniform permutation.

    Uniform (fixed points allowed) rather than a derangement: the observed pairing is then distributed exactly
    like one null draw, so the permutation p-value is exactly uniform under the null battery.
    """
    return np.random.default_rng([int(seed), 0x0911]).permutation(n)


def _square(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 3:
        raise InvalidInputError(f"the context Spearman matrix must be square with at least 3 contexts; got {M.shape}")
    return M
