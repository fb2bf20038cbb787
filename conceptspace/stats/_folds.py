"""Grouped (and, for classes, stratified) k-fold splits.

Why groups: items that share an entity, a template or a source sentence share most of their activation, so a
probe tested on a sibling of a training item measures memorisation, not a concept. No group is ever split
across folds. The folds are computed once from the observed labels and then held fixed for every permutation
and bootstrap replicate, so that the permuted statistic is computed exactly like the observed one.

The dealing is scikit-learn's (``StratifiedGroupKFold`` / ``GroupKFold`` with ``shuffle=True``), computed by
:mod:`conceptspace.stats._dealing`, which gives the same folds for the same seed at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from conceptspace.errors import InvalidInputError
from conceptspace.stats._dealing import folds_from_ids, shuffled_group_fold_ids, stratified_group_fold_ids
from conceptspace.utils.validation import check_groups

Fold = tuple[np.ndarray, np.ndarray]


def grouped_folds(
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    n_splits: int = 5,
    seed: int = 0,
    task: str = "classification",
) -> list[Fold]:
    """(train_idx, test_idx) pairs: stratified by class (classification) and never splitting a group.

    Raises :class:`InvalidInputError` when there are fewer groups than folds, or when a training fold would
    miss a class (then no probe can learn that class; lower ``n_splits`` or add groups of that class).
    """
    y_arr = np.asarray(y)
    n = y_arr.shape[0]
    codes = check_groups(groups, n)
    n_groups = int(codes.max()) + 1 if n else 0
    if n_splits < 2:
        raise InvalidInputError(f"n_splits must be >= 2; got {n_splits}")
    if n_groups < n_splits:
        raise InvalidInputError(
            f"only {n_groups} group(s) for {n_splits} folds; lower n_splits to at most {n_groups} or add groups"
        )
    if task == "classification":
        _, class_sizes = np.unique(y_arr, return_counts=True)
        if np.all(class_sizes < n_splits):
            raise InvalidInputError(f"every class has fewer than n_splits={n_splits} items; lower n_splits or add "
                                    "items")
        ids = stratified_group_fold_ids(y_arr, codes, n_splits, seed)
    else:
        ids = shuffled_group_fold_ids(codes, n_splits, seed)
    folds = folds_from_ids(ids, n_splits)
    if task == "classification":
        classes = np.unique(y_arr)
        for i, (tr, _) in enumerate(folds):
            missing = np.setdiff1d(classes, np.unique(y_arr[tr]))
            if missing.size:
                raise InvalidInputError(
                    f"training fold {i} has no items of class(es) {missing.tolist()}: too few groups carry "
                    f"them for {n_splits} folds; lower n_splits or add groups of those classes"
                )
    return folds


def group_folds(groups: Sequence[Hashable] | np.ndarray, *, n_splits: int = 5, seed: int = 0) -> list[Fold]:
    """Grouped folds that ignore the labels entirely.

    For running many label sets on the same items (null calibration, power curves): the folds, and so the
    expensive per-fold solves, can then be shared, and label-free folds cannot leak anything about the labels.
    """
    n = len(groups)
    return grouped_folds(np.zeros(n), groups, n_splits=n_splits, seed=seed, task="regression")


def fold_ids(folds: list[Fold], n: int) -> np.ndarray:
    """Which fold tests each item (every item is tested exactly once)."""
    ids = np.full(n, -1, dtype=np.int64)
    for f, (_, te) in enumerate(folds):
        ids[te] = f
    if np.any(ids < 0):
        raise InvalidInputError("the folds do not test every item once; pass folds from grouped_folds")
    return ids
