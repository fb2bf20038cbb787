"""Ridge probes whose penalty is chosen by nested grouped CV inside every outer training fold.

Why. A ridge probe's score depends on its penalty (C4's R^2 on latitude went from -1.00 to 0.20 as the
relative penalty went from 0.01 to 10), and a penalty picked by looking at the outer score is a selected
statistic. Here the penalty is part of the procedure: in each outer training part, the penalty of a fixed grid
with the best inner grouped-CV loss (groups never split) is refitted on the whole outer training part and
scores the outer test part. The permutation null and the refit bootstrap repeat the selection for every
permuted label set and every replicate, so the null is the null of the procedure that produced the score.

Inner loss. Regression: the mean over inner folds of ``1 - R^2`` (the outer score's own criterion: a grid
search on R^2 averaged over folds, as scikit-learn's ``GridSearchCV(scoring="r2")``). Classification: the mean
over inner folds of the squared error of the ridge's fitted values on its own 0/1 (binary) or one-hot codes.
Why squared error and not balanced accuracy: it is the loss the ridge minimises, it is continuous (accuracy on
a few dozen inner test items ties between penalties most of the time), and it stays defined for every permuted
labelling, including inner folds that lack a class. Ties go to the smaller penalty (first in the sorted grid).

Folds. The inner folds of each outer training part are :func:`~conceptspace.stats.grouped_folds` of that part
(stratified by the observed labels for classification, seeded like the outer folds) and, like the outer folds,
they are fixed across permutations: a permuted labelling is run through the same splits. The bootstrap deals
its own inner folds per replicate among the groups of each outer training part, as it deals the outer folds.

Speed. For a fixed penalty the out-of-fold predictions are a fixed linear map of the labels, so the maps for
every (penalty, outer fold, inner fold) are computed once (:class:`NestedOperators`); a batch of permuted label
sets then costs a few matrix products per penalty and an argmin.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from conceptspace.analyses.probes._cv import (
    CVResult,
    Groups,
    LayerName,
    _folds_missing_class,
    layer_rows,
)
from conceptspace.analyses.probes._estimators import RidgeProbe, RidgeRegressionProbe
from conceptspace.errors import InvalidInputError
from conceptspace.stats._dealing import folds_from_ids, shuffled_group_fold_ids, stratified_group_fold_ids
from conceptspace.stats._exact import Labels, _train_targets, _truth
from conceptspace.stats._folds import Fold, fold_ids, grouped_folds
from conceptspace.stats._linear import DTYPE, as_tensor, ridge_fit
from conceptspace.stats._permutation import Scheme, draw_permutations, prepare_labels, resolve_scheme
from conceptspace.stats._scoring import (
    check_scoring,
    default_scoring,
    needs_decision,
    score_batch_classes,
    score_batch_targets,
    score_one,
)
from conceptspace.utils.validation import check_features, check_groups, check_labels, infer_task

#: the default grid (relative penalties, see docs/STATISTICS.md), fixed before any C4 score was seen
DEFAULT_PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)
_BLOCK_ELEMENTS = 10_000_000

__all__ = ["DEFAULT_PENALTIES", "NestedOperators", "NestedRidgeProbe", "NestedRidgeRegressionProbe", "is_nested",
           "nested_cross_validate", "nested_null_draws"]


def check_grid(penalties: Any, inner_splits: Any) -> tuple[float, ...]:
    """The grid as a sorted tuple of distinct positive floats, or an error that says what to fix."""
    try:
        grid = tuple(sorted({float(p) for p in penalties}))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"penalties must be a list of positive numbers; got {penalties!r}") from exc
    if not grid or grid[0] <= 0 or not all(np.isfinite(grid)):
        raise InvalidInputError(f"penalties must be a non-empty list of positive finite numbers; got {penalties!r}")
    if not isinstance(inner_splits, (int, np.integer)) or isinstance(inner_splits, bool) or inner_splits < 2:
        raise InvalidInputError(f"inner_splits must be an integer >= 2; got {inner_splits!r}")
    return grid


def inner_folds(y: np.ndarray, groups: Groups, tr: np.ndarray, *, inner_splits: int, seed: int,
                task: str) -> list[Fold]:
    """Grouped folds of the outer training part ``tr`` (stratified by class for classification, shuffled with
    ``seed`` as the outer folds are), as global row indices.

    Unlike the outer folds, an inner training part may lack a class: the squared-error loss is defined there
    (the ridge fits a constant zero column), as it must be for permuted labellings, so a rare class does not
    stop the selection.
    """
    codes = check_groups(groups, np.asarray(y).shape[0])[tr]
    n_groups = np.unique(codes).size
    if n_groups < inner_splits:
        raise InvalidInputError(f"an outer training part holds {n_groups} groups, fewer than inner_splits="
                                f"{inner_splits}: lower inner_splits or n_splits, or add groups")
    if task == "classification":
        ids = stratified_group_fold_ids(np.asarray(y)[tr], codes, inner_splits, seed)
    else:
        ids = shuffled_group_fold_ids(codes, inner_splits, seed)
    return folds_from_ids(ids, inner_splits, rows=tr)


def _coded_targets(y: np.ndarray, task: str, classes: np.ndarray | None = None) -> np.ndarray:
    """(n, w) float targets the ridge fits: 0/1 (binary), one-hot (multiclass) or the targets themselves."""
    if task == "regression":
        arr = np.asarray(y, dtype=np.float64)
        return arr[:, None] if arr.ndim == 1 else arr
    cls = np.unique(y) if classes is None else classes
    codes = np.searchsorted(cls, y)
    return codes[:, None].astype(np.float64) if cls.size == 2 else np.eye(cls.size)[codes]


def fold_loss(task: str, truth: np.ndarray, pred: np.ndarray) -> float:
    """One inner fold's loss (see module doc): ``1 - R^2`` averaged over outputs, or the mean squared error
    per row of the coded targets. ``truth`` and ``pred`` are (n_te, w)."""
    if task == "regression":
        resid = ((truth - pred) ** 2).sum(axis=0)
        total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
        r2 = np.where(total > 0, 1 - resid / np.where(total > 0, total, 1.0), (resid == 0).astype(np.float64))
        return float(1 - r2.mean())
    return float(((truth - pred) ** 2).sum(axis=1).mean())


class _NestedRidge(BaseEstimator):
    """Shared fit: choose the penalty by inner grouped CV (a loop of ridge fits), refit on all rows.

    This is the plain, slow form of the procedure (one ridge fit per penalty and inner fold), usable alone
    with ``fit(X, y, groups=...)``; the analyses run the same procedure through :class:`NestedOperators`.
    """

    task = "classification"

    def __init__(self, penalties: Sequence[float] = DEFAULT_PENALTIES, inner_splits: int = 3, seed: int = 0) -> None:
        self.penalties = penalties
        self.inner_splits = inner_splits
        self.seed = seed

    #: the fixed-penalty probe class this one selects among (each subclass names its own)
    base_probe: ClassVar[type[RidgeProbe] | type[RidgeRegressionProbe]] = RidgeProbe

    def base(self, penalty: float) -> Any:
        """The fixed-penalty ridge probe this one selects among."""
        return self.base_probe(penalty=penalty)

    def fit(self, X: Any, y: Any, groups: Groups = None, inner: Sequence[Fold] | None = None) -> Any:
        """Fit on (n, d) features; ``groups`` keep a group's rows in one inner fold; ``inner`` fixes the inner
        folds (row indices of X), as the permutation null does. Sets ``penalty_``, ``inner_losses_``."""
        grid = check_grid(self.penalties, self.inner_splits)
        X_arr = check_features(X, ndim=2)
        y_arr = check_labels(y, X_arr.shape[0], task=self.task)
        folds = list(inner) if inner is not None else inner_folds(
            y_arr, groups, np.arange(X_arr.shape[0]), inner_splits=self.inner_splits, seed=self.seed,
            task=self.task)
        T = _coded_targets(y_arr, self.task)
        losses = np.zeros(len(grid))
        for k, penalty in enumerate(grid):
            for tr, te in folds:
                # ridge_fit itself rather than a probe: a constant target column (a class absent from this
                # inner training part) has no direction, which a probe refuses but the selection must allow
                coef, intercept = ridge_fit(as_tensor(X_arr[tr])[None], as_tensor(T[tr]), penalty)
                pred = X_arr[te] @ coef[0].numpy() + intercept[0].numpy()
                losses[k] += fold_loss(self.task, T[te], pred)
        self.inner_losses_ = losses / len(folds)
        self.penalty_ = grid[int(np.argmin(self.inner_losses_))]
        self.estimator_ = self.base(self.penalty_).fit(X_arr, y_arr)
        for name in ("classes_", "coef_", "intercept_", "direction_", "directions_", "n_features_in_"):
            if hasattr(self.estimator_, name):
                setattr(self, name, getattr(self.estimator_, name))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The refitted probe's predictions."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict(X))


class NestedRidgeProbe(ClassifierMixin, _NestedRidge):
    """:class:`~conceptspace.analyses.probes.RidgeProbe` with the penalty chosen from ``penalties`` by inner
    grouped CV on the squared error of its 0/1 or one-hot fit (see module doc)."""

    task = "classification"
    base_probe = RidgeProbe

    def decision_function(self, X: Any) -> np.ndarray:
        """The refitted probe's decision values."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.decision_function(X))


class NestedRidgeRegressionProbe(RegressorMixin, _NestedRidge):
    """:class:`~conceptspace.analyses.probes.RidgeRegressionProbe` with the penalty chosen from ``penalties``
    by inner grouped CV on R^2 (see module doc)."""

    task = "regression"
    base_probe = RidgeRegressionProbe


def is_nested(probe: Any) -> bool:
    """Whether ``probe`` selects its penalty by nested CV (then the analyses take this module's paths)."""
    return isinstance(probe, _NestedRidge)


class NestedOperators:
    """The label-free ridge maps of every (penalty, outer fold, inner fold) on one X, folds and grid.

    ``outer[f][p]`` (L, n_te, n_tr) maps centred outer-training targets to centred outer-test predictions;
    ``inner[f][j][p]`` does the same for inner fold j of outer fold f. Computed once, reused by every batch of
    permuted labels (the only label-dependent steps are products, an argmin and the read-out).
    """

    def __init__(self, X: torch.Tensor, folds: Sequence[Fold], inner: Sequence[Sequence[Fold]],
                 penalties: Sequence[float]) -> None:
        self.folds = [(np.asarray(tr), np.asarray(te)) for tr, te in folds]
        self.inner = [[(np.asarray(a), np.asarray(b)) for a, b in fold_inner] for fold_inner in inner]
        self.penalties = tuple(penalties)
        self.n_layers = X.shape[0]
        self.outer = [ridge_operators(X, tr, te, self.penalties) for tr, te in self.folds]
        self.inner_ops = [[ridge_operators(X, a, b, self.penalties) for a, b in fold_inner]
                          for fold_inner in self.inner]


def ridge_operators(X: torch.Tensor, tr: np.ndarray, te: np.ndarray, penalties: Sequence[float]) -> list[torch.Tensor]:
    """The ridge map (L, n_te, n_tr) of every penalty from one eigendecomposition of the training part.

    ``Xte_c (C + rI)^{-1} Xtr_c^T`` with ``r = penalty * trace(C) / d`` (as :func:`conceptspace.stats._linear.
    centered_scatter`); in row space ``Xte_c Xtr_c^T U diag(1 / (s + r)) U^T`` from the Gram matrix's
    eigenvectors U when there are fewer training rows than features, else in feature space. One ``eigh`` serves
    the whole grid, where one Cholesky factorisation per penalty would cost the grid's length in solves.
    """
    mean = X[:, tr].mean(dim=1, keepdim=True)
    Xc, Xte = X[:, tr] - mean, X[:, te] - mean
    d = X.shape[2]
    trace = (Xc**2).sum(dim=(1, 2))
    if len(tr) <= d:
        S, U = torch.linalg.eigh(Xc @ Xc.transpose(1, 2))
        left, right = Xte @ Xc.transpose(1, 2) @ U, U.transpose(1, 2)
    else:
        S, V = torch.linalg.eigh(Xc.transpose(1, 2) @ Xc)
        left, right = Xte @ V, V.transpose(1, 2) @ Xc.transpose(1, 2)
    floor = torch.finfo(DTYPE).tiny ** 0.5  # a constant layer (zero trace) still gets a positive ridge
    return [(left / (S + torch.clamp(p * trace / d, min=floor)[:, None])[:, None, :]) @ right for p in penalties]


@dataclass(frozen=True)
class NestedBlock:
    """One outer fold's outputs for a batch of label sets: ``output`` (L, n_te, b[, k]) as the probe reads out,
    ``truth`` (n_te, b[, k]), ``chosen`` (L, b) grid indices, ``loss`` (P, L, b) inner losses."""

    fold: int
    perms: slice
    test_idx: np.ndarray
    output: torch.Tensor
    truth: torch.Tensor
    chosen: torch.Tensor
    loss: torch.Tensor


def _predict(op: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Ridge predictions (L, n_te, b, w) from a map (L, n_te, n_tr) and training targets (n_tr, b, w)."""
    n_tr, b, w = T.shape
    mean = T.mean(dim=0)
    return (op @ (T - mean).reshape(n_tr, b * w)).reshape(op.shape[0], op.shape[1], b, w) + mean


def _batch_loss(task: str, truth: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """:func:`fold_loss` for many label sets: truth (n_te, b, w), pred (L, n_te, b, w) -> (L, b)."""
    if task == "regression":
        resid = ((pred - truth) ** 2).sum(dim=1)
        total = ((truth - truth.mean(dim=0)) ** 2).sum(dim=0).expand_as(resid)
        r2 = torch.where(total > 0, 1 - resid / torch.where(total > 0, total, 1.0), (resid == 0).to(DTYPE))
        return 1 - r2.mean(dim=-1)
    return ((pred - truth) ** 2).sum(dim=-1).mean(dim=1)


def _read_out(labels: Labels, pred: torch.Tensor, decision: bool) -> torch.Tensor:
    """Ridge fitted values (L, n_te, b, w) -> predictions (regression), decision values or class codes."""
    if labels.task == "regression":
        return pred
    if pred.shape[-1] == 1:
        return pred[..., 0] - 0.5 if decision else (pred[..., 0] > 0.5).to(torch.int64)
    return pred.argmax(dim=-1)


def nested_outputs(ops: NestedOperators, labels: Labels, perm_rows: np.ndarray, *,
                   decision: bool) -> Iterator[NestedBlock]:
    """Out-of-fold outputs of the nested procedure for every label set ``labels[perm_rows[b]]`` (see module)."""
    n_perm = perm_rows.shape[0]
    n = perm_rows.shape[1]
    per_perm = len(ops.penalties) * ops.n_layers * n * labels.width
    chunk = max(1, min(n_perm, _BLOCK_ELEMENTS // per_perm))
    for p0 in range(0, n_perm, chunk):
        rows = perm_rows[p0:p0 + chunk]
        for f, (tr, te) in enumerate(ops.folds):
            loss = torch.zeros((len(ops.penalties), ops.n_layers, rows.shape[0]), dtype=DTYPE)
            for j, (a, b) in enumerate(ops.inner[f]):
                T_a, T_b = _train_targets(labels, rows[:, a]), _train_targets(labels, rows[:, b])
                for k, op in enumerate(ops.inner_ops[f][j]):
                    loss[k] += _batch_loss(labels.task, T_b, _predict(op, T_a))
            loss /= len(ops.inner[f])
            chosen = loss.argmin(dim=0)  # (L, b): the first of tied minima, i.e. the smaller penalty
            T_tr = _train_targets(labels, rows[:, tr])
            preds = torch.stack([_predict(op, T_tr) for op in ops.outer[f]])  # (P, L, n_te, b, w)
            index = chosen[None, :, None, :, None].expand(1, *preds.shape[1:])
            best = torch.gather(preds, 0, index)[0]
            yield NestedBlock(fold=f, perms=slice(p0, p0 + rows.shape[0]), test_idx=te,
                              output=_read_out(labels, best, decision), truth=_truth(labels, rows[:, te]),
                              chosen=chosen, loss=loss)


def _operators(probe: Any, X: torch.Tensor, y: np.ndarray, groups: Groups, folds: Sequence[Fold],
               seed: int, task: str) -> NestedOperators:
    grid = check_grid(probe.penalties, probe.inner_splits)
    inner = [inner_folds(y, groups, np.asarray(tr), inner_splits=probe.inner_splits, seed=seed, task=task)
             for tr, _ in folds]
    return NestedOperators(X, folds, inner, grid)


def _check_task(probe: Any, task: str) -> None:
    if task != probe.task:
        raise InvalidInputError(f"{type(probe).__name__} is for {probe.task}, but these labels are a {task} task: "
                                f"use {'NestedRidgeRegressionProbe' if task == 'regression' else 'NestedRidgeProbe'}")


def _checked_labels(probe: Any, y: Any, n: int, scoring: str | None) -> tuple[str, np.ndarray, Labels, str]:
    """The task (which must be the probe's), the checked labels, their prepared codes, and the scoring."""
    task = infer_task(y)
    _check_task(probe, task)
    y_arr = check_labels(y, n, task=task)
    labels = prepare_labels(y_arr, task)
    return task, y_arr, labels, check_scoring(scoring or default_scoring(task), task, labels.n_classes)


def nested_cross_validate(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Groups = None,
    *,
    n_splits: int = 5,
    scoring: str | None = None,
    seed: int = 0,
    folds: list[Fold] | None = None,
    layers: Sequence[LayerName] | str | None = None,
    n_layers: int | None = None,
) -> CVResult:
    """:func:`~conceptspace.analyses.probes.cross_validate_layers` for a nested-CV ridge probe: the same
    outer folds and scores, with ``CVResult.penalties`` (L, n_folds) the penalty chosen in each outer fold."""
    rows = layer_rows(X_layers, layers, n_layers=n_layers)
    X = as_tensor(rows.X)
    n = X.shape[1]
    task, y_arr, labels, scoring = _checked_labels(probe, y, n, scoring)
    if folds is None:
        folds = grouped_folds(y_arr, groups, n_splits=n_splits, seed=seed, task=task)
    ops = _operators(probe, X, y_arr, groups, folds, seed, task)
    truth = labels.codes if task == "classification" else y_arr
    assert truth is not None
    outputs = np.zeros((X.shape[0], *np.shape(y_arr)) if task == "regression" else (X.shape[0], n))
    chosen = np.zeros((X.shape[0], len(folds)))
    for block in nested_outputs(ops, labels, np.arange(n)[None], decision=needs_decision(scoring)):
        out = block.output[:, :, 0].numpy()
        outputs[:, block.test_idx] = out[..., 0] if task == "regression" and y_arr.ndim == 1 else out
        chosen[:, block.fold] = np.asarray(ops.penalties)[block.chosen[:, 0].numpy()]
    fold_scores = np.empty((X.shape[0], len(folds)))
    with warnings.catch_warnings():  # a test fold without a class: see cross_validate_layers
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found in 'y_true' and 'y_pred'")
        for layer in range(X.shape[0]):
            for f, (_, te) in enumerate(folds):
                fold_scores[layer, f] = score_one(scoring, truth[te], outputs[layer][te])
    return CVResult(scores=fold_scores.mean(axis=1), fold_scores=fold_scores, outputs=outputs, truth=truth,
                    fold_id=fold_ids(folds, n), folds=tuple(folds), scoring=scoring, task=task,
                    n_classes=labels.n_classes, test_folds_missing_class=_folds_missing_class(truth, folds,
                                                                                              labels.n_classes),
                    sites=rows.sites, penalties=chosen)


def nested_scores(ops: NestedOperators, labels: Labels, perm_rows: np.ndarray, scoring: str) -> np.ndarray:
    """Grouped-CV scores (L, B) of the nested procedure for every permuted labelling ``perm_rows`` (B, n)."""
    scores = torch.zeros((ops.n_layers, perm_rows.shape[0]), dtype=DTYPE)
    for block in nested_outputs(ops, labels, perm_rows, decision=needs_decision(scoring)):
        truth = block.truth.expand(block.output.shape)
        if labels.task == "regression":
            s = score_batch_targets(scoring, truth, block.output)
        else:
            assert labels.n_classes is not None
            s = score_batch_classes(scoring, truth, block.output, labels.n_classes)
        scores[:, block.perms] += s / len(ops.folds)
    return scores.numpy()


def nested_null_draws(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    folds: list[Fold],
    scoring: str | None = None,
    scheme: Scheme = "auto",
    seed: int = 0,
) -> tuple[Any, str, str]:
    """:func:`~conceptspace.stats._permutation.null_draws` for a nested-CV ridge probe: the same permutations
    (batch ``[seed, offset]``), each scored by re-running the penalty selection (see module doc)."""
    X = check_features(X_layers, ndim=3)
    n = X.shape[1]
    task, y_arr, labels, scoring = _checked_labels(probe, y, n, scoring)
    used = resolve_scheme(y_arr, check_groups(groups, n), scheme, grouped=groups is not None)
    fixed: Scheme = "group" if used == "group" else "within" if used == "within" else "rows"
    ops = _operators(probe, as_tensor(X), y_arr, groups, folds, seed, task)
    test_too = scoring == "roc_auc"

    def draw(offset: int, count: int) -> np.ndarray:
        perms, _ = draw_permutations(y_arr, groups, count, seed=[seed, offset], scheme=fixed, folds=folds,
                                     test_folds_need_all_classes=test_too)
        return nested_scores(ops, labels, perms, scoring)

    return draw, used, "nested"
