"""The interval of a cross-validated score by nested cross-validation (after Bates, Hastie & Tibshirani 2023).

Why this and not the bootstrap. The refit bootstrap (:mod:`conceptspace.stats._refit_bootstrap`) over-states
the CV score's sampling SD by 1.1-1.25x from about 100 groups on (its 95% interval covered the expected CV score
in 0.97-0.99 of planted data sets at 100 groups): in the resampled world the fitted probe is not at the optimum
of the accuracy it is scored on, so a training item moves a replicate's score at first order, which it does not
in the real one. Bates, Hastie and Tibshirani ("Cross-validation: what does it estimate and how well does it do
it?", JASA 2023) estimate the mean squared error of the CV estimate directly, from CV run inside CV:

* repeat R times: deal the groups into K new (stratified, grouped) folds; run the ordinary K-fold CV (the outer
  per-unit scores); and for each fold k, run a (K-1)-fold CV of the data without fold k on the other folds (the
  inner per-unit scores). ``a_k`` = mean of the inner scores - mean of fold k's outer scores, and ``b_k`` =
  variance of fold k's outer scores / its size (the noise of fold k as a stand-in for new data);
* ``MSE = mean(a_k^2 - b_k)`` estimates the mean squared error of a CV score on (K-1)/K of the data; against the
  naive SE of the pooled inner scores, ``sd / sqrt(n_sub)``, it gives an inflation factor, and the score's SE is
  ``sd / sqrt(G) * inflation``;
* the interval is ``centre +/- z * SE`` with ``centre`` the mean of the R outer CV scores: the same estimand as
  the run's own CV score (the expected score of the procedure at this sample size) with the fold dealing averaged
  out, as the authors centre theirs on a repeated estimate.

Three choices differ from the authors' package. Units are groups (a group's items always share a fold), each scored
by its items' class-weighted correctness scaled so that the mean over all groups is the balanced accuracy (plain
correctness for accuracy); only scores that are means of per-unit terms qualify, others (R^2, AUROC) keep the
bootstrap. ``b_k`` is the fold mean's variance pooled within strata (groups of the same class make-up): the folds
are dealt stratified, so a fold's class shares are fixed, not sampled, and a unit term fixed by the class is not
noise of the fold's mean (see :func:`_fold_mean_variance`; with the paper's plain variance a paired difference
with a control that predicts one class fell to the estimate's floor, 0.036 where the task's own SE was 0.107, on
the quick battery's sentiment probe). And the inflation is not clipped below at 1 (the naive SE), only kept in
[1/sqrt(K), sqrt(K)] against a degenerate estimate: the real variance approaches the naive one as the sample
grows (the test role's share, docs/STATISTICS.md), so a floor at 1 turns the estimate's noise into an upward bias
(SE / Monte Carlo SD 0.99, 1.02, 1.04 at 40, 100, 200 groups with it; 0.97, 1.01, 1.02 without).

Paired differences. With control arms on the same items (an untrained twin's activations, control-task labels),
every arm is fitted on the same outer and inner folds and a group's unit is its task score minus the controls'
mean: the estimator then gives the interval of "task minus control" that "beats the control" needs (calibrated at
40-200 groups in a re-implementation, where the refit bootstrap's paired replicates err wide from 100 groups). A
run's probe family gives its primary row one such interval per control (:func:`nested_cv_errors`), and the
verdict reads it.

Cost. A repeat needs, per arm, the K fits of its outer CV and the (K-1) fits of each fold's inner CV; the fit
without folds k and j serves both fold k's inner CV (scoring j) and fold j's (scoring k), so there are
K + K(K-1)/2 distinct fits (15 for K = 5, not 25), run as K cross-validations over partitions of the folds (the
circle method of a round-robin; :func:`_rounds`), with outputs identical to fitting each inner CV on its own.

Measured (``tests/unit/test_probe_intervals.py`` and docs/STATISTICS.md, planted Gaussian classes, 300 data sets per
size): the interval covers the expected CV score in 0.947 and 0.963 of data sets at 40 and 100 groups, where the
refit bootstrap's covered 0.947 and 0.990 (0.965 at 200 groups in a re-implementation; SE 1.02x the real SD), and
covers 0 in 0.970 of pure-noise label sets; a paired difference covers 0 in 0.960-0.965 of pure-noise sets against a
control task, an untrained stand-in and a control that predicts one class. The protocol was read from the paper and
the authors' R package ``nestedcv``; the code here is written for grouped folds and the library's batched probes.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptspace.analyses.probes._cv import _folds_cover_classes, cross_validate_layers
from conceptspace.analyses.probes._nested import is_nested, nested_cross_validate
from conceptspace.errors import InvalidInputError
from conceptspace.stats._folds import Fold, fold_ids, grouped_folds
from conceptspace.stats._scoring import score_one
from conceptspace.utils.validation import check_features, check_groups

#: scores that are means of per-unit terms (the estimator needs that)
DECOMPOSABLE_SCORES = ("accuracy", "balanced_accuracy")
DEFAULT_REPEATS = 50


@dataclass(frozen=True)
class NestedCVError:
    """Per row (layer): the score's standard error, the inflation over the naive SE (after clipping) and the
    unclipped estimate, and ``centre``, the mean of the ``repeats`` outer CV scores (the run's CV score with the
    fold dealing averaged out); all of the task-minus-controls difference when controls were given."""

    se: np.ndarray
    inflation: np.ndarray
    inflation_raw: np.ndarray
    centre: np.ndarray
    repeats: int
    #: (S, L): the mean CV score over the repeats of each control arm of a paired estimate (None for the task alone)
    control_centres: np.ndarray | None = None


def repeat_folds(y: Any, groups: np.ndarray, *, n_splits: int, repeats: int, seed: int) -> list[list[Fold]]:
    """The grouped, stratified folds of each repeat (repeat r dealt with a seed drawn from ``seed``)."""
    seeds = np.random.SeedSequence([seed, 7919]).generate_state(repeats)
    return [grouped_folds(y, groups, n_splits=n_splits, seed=int(s)) for s in seeds]


def nested_cv_standard_error(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    scoring: str,
    n_splits: int = 5,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    controls: Sequence[tuple[Any, Any]] = (),
) -> NestedCVError:
    """The nested-CV standard error of the grouped K-fold CV ``scoring`` of ``probe`` on every row of X (L, n, d).

    Every repeat deals new folds (seeded from ``seed`` and the repeat), so the estimate does not depend on the
    run's own folds. Raises :class:`~conceptspace.errors.InvalidInputError` for a score that is not a mean of
    per-unit terms, fewer than K + 1 groups, a class in fewer than K groups, or fewer than 2 repeats.

    ``controls``: (X, y) arms on the same items (X (L, n, d'), e.g. an untrained twin's activations with the task's
    labels, or the task's activations with control-task labels). With them the estimate is of the *paired*
    difference, task score minus the controls' mean score: every arm is fitted on the same outer and inner folds
    (dealt on the task's labels) and each group's unit is its task score minus the controls' mean, so the
    estimator is unchanged and ``centre`` is the repeats' mean difference (the run's CV score difference with the
    fold dealing averaged out). Measured on planted classes against a control task and an untrained stand-in:
    coverage 0.93-0.97 at 40, 100 and 200 groups, where the refit bootstrap's paired interval errs wide from 100
    groups (docs/STATISTICS.md). Several differences at once (the task against each control) share the task's
    fits in :func:`nested_cv_errors`, which runs use.
    """
    if not controls:
        return nested_cv_errors(probe, X_layers, y, groups, scoring=scoring, n_splits=n_splits, repeats=repeats,
                                seed=seed).task
    errors = nested_cv_errors(probe, X_layers, y, groups, scoring=scoring, n_splits=n_splits, repeats=repeats,
                              seed=seed, controls={"controls": controls})
    if "controls" in errors.skipped:
        raise InvalidInputError(errors.skipped["controls"])
    return errors.paired["controls"]


@dataclass(frozen=True)
class NestedCVErrors:
    """The task's own :class:`NestedCVError`, each named contrast's (task minus the mean of its arms), and the
    contrasts left out with the reason (an arm whose labels the task's folds cannot serve)."""

    task: NestedCVError
    paired: dict[str, NestedCVError]
    skipped: dict[str, str]


def nested_cv_errors(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    scoring: str,
    n_splits: int = 5,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    controls: Mapping[str, Sequence[tuple[Any, Any]]] | None = None,
) -> NestedCVErrors:
    """The nested-CV error of the task's score and of each paired difference ``task - mean(controls[name])``.

    As :func:`nested_cv_standard_error`, with every control arm fitted once per fold and shared by the contrasts,
    so the cost is one fit of each arm (the task's included) per outer and inner fold, whatever the number of
    contrasts. A contrast whose arm cannot be scored on the task's folds (its labels leave a class out of a
    training part, or its fit refuses the data) is left out with the reason in ``skipped``; the task's own
    estimate and the other contrasts are unaffected. Each contrast's ``control_centres`` holds its arms' mean
    CV scores over the repeats (for the spread between twin seeds).
    """
    if scoring not in DECOMPOSABLE_SCORES:
        raise InvalidInputError(f"the nested-CV standard error needs a per-item score {DECOMPOSABLE_SCORES}; "
                                f"got {scoring!r}")
    if repeats < 2:
        raise InvalidInputError(f"repeats must be >= 2; got {repeats}")
    X = check_features(X_layers, ndim=3)
    n_layers, n, _ = X.shape
    codes = check_groups(groups, n)
    n_units = int(codes.max()) + 1
    if n_units <= n_splits:
        raise InvalidInputError(f"the nested-CV standard error needs more groups ({n_units}) than folds ({n_splits})")
    y_arr = np.asarray(y)
    classes, y_codes = np.unique(y_arr, return_inverse=True)
    groups_per_class = [np.unique(codes[y_codes == c]).size for c in range(classes.size)]
    if min(groups_per_class) < n_splits:
        raise InvalidInputError(
            f"the nested-CV standard error needs every class in every fold: the smallest class has "
            f"{min(groups_per_class)} group(s) for {n_splits} folds; lower n_splits or add groups of that class"
        )
    validate = nested_cross_validate if is_nested(probe) else cross_validate_layers
    unit_of_fold = np.zeros(n_units, dtype=np.int64)  # a group's items share a fold
    arms = [(X, y_arr)]
    members: dict[str, list[int]] = {}
    for name, arm_list in (controls or {}).items():
        if not arm_list:
            raise InvalidInputError(f"contrast {name!r} has no control arm")
        members[name] = list(range(len(arms), len(arms) + len(arm_list)))
        arms += [_control_arm(control, X.shape[:2], len(arms) - 1 + i) for i, control in enumerate(arm_list)]
    labelled = [_unit_labels(arm_y, n, scoring) for _, arm_y in arms]
    failed: dict[int, str] = {}

    def unit_scores(outputs: np.ndarray, items: np.ndarray, arm: int = 0) -> np.ndarray:
        """(L, G) per-group scores of ``items`` (NaN for groups not among them); mean over all groups = score."""
        arm_codes, weight = labelled[arm]
        correct = (outputs == arm_codes[items]).astype(np.float64) * weight[items] * (n_units / n)
        out = np.stack([np.bincount(codes[items], weights=row, minlength=n_units) for row in correct])
        out[:, np.setdiff1d(np.arange(n_units), codes[items])] = np.nan
        return out

    def fit_round(folds: list[Fold]) -> dict[int, np.ndarray]:
        """Every arm still in play, cross-validated over ``folds`` (a partition of all items): its (L, n)
        outputs. A control that cannot be is dropped with its reason; the task cannot be dropped. Arms with the
        same labels and width (the task, twins, the lexical baseline) are fitted as one stack of layers: every
        layer is fitted on its own, so the outputs are the same, with one call's overhead instead of several."""
        outputs: dict[int, np.ndarray] = {}
        batches: dict[tuple[object, ...], list[int]] = {}
        for a, (arm_X, arm_y) in enumerate(arms):
            if a in failed:
                continue
            if a and not _folds_cover_classes(folds, arm_y):
                failed[a] = (f"control arm {a - 1}'s labels leave a class out of a training part of the task's folds, "
                             "so its probe could not predict that class")
                continue
            batches.setdefault((arm_y.dtype.str, arm_y.tobytes(), arm_X.shape[2]), []).append(a)
        for batch in batches.values():
            if len(batch) > 1:
                try:
                    stacked = validate(probe, np.concatenate([arms[a][0] for a in batch]), arms[batch[0]][1], codes,
                                       folds=folds, scoring=scoring).outputs
                except InvalidInputError:
                    pass  # fitted one by one below, so that the arm at fault is named
                else:
                    outputs.update({a: stacked[i * n_layers:(i + 1) * n_layers] for i, a in enumerate(batch)})
                    continue
            for a in batch:
                try:
                    outputs[a] = validate(probe, arms[a][0], arms[a][1], codes, folds=folds, scoring=scoring).outputs
                except InvalidInputError as why:
                    if not a:
                        raise
                    failed[a] = f"control arm {a - 1}: {why}"
        return outputs

    def contrasts(units: dict[int, np.ndarray], scores: dict[int, np.ndarray] | None = None
                  ) -> dict[str | None, tuple[np.ndarray | None, np.ndarray]]:
        """Per contrast (None: the task alone) still in play, its (L,) scores (when ``scores`` are given) and
        (L, G) units: the task's minus the mean of the contrast's arms' (``units`` and ``scores`` by arm)."""
        out: dict[str | None, tuple[np.ndarray | None, np.ndarray]] = {None: (scores[0] if scores else None,
                                                                              units[0])}
        for name, idx in members.items():
            if any(a in failed for a in idx):
                continue
            difference = units[0] - np.mean([units[a] for a in idx], axis=0)
            score = scores[0] - np.mean([scores[a] for a in idx], axis=0) if scores else None
            out[name] = (score, difference)
        return out

    strata = _strata(y_codes, codes, n_units)
    sums = {name: _Sums(n_layers, strata) for name in [None, *members]}
    arm_outer: dict[int, list[np.ndarray]] = {a: [] for a in range(1, len(arms))}
    everything = np.arange(n)
    for folds in repeat_folds(y_arr, codes, n_splits=n_splits, repeats=repeats, seed=seed):
        tests = [te for _, te in folds]
        # a fit without fold k scores fold k (the outer CV); a fit without folds k and j scores fold j for the
        # inner CV of fold k and fold k for that of fold j: 10 distinct fits where the inner CVs ask for 20
        outer_out: dict[int, dict[int, np.ndarray]] = {a: {} for a in range(len(arms))}
        pair_out: dict[int, dict[tuple[int, int], np.ndarray]] = {a: {} for a in range(len(arms))}
        for blocks in _rounds(n_splits):
            tested = [np.sort(np.concatenate([tests[k] for k in block])) for block in blocks]
            round_folds: list[Fold] = [(np.setdiff1d(everything, te), te) for te in tested]
            for a, outputs in fit_round(round_folds).items():
                for block in blocks:
                    if len(block) == 1:
                        outer_out[a][block[0]] = outputs[:, tests[block[0]]]
                    else:
                        k, j = block
                        pair_out[a][k, j], pair_out[a][j, k] = outputs[:, tests[j]], outputs[:, tests[k]]
        live = [a for a in range(len(arms)) if a not in failed]
        full = {a: np.zeros((n_layers, n), dtype=outer_out[a][0].dtype) for a in live}
        for a in live:
            for k, te in enumerate(tests):
                full[a][:, te] = outer_out[a][k]
        cv_scores = {a: _cv_score(full[a], labelled[a][0], tests, scoring) for a in live}
        outer = contrasts({a: unit_scores(full[a], everything, a) for a in live}, cv_scores)
        for a in live:
            if a:
                arm_outer[a].append(cv_scores[a])
        unit_of_fold[codes] = fold_ids(folds, n)
        for k, test_k in enumerate(tests):
            keep = np.setdiff1d(everything, test_k)
            inner_units = {}
            for a in live:
                outputs = np.zeros_like(full[a])
                for j, te in enumerate(tests):
                    if j != k:
                        outputs[:, te] = pair_out[a][k, j]
                inner_units[a] = unit_scores(outputs[:, keep], keep, a)
            in_k = unit_of_fold == k
            for contrast, (_, units) in contrasts(inner_units).items():
                sums[contrast].add(outer[contrast][1], units, in_k)
        for contrast, (score, _) in outer.items():
            assert score is not None
            sums[contrast].outer_scores.append(score)
    skipped = {name: "; ".join(failed[a] for a in idx if a in failed) for name, idx in members.items()
               if any(a in failed for a in idx)}
    n_sub = n_units * (n_splits - 1) / n_splits
    paired = {name: sums[name].error(n_units, n_sub, n_splits, repeats,
                                     np.array([np.mean(arm_outer[a], axis=0) for a in idx]))
              for name, idx in members.items() if name not in skipped}
    return NestedCVErrors(task=sums[None].error(n_units, n_sub, n_splits, repeats), paired=paired, skipped=skipped)


class _Sums:
    """The running pivots of one contrast: Bates-Hastie-Tibshirani's a_k and b_k per fold, the inner units'
    moments and the outer CV scores of every repeat."""

    def __init__(self, n_layers: int, strata: np.ndarray) -> None:
        self.strata = strata
        self.pivots_a: list[np.ndarray] = []
        self.pivots_b: list[np.ndarray] = []
        self.outer_scores: list[np.ndarray] = []
        self.inner_sum, self.inner_sq, self.inner_count = np.zeros(n_layers), np.zeros(n_layers), 0

    def add(self, outer_units: np.ndarray, inner_units: np.ndarray, in_k: np.ndarray) -> None:
        """Fold k of a repeat: its outer units (L, G) against the inner CV's units of every group outside it."""
        outer_k = outer_units[:, in_k]
        values = inner_units[:, ~in_k]  # every group outside fold k has an inner score
        self.pivots_a.append(values.mean(axis=1) - outer_k.mean(axis=1))
        self.pivots_b.append(_fold_mean_variance(outer_k, self.strata[in_k]))
        self.inner_sum += values.sum(axis=1)
        self.inner_sq += (values**2).sum(axis=1)
        self.inner_count += values.shape[1]

    def error(self, n_units: int, n_sub: float, n_splits: int, repeats: int,
              control_centres: np.ndarray | None = None) -> NestedCVError:
        a, b = np.array(self.pivots_a), np.array(self.pivots_b)  # (R * K, L)
        count = self.inner_count
        inner_mean = self.inner_sum / count
        inner_sd = np.sqrt(np.maximum(self.inner_sq / count - inner_mean**2, 0.0) * count / (count - 1))
        naive = inner_sd / np.sqrt(n_sub)
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.sqrt(np.maximum((a**2 - b).mean(axis=0), 0.0)) / naive
        inflation = np.clip(np.nan_to_num(raw, nan=1.0), 1.0 / np.sqrt(n_splits), np.sqrt(n_splits))
        return NestedCVError(se=inner_sd / np.sqrt(n_units) * inflation, inflation=inflation, inflation_raw=raw,
                             centre=np.mean(self.outer_scores, axis=0), repeats=repeats,
                             control_centres=control_centres)


def _rounds(n_splits: int) -> list[list[tuple[int, ...]]]:
    """Partitions of the folds into blocks, one CV per partition, that together hold every fold alone (its fit
    is the outer CV's) and every pair of folds once (its fit serves both folds' inner CVs): the circle method of a
    round-robin tournament, where an odd K gives each round one fold alone (the bye) and an even K needs one more
    round of single folds."""
    K = n_splits
    if K % 2:
        return [[(r,), *(((r + i) % K, (r - i) % K) for i in range(1, (K + 1) // 2))] for r in range(K)]
    rounds: list[list[tuple[int, ...]]] = [[(r, K - 1), *(((r + i) % (K - 1), (r - i) % (K - 1)) for i in
                                                        range(1, K // 2))] for r in range(K - 1)]
    return [*rounds, [(k,) for k in range(K)]]


def _cv_score(outputs: np.ndarray, truth: np.ndarray, tests: list[np.ndarray], scoring: str) -> np.ndarray:
    """(L,) the mean over folds of each fold's score, as the CV functions compute it."""
    with warnings.catch_warnings():  # a test fold without a class: see cross_validate_layers
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found in 'y_true' and 'y_pred'")
        return np.array([np.mean([score_one(scoring, truth[te], row[te]) for te in tests]) for row in outputs])


def _strata(y_codes: np.ndarray, codes: np.ndarray, n_units: int) -> np.ndarray:
    """(G,) the stratum of each group: groups with the same count of items of each class share one. The folds
    are dealt stratified by class, so a fold's class make-up is fixed, not sampled (see :func:`_fold_mean_variance`)."""
    counts = np.zeros((n_units, int(y_codes.max()) + 1), dtype=np.int64)
    np.add.at(counts, (codes, y_codes), 1)
    return np.unique(counts, axis=0, return_inverse=True)[1].ravel()


def _fold_mean_variance(units: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """(L,) the variance of the mean of one fold's units (L, n_k) as an estimate of its expectation: Bates, Hastie
    and Tibshirani's ``b_k``, for a fold whose strata (class make-up) are fixed by the stratified dealing.

    With one stratum this is ``var / n_k``, theirs. With several (groups of one class each, say), the spread
    between the strata's means is not noise of the fold's mean, since every fold holds the same shares; left in,
    it inflates ``b_k`` and shrinks the estimate to its floor. That happens when a unit's class alone fixes much of
    its value: a paired difference with a control that predicts one class throughout (an untrained twin at
    chance) under balanced accuracy has units ``task - w_c`` whose class term ``w_c`` has no noise at all. So
    the variance is pooled within strata: ``sum of squares about each stratum's mean / (n_k - strata) / n_k``.
    """
    n_k = units.shape[1]
    present, local = np.unique(strata, return_inverse=True)
    if present.size == 1 or n_k <= present.size:
        return units.var(axis=1, ddof=1) / n_k
    sums = np.stack([np.bincount(local, weights=row) for row in units])  # (L, S)
    means = sums / np.bincount(local)
    squares = ((units - means[:, local]) ** 2).sum(axis=1)
    return squares / (n_k - present.size) / n_k


def _unit_labels(y: np.ndarray, n: int, scoring: str) -> tuple[np.ndarray, np.ndarray]:
    """An arm's class codes and the per-item weights that make the mean of its group units its score."""
    classes, y_codes = np.unique(y, return_inverse=True)
    weight = n / (classes.size * np.bincount(y_codes)[y_codes]) if scoring == "balanced_accuracy" else np.ones(n)
    return y_codes, weight


def _control_arm(control: tuple[Any, Any], shape: tuple[int, int], index: int) -> tuple[np.ndarray, np.ndarray]:
    """A control arm's features and labels, checked against the task's (layers, items)."""
    X_control, y_control = control
    X = check_features(X_control, ndim=3)
    y = np.asarray(y_control)
    if X.shape[:2] != shape or y.shape[0] != shape[1]:
        raise InvalidInputError(f"control {index} has features {X.shape} and {y.shape[0]} labels; the task has "
                                f"{shape[0]} layer(s) of {shape[1]} items: a paired estimate needs the same items")
    if np.unique(y).size < 2:
        raise InvalidInputError(f"control {index} has a single class; a control probe needs at least two")
    return X, y
