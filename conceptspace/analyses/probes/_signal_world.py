"""An interval for a regression probe's R^2 effect: the spread of its CV score where the estimated signal is true.

Why not the bootstrap. R^2 is not a mean of per-item terms (each fold's ``1 - SSE / SST`` has its own
denominator), so the nested-CV estimator that calibrates accuracies does not apply, and the refit grouped
bootstrap errs wide for it (1.1-2.3x the width needed, pure noise covered in up to 1.00 of data sets;
docs/STATISTICS.md; a plausible reading: a bootstrap sample holds about 63% of the groups, and a CV R^2 on fewer
distinct groups overfits and spreads more). The permutation null, on the other hand, is the exact sampling
distribution of the CV score given the targets when there is no signal, but too narrow under signal (the chosen
penalty moves with it).

The signal world. Keep the features and the task's folds; draw targets ``y* = mean(y) + b * (p - mean(p)) +
r[pi]``, where ``p`` are the task's out-of-fold predictions, ``b = max(0, slope of y on p)`` their calibration slope
(the part of the targets the probe's predictions carry), ``r = y - mean(y) - b * (p - mean(p))`` the rest, and
``pi`` a permutation of the same scheme as the null's (where the null moves whole groups, because the targets are
constant within groups, the signal and the rest are taken at the group level, each group's mean, so that every
``y*`` is constant within groups too). Every ``y*`` goes through the task's CV procedure (outer folds, inner folds,
penalty grid) as one batch of the permutation engine. The world holds the realized signal and rest in place; their
own sampling spread is added as the spread of the realized signal share ``S / (S + N)`` over a grouped bootstrap.
The interval is the basic one, ``[effect - q_hi, effect - q_lo]`` of the draws' deviations from their mean (plus
an independent share deviation). Where the predictions carry nothing (``b = 0``) the world is the permutation null:
the interval is the permutation test inverted, exact on pure noise, and the interval and the p-value then measure
one variance.

Measured (``benchmarks/r2_signal_world.py``, 200-700 data sets a design, docs/STATISTICS.md): at 100 groups it
covered the truth in 0.939-0.943 (pure noise and Gaussian targets, the nested penalty; p < 0.05 in 0.049) and
0.943-0.980 with a fixed penalty, with 0.97-1.10x the width needed, where the bootstrap covered 0.99-1.00 with
1.6-2.1x. It is narrow on heavy-tailed targets (0.78-0.79 on Student-t(3), where the realized extreme targets carry much
of the score's spread) and, with the nested penalty, below 100 groups (0.92 at 40; with a fixed penalty it held at
40: 0.957-0.973): the family keeps the bootstrap there (:func:`world_unsuited`), which says why.

Paired differences (:class:`PairedWorld`). "The task beats its control" needs the interval of task minus control
on the same targets. Each control (an untrained twin, the spectrum-matched twin, the lexical baseline) gets its own
world from its own predictions, drawn with the task's seed, so with the task's permutations and bootstrap weights;
the draws' differences (plus the shares' difference and the twin seeds' spread) give the basic interval. On pure
noise it covered 0 in 0.940-0.953 (100 and 40 groups, both probes), where the refit bootstrap's paired interval
covered 1.000 with 1.9-2.2x the width needed; with a signal only the task carries and the nested penalty it covered
0.907, every miss above the upper bound (``benchmarks/r2_paired_world.py``, docs/STATISTICS.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptspace.analyses.probes._nested import _operators, is_nested, nested_scores
from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._exact import Labels
from conceptspace.stats._folds import Fold
from conceptspace.stats._linear import as_tensor
from conceptspace.stats._permutation import (
    Scheme,
    _label_linear_spec,
    _refit_scores,
    draw_permutations,
    exact_scores,
)
from conceptspace.utils.validation import check_features, check_groups

#: draws of the signal world per row (a 95% interval reads its 2.5% and 97.5% quantiles)
DEFAULT_WORLD_DRAWS = 400
#: below this many groups the world's interval was measured narrow under signal where the probe selects its penalty
#: by inner CV in every draw (0.920 at 40 groups, nominal at 100); with a fixed penalty it was not (0.973 at 40, 1.20x
#: the width needed; 0 covered in 0.957 on pure noise), and 40 groups is the smallest size measured. The family keeps
#: the (conservative) bootstrap below these sizes.
MIN_GROUPS = 100
MIN_GROUPS_FIXED_PENALTY = 40
#: above this excess kurtosis of the groups' targets the world's interval was measured narrow (heavy tails: the
#: realized extreme targets, which the world holds in place, carry much of the score's sampling spread); the family
#: keeps the bootstrap there
MAX_EXCESS_KURTOSIS = 1.0
#: the draws' seed offset, so that they never coincide with the null's permutations (batch ``[seed, offset]``)
_SEED_OFFSET = 7_919_000


@dataclass(frozen=True)
class SignalWorld:
    """Per row: the world's CV scores (B,), the spread of the realized signal share over resampled groups (B,),
    and the calibration slope ``b`` that set the world's signal."""

    scores: np.ndarray
    design: np.ndarray
    slope: float

    @property
    def deviations(self) -> np.ndarray:
        """The pivot of the basic interval: each draw's deviation from the draws' mean plus an independent deviation
        of the signal share (the two sources of spread added, skew kept)."""
        design = self.design - self.design.mean()  # paired with the draws by one fixed shuffle (reproducible)
        shuffled = design[np.random.default_rng(self.design.size).permutation(design.size)]
        return self.scores - self.scores.mean() + shuffled

    def interval(self, effect: float, level: float) -> tuple[float, float]:
        """``[effect - q_hi, effect - q_lo]``: the basic interval of ``effect`` at ``level``."""
        return _basic_interval(self.deviations, effect, level)


@dataclass(frozen=True)
class PairedWorld:
    """The signal world of a paired difference, task score minus the mean of a control's arms (twin seeds), on
    one row: every arm's own world drawn with the *same* permutations and the same bootstrap weights, so that the
    two sides' draws keep the dependence that shared targets give their scores.

    Why each side in its own world. Over data sets the task's and a control's CV R^2 are correlated because they
    score the same targets (0.91 on pure noise with the nested penalty, 0.46 with a signal the task alone
    carries; docs/STATISTICS.md). Each world holds its own arm's realized signal in place and exchanges the
    rest; with shared permutations the two sides share the exchanged part, which carries that dependence. A world
    shared by both sides (one set of targets) holds the task's signal in place against the control's features too,
    so the control's score spreads too little (0.780 on a task-only signal); worlds with independent permutations
    lose the dependence (0.995, 1.32x the width needed).

    ``seed_sd``: the SD of the control arms' observed scores over seeds (twins), added as the variance of their
    mean (``seed_sd^2 / n_seeds``, as the paired nested-CV interval adds it); 0 for one arm."""

    task: SignalWorld
    controls: tuple[SignalWorld, ...]
    seed_sd: float = 0.0

    @property
    def n_seeds(self) -> int:
        return len(self.controls)

    @property
    def deviations(self) -> np.ndarray:
        """Each draw's difference (task minus the controls' mean) from the draws' mean, plus the signal shares'
        difference on the same bootstrap weights (independent of the draws, as for one arm) and the seeds'
        spread (a normal deviate, fixed by the number of draws: reproducible)."""
        difference = SignalWorld(scores=self.task.scores - np.mean([c.scores for c in self.controls], axis=0),
                                 design=self.task.design - np.mean([c.design for c in self.controls], axis=0),
                                 slope=self.task.slope)
        if self.seed_sd <= 0:
            return difference.deviations
        n_draws = difference.scores.size
        spread = self.seed_sd / np.sqrt(self.n_seeds) * np.random.default_rng([n_draws, 1]).standard_normal(n_draws)
        return difference.deviations + spread

    def interval(self, difference: float, level: float) -> tuple[float, float]:
        """``[difference - q_hi, difference - q_lo]``: the basic interval of the difference of effects."""
        return _basic_interval(self.deviations, difference, level)


def _basic_interval(deviations: np.ndarray, effect: float, level: float) -> tuple[float, float]:
    """``[effect - q_hi, effect - q_lo]`` of the deviations' quantiles at ``level``."""
    q_low, q_high = np.quantile(deviations, [(1 - level) / 2, (1 + level) / 2])
    return float(effect - q_high), float(effect - q_low)


@dataclass(frozen=True)
class SignalSplit:
    """The targets split as the world uses them: ``y = mean + signal + rest`` item by item, ``slope`` the
    calibration slope; with whole groups exchanged, both parts are their groups' means."""

    mean: float
    signal: np.ndarray
    rest: np.ndarray
    slope: float


def group_target_kurtosis(y: np.ndarray, groups: Sequence[Hashable] | np.ndarray | None) -> float:
    """The excess kurtosis (moment estimator, 0 for a Gaussian) of the groups' mean targets."""
    codes = check_groups(groups, np.asarray(y).shape[0])
    means = np.bincount(codes, weights=np.asarray(y, dtype=np.float64)) / np.bincount(codes)
    centred = means - means.mean()
    variance = float(np.mean(centred**2))
    return float(np.mean(centred**4) / variance**2 - 3.0) if variance > 0 else float("nan")


def world_unsuited(y: np.ndarray, groups: Sequence[Hashable] | np.ndarray | None, *,
                   selects_penalty: bool = True) -> str | None:
    """Why the signal world's interval is not used for these targets (None: it is): too few groups for the probe
    (:data:`MIN_GROUPS` where it selects its penalty by inner CV, :data:`MIN_GROUPS_FIXED_PENALTY` otherwise) or
    heavy tails, where it was measured to under-cover (module doc)."""
    n_groups = int(np.unique(check_groups(groups, np.asarray(y).shape[0])).size)
    least = MIN_GROUPS if selects_penalty else MIN_GROUPS_FIXED_PENALTY
    if n_groups < least:
        kind = "a probe that selects its penalty" if selects_penalty else "a fixed-penalty probe"
        return f"{n_groups} groups, fewer than {least} for {kind}"
    kurtosis = group_target_kurtosis(y, groups)
    if not kurtosis <= MAX_EXCESS_KURTOSIS:
        return f"heavy-tailed targets (excess kurtosis {kurtosis:.2f} > {MAX_EXCESS_KURTOSIS:g})"
    return None


def split_targets(y: np.ndarray, predictions: np.ndarray, groups: Sequence[Hashable] | np.ndarray | None, *,
                  scheme: Scheme) -> SignalSplit:
    """The part of the targets the out-of-fold predictions carry (their calibration slope times the centred
    predictions, the slope floored at 0) and the rest; at the group level where the null moves whole groups."""
    y = np.asarray(y, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if y.ndim != 1 or predictions.shape != y.shape:
        raise InvalidInputError(f"the signal world needs one target and one prediction per item; got targets "
                                f"{y.shape} and predictions {predictions.shape}")
    if not (np.isfinite(y).all() and np.isfinite(predictions).all()):
        raise InvalidInputError("the signal world needs finite targets and predictions; drop or fill the NaNs")
    centred_y, centred_p = y - y.mean(), predictions - predictions.mean()
    spread = float(centred_p @ centred_p)
    slope = max(0.0, float(centred_p @ centred_y) / spread) if spread > 0 else 0.0
    signal = slope * centred_p
    rest = centred_y - signal
    if scheme != "group":
        return SignalSplit(float(y.mean()), signal, rest, slope)
    codes = check_groups(groups, y.shape[0])  # targets constant within groups stay so
    sizes = np.bincount(codes)

    def group_mean(values: np.ndarray) -> np.ndarray:
        return (np.bincount(codes, weights=values) / sizes)[codes]

    return SignalSplit(float(y.mean()), group_mean(signal), group_mean(rest), slope)


def world_targets(y: np.ndarray, predictions: np.ndarray, groups: Sequence[Hashable] | np.ndarray | None,
                  n_draws: int, *, seed: int, scheme: Scheme) -> tuple[np.ndarray, float]:
    """Targets (B, n) of the signal world (see module doc) and the calibration slope that set their signal."""
    split = split_targets(y, predictions, groups, scheme=scheme)
    return _draw_targets(split, y, groups, n_draws, seed=seed, scheme=scheme), split.slope


def _draw_targets(split: SignalSplit, y: np.ndarray, groups: Sequence[Hashable] | np.ndarray | None, n_draws: int, *,
                  seed: int, scheme: Scheme) -> np.ndarray:
    """``mean + signal + rest[pi]`` for ``n_draws`` permutations of the null's scheme."""
    perms, _ = draw_permutations(y, groups, n_draws, seed=[seed, _SEED_OFFSET], scheme=scheme)
    return split.mean + split.signal[None, :] + split.rest[perms]


def signal_share_spread(split: SignalSplit, groups: Sequence[Hashable] | np.ndarray | None, n_draws: int, *,
                        seed: int) -> np.ndarray:
    """The realized signal share ``S / (S + N)`` (S, N: the variances of the signal and the rest) on ``n_draws``
    grouped bootstrap samples: the sampling spread of what the world holds fixed (module doc)."""
    weights = group_counts(groups, split.signal.shape[0], n_draws, seed)
    total = weights.sum(axis=1)

    def variance(values: np.ndarray) -> np.ndarray:
        centre = weights @ values / total
        return (weights @ values**2) / total - centre**2

    signal, rest = variance(split.signal), variance(split.rest)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = signal / (signal + rest)
    return np.where(np.isfinite(share), share, 0.0)


def target_scores(probe: Any, X_layers: Any, y: np.ndarray, targets: np.ndarray,
                  groups: Sequence[Hashable] | np.ndarray | None, *, folds: list[Fold], scoring: str,
                  seed: int) -> np.ndarray:
    """Grouped-CV scores (L, B) of ``probe`` for each row of ``targets`` (B, n), on the task's own folds.

    The permutation engine scores relabellings ``labels[rows]``; here the "labels" are the B target vectors laid
    end to end and draw b reads rows ``b n .. b n + n - 1``, so each target set goes through exactly the path
    (exact solves, nested penalty selection with the task's inner folds, or refits) that the null draws use.
    ``y`` (the task's targets) only fixes the nested probe's inner folds, as it does for the task.
    """
    X = check_features(X_layers, ndim=3)
    targets = np.asarray(targets, dtype=np.float64)
    n_draws, n = targets.shape
    if n != X.shape[1]:
        raise InvalidInputError(f"targets have {n} items, the features {X.shape[1]}")
    stacked = Labels(task="regression", codes=None, n_classes=None, targets=targets.reshape(-1, 1))
    rows = np.arange(n_draws * n).reshape(n_draws, n)
    if is_nested(probe):
        ops = _operators(probe, as_tensor(X), np.asarray(y), groups, folds, seed, "regression")
        return nested_scores(ops, stacked, rows, scoring)
    spec = _label_linear_spec(probe, stacked)
    if spec is not None:
        return exact_scores(spec, as_tensor(X), stacked, folds, rows, scoring)
    flat = targets.reshape(-1)
    return np.stack([_refit_scores(probe, X[layer], flat, folds, rows, scoring) for layer in range(X.shape[0])])


def signal_world(probe: Any, X_layers: Any, y: np.ndarray, predictions: np.ndarray,
                 groups: Sequence[Hashable] | np.ndarray | None, *, folds: list[Fold], scoring: str, seed: int,
                 scheme: Scheme, n_draws: int = DEFAULT_WORLD_DRAWS) -> list[SignalWorld]:
    """One :class:`SignalWorld` per row of ``X_layers`` (L, n, d), each from that row's out-of-fold
    ``predictions`` (L, n) on the task's ``folds``: the rows' worlds differ, since each layer's predictions carry
    its own signal."""
    X = check_features(X_layers, ndim=3)
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.shape != X.shape[:2]:
        raise InvalidInputError(f"one out-of-fold prediction per row and item is needed; got {predictions.shape} "
                                f"for features {X.shape}")
    if n_draws < 2:
        raise InvalidInputError(f"the signal world needs at least 2 draws; got {n_draws}")
    worlds = []
    for layer in range(X.shape[0]):
        split = split_targets(y, predictions[layer], groups, scheme=scheme)
        targets = _draw_targets(split, y, groups, n_draws, seed=seed, scheme=scheme)
        scores = target_scores(probe, X[layer:layer + 1], y, targets, groups, folds=folds, scoring=scoring,
                               seed=seed)[0]
        design = signal_share_spread(split, groups, n_draws, seed=seed + _SEED_OFFSET)
        worlds.append(SignalWorld(scores=scores, design=design, slope=split.slope))
    return worlds
