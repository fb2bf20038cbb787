"""Placebo directions and the statistics a causal test draws from them: a rank p and an interval that agree.

Why it is built this way:

* **Data-drawn placebos by default.** A concept direction is a mass-mean difference of the concept words'
  activations. Its placebo is the same estimator on the same words with the labels shuffled
  (:class:`RelabelledPlacebos`): it has the concept direction's norm structure, its alignment with the
  high-variance directions of the activations, and its estimation noise, so "beats the placebos" means "beats
  what this estimator finds in these words without the concept". Isotropic random directions
  (:class:`IsotropicPlacebos`) are kept as a reference only: in a residual stream with a few dominant
  directions they are far weaker than any data-derived direction and make every mass-mean direction look causal.
* **Placebo j is seeded by (seed, j)** (:func:`index_seed`), so the first k placebos of a run are the same
  whether they were drawn in one batch or in several: a sequential p-value can draw more without changing the
  ones it has, and the model and its twins get the same relabellings (paired placebos).
* **+/-v pairs.** The sign of a relabelled mass-mean direction is arbitrary (swapping the two shuffled classes
  is as likely as not), so each placebo enters with both signs. With a strength grid symmetric about 0 the
  steering slope of -u is exactly minus that of u, so the pair costs no extra forward and the null is exactly
  centred (null mean 0 up to float error): the concept's effect is not shifted by a noisy placebo mean.
* **The interval has the p-value's variance** (:func:`placebo_interval`). The p-value ranks the concept's
  statistic among placebo statistics: its randomness is which direction the estimator returned. A bootstrap
  over prompts with the directions fixed misses exactly that (the reference run's random direction tested as
  the concept got CI [0.96, 1.74] with p = 0.13). The interval inverts the rank test (exact coverage by
  exchangeability, for any number of placebos: a percentile interval of bootstrap replicates covered 0 in only
  91-93% of pure-noise draws with 60-100 placebo pairs, the finite-sample loss of an empirical quantile). The
  replicates handed to paired differences are a two-level bootstrap over prompts and placebo directions: a
  resampled placebo stands in for the concept direction's estimation noise (a relabelled mass-mean direction is
  that noise, exactly under the null), a resampled placebo set for the error of the null mean. Resampling the
  prompts as well adds little: the placebo spread already holds a direction's prompt-to-prompt variation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts


def index_seed(seed: int, index: int) -> int:
    """A 63-bit seed for placebo ``index`` of a run seeded ``seed`` (independent streams per index)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(2, np.uint64)[0] >> 1)


class PlaceboSource(Protocol):
    """Where placebo directions come from: ``directions(indices)`` gives (k, d) unit vectors, placebo j
    always the same for the same source (seeded by index, not by the order of the calls)."""

    @property
    def name(self) -> str: ...

    def directions(self, indices: np.ndarray) -> torch.Tensor: ...


@dataclass(frozen=True)
class IsotropicPlacebos:
    """Isotropic Gaussian unit directions in d dimensions (the reference placebo: norm-matched, data-blind)."""

    d_model: int
    seed: int = 0
    name: str = "isotropic"

    def directions(self, indices: np.ndarray) -> torch.Tensor:
        rows = []
        for j in np.asarray(indices, dtype=np.int64):
            generator = torch.Generator().manual_seed(index_seed(self.seed, int(j)))
            rows.append(torch.randn(self.d_model, generator=generator, dtype=torch.float64))
        draws = torch.stack(rows) if rows else torch.zeros(0, self.d_model, dtype=torch.float64)
        return (draws / draws.norm(dim=1, keepdim=True)).to(torch.float32)


@dataclass(frozen=True)
class RelabelledPlacebos:
    """Mass-mean directions of the concept words with shuffled labels (the data-drawn placebo).

    ``relabel(seed)`` returns one label vector (0/1, length n) of a random relabelling, normally
    ``concepts.null_labels(concept_set, seed).labels`` (labels shuffled the way the concept set's null asks:
    within groups, or whole groups at once); placebo j uses ``relabel(index_seed(seed, j))``.
    """

    X: np.ndarray
    relabel: Callable[[int], np.ndarray]
    seed: int = 0
    name: str = "relabelled"
    _centred: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        X = np.asarray(self.X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2:
            raise InvalidInputError(f"relabelled placebos need an (n, d) activation matrix with n >= 2; got {X.shape}")
        object.__setattr__(self, "_centred", X - X.mean(axis=0))

    def directions(self, indices: np.ndarray) -> torch.Tensor:
        n, _d = self._centred.shape
        weights = np.zeros((len(indices), n))
        for row, j in enumerate(np.asarray(indices, dtype=np.int64)):
            y = np.asarray(self.relabel(index_seed(self.seed, int(j))))
            if y.shape != (n,):
                raise InvalidInputError(f"a relabelling must give one label per item ({n}); got shape {y.shape}")
            ones = y == 1
            if ones.all() or not ones.any():
                raise InvalidInputError("a relabelling left one class empty; the concept set needs both classes")
            weights[row] = np.where(ones, 1.0 / ones.sum(), -1.0 / (~ones).sum())
        directions = weights @ self._centred  # class-1 mean minus class-0 mean of each relabelling
        norms = np.linalg.norm(directions, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise InvalidInputError("a relabelled mass-mean direction is zero: the activations are constant")
        return torch.as_tensor(directions / norms, dtype=torch.float32)


def signed_pairs(values: np.ndarray, negated: np.ndarray) -> np.ndarray:
    """Interleave the statistics of +u_j and -u_j: null draw 2j is +u_j, 2j + 1 is -u_j (leading axis)."""
    out = np.empty((2 * values.shape[0], *values.shape[1:]), dtype=np.float64)
    out[0::2] = values
    out[1::2] = negated
    return out


def rank_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided placebo rank p, (1 + #{null >= observed}) / (B + 1): valid for any B (ties count against)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= observed)) / (null.size + 1))


@dataclass(frozen=True)
class PlaceboEffect:
    """The concept's statistic against its placebos: effect = statistic - null mean, and its interval.

    ``replicates`` (n_bootstrap,) are effect replicates; two tests bootstrapped with the same seed, prompt count
    and placebo count use the same draws, so their differences are paired.
    """

    statistic: float
    effect: float
    null_mean: float
    null_sd: float
    z: float
    ci_low: float
    ci_high: float
    replicates: np.ndarray


def bootstrap_draws(n_items: int, n_placebos: int, n_bootstrap: int, seed: int,
                    resample_items: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The resamples of :func:`placebo_interval`: item weights (B, n), placebo sets (B, P), one placebo (B,).

    Drawn from uniforms scaled to the counts, so the same seed pairs placebo j of two tests even when one drew
    a few more placebos than the other (each draw lands on the same relative position). The single placebo
    cycles through all of them (stratified), which keeps the replicates' Monte Carlo error small."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 13]))
    sets = np.minimum((rng.random((n_bootstrap, n_placebos)) * n_placebos).astype(np.int64), n_placebos - 1)
    cycle = (np.arange(n_bootstrap) + rng.random()) / n_bootstrap  # stratified: every placebo equally often
    one = np.minimum((rng.permutation(cycle) * n_placebos).astype(np.int64), n_placebos - 1)
    if resample_items:
        counts = group_counts(None, n_items, n_bootstrap, seed)
        weights = counts / counts.sum(1, keepdims=True)
    else:
        weights = np.full((n_bootstrap, n_items), 1.0 / n_items)
    return weights, sets, one


def rank_interval(statistic: float, null: np.ndarray, level: float = 0.95, *,
                  paired: bool = True) -> tuple[float, float]:
    """The interval of the shift delta that a two-sided placebo rank test at ``1 - level`` does not reject.

    ``[statistic - q_hi, statistic - q_lo]`` with ``q_lo``, ``q_hi`` the k-th smallest and largest null values.
    Unpaired null (B exchangeable draws): k = floor((1 - level) / 2 * (B + 1)); the concept falls below the
    k-th smallest (at most k - 1 placebos below it) with probability k / (B + 1) <= (1 - level) / 2. Null of
    +/-u pairs (``paired``, B = 2P values, symmetric): the concept (of random sign) escapes the k-th largest
    |value| with probability k / (P + 1), so k = floor((1 - level) * (P + 1)); counting the 2P values as
    independent would under-cover (93% at P = 60). Either way the interval covers 0 with probability >= level
    under the null, exactly for any B, and excludes 0 when the concept is in the placebo tail the rank p
    measures. With too few placebos for the level (fewer than 19 pairs or 39 unpaired draws at 95%) there is
    no such interval: NaN ends (JSON keeps NaN, not infinity)."""
    ordered = np.sort(np.asarray(null, dtype=np.float64))
    if paired:
        k = int(np.floor((1.0 - level) * (ordered.size // 2 + 1) + 1e-9))
    else:
        k = int(np.floor((1.0 - level) / 2.0 * (ordered.size + 1) + 1e-9))
    if k < 1 or k > ordered.size:
        return float("nan"), float("nan")
    return float(statistic - ordered[-k]), float(statistic - ordered[k - 1])


def placebo_interval(
    concept: np.ndarray,
    placebos: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
    resample_items: bool = True,
    paired: bool = True,
) -> PlaceboEffect:
    """Effect of a concept's per-item statistic against placebo directions' ones, its interval and replicates.

    ``concept`` (n,) and ``placebos`` (P, n) are per-item values (e.g. per-prompt steering slopes; ``paired``:
    rows 2j and 2j + 1 are +u_j and -u_j, see :func:`rank_interval`); the
    statistic is their mean over items, the effect that minus the placebos' mean. The interval inverts the
    rank test (:func:`rank_interval`): its variance is the placebo directions' spread, the one the p-value
    uses. The replicates (for paired differences between the model and its controls) are two-level: each
    resamples the items (weights w_b, when ``resample_items``), a placebo set S_b (P draws with replacement)
    and one placebo j_b (cycling through all of them, so each is used equally often), and is
    ``w_b.c - w_b.s_j_b - (mean_S_b w_b.s - w_b.s_bar)`` (``s_bar``: the mean over all placebos): centred on
    the observed effect, spread by one placebo's deviation (the concept direction's estimation noise) and by
    the error of the placebo mean. See the module docstring.
    """
    concept = np.asarray(concept, dtype=np.float64)
    placebos = np.asarray(placebos, dtype=np.float64)
    if placebos.ndim != 2 or placebos.shape[0] < 2 or placebos.shape[1] != concept.shape[0]:
        raise InvalidInputError(
            f"placebo values must be (P >= 2, n={concept.shape[0]}); got {placebos.shape}: draw more placebos"
        )
    statistic = float(concept.mean())
    means = placebos.mean(axis=1)  # (P,)
    null_mean = float(means.mean())
    null_sd = float(means.std(ddof=1))
    effect = statistic - null_mean
    low, high = rank_interval(statistic, means, level, paired=paired)
    weights, sets, one = bootstrap_draws(concept.shape[0], placebos.shape[0], n_bootstrap, seed, resample_items)
    c_b = weights @ concept  # (B,)
    s_b = weights @ placebos.T  # (B, P)
    rows = np.arange(n_bootstrap)[:, None]
    set_mean = s_b[rows, sets].mean(axis=1)
    chosen = s_b[np.arange(n_bootstrap), one]
    replicates = c_b - chosen - (set_mean - s_b.mean(axis=1))
    z = effect / null_sd if null_sd > 0 else float("nan")
    return PlaceboEffect(statistic, effect, null_mean, null_sd, z, low, high, replicates)
