"""Dealing groups into shuffled k-fold test folds, fast, with scikit-learn's exact assignment.

Why this exists. Every fold of the library comes from scikit-learn's ``StratifiedGroupKFold(shuffle=True)``
(classes) or ``GroupKFold(shuffle=True)`` (targets), and those splits define the reference report's numbers.
The nested-CV interval and the nested-penalty probe deal thousands of small fold sets per run (under a
profiler a ``--quick`` run spent 7 of its estimator's 13 s inside the splitter, mostly input validation and a
per-candidate Python loop of small numpy calls). These functions compute the *same* assignment (the same random
stream, the same greedy order, the same floating-point criterion and tie rule) with the per-candidate work done
as one array operation: results stay bit-identical and a dealing costs about a third (BENCHMARKS.md).
``tests/unit/test_sklearn_equivalents.py`` checks equality with scikit-learn over 800 random designs, tie-heavy
ones and many classes included; if a future scikit-learn changes its algorithm, that test says so.

The greedy rule (scikit-learn's, after a Kaggle kernel by J. Wasikowski): shuffle the groups, order them by the
spread of their class counts (largest first, stable), and give each group to the fold whose resulting
per-class share of items has the smallest mean standard deviation across folds; near-ties (``numpy.isclose``)
go to the fold with fewer items, then to the lower fold index.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

_RTOL, _ATOL = 1e-5, 1e-8  # numpy.isclose's defaults, which scikit-learn's tie rule uses
#: the last dealings, by their inputs: the nested-CV interval fits every control arm (twins, the lexical
#: baseline) on the same items and labels as the task, so their nested probes deal the same inner folds
_MEMO: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
_MEMO_SIZE = 512


def _isclose(a: float, b: float) -> bool:
    """``numpy.isclose(a, b)`` for Python floats (``b`` may be inf: never close to a finite ``a``)."""
    if b == np.inf:
        return a == b
    return abs(a - b) <= _ATOL + _RTOL * abs(b)


def stratified_group_fold_ids(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Test-fold index of every item, equal to ``StratifiedGroupKFold(n_splits, shuffle=True,
    random_state=seed).split(X, y, groups)``.

    The caller has checked that there are at least ``n_splits`` groups. A dealing is a pure function of its
    inputs, so the last few hundred are remembered (the same inputs give a copy of the same assignment).
    """
    y_arr, groups_arr = np.asarray(y), np.asarray(groups)
    if y_arr.dtype == object or groups_arr.dtype == object:
        return _deal_stratified(y_arr, groups_arr, n_splits, seed)
    key = (y_arr.dtype.str, y_arr.shape, y_arr.tobytes(), groups_arr.dtype.str, groups_arr.shape,
           groups_arr.tobytes(), n_splits, seed)
    ids = _MEMO.get(key)
    if ids is None:
        ids = _deal_stratified(y_arr, groups_arr, n_splits, seed)
        _MEMO[key] = ids
        if len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end(key)
    return ids.copy()


def _deal_stratified(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """:func:`stratified_group_fold_ids`, computed."""
    _, y_inv, y_cnt = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    _, groups_inv = np.unique(np.asarray(groups), return_inverse=True)
    n_groups, n_classes = int(groups_inv.max()) + 1, y_cnt.size
    counts = np.zeros((n_groups, n_classes))
    np.add.at(counts, (groups_inv, y_inv), 1.0)
    perm = np.arange(n_groups)
    np.random.RandomState(seed).shuffle(perm)
    counts = counts[perm]  # row r is the original group perm[r]
    order = np.argsort(-np.std(counts, axis=1), kind="stable")
    per_fold = np.zeros((n_splits, n_classes))
    share_of_class = y_cnt.reshape(1, -1)
    fold_of_row = np.empty(n_groups, dtype=np.int64)
    diagonal = np.arange(n_splits)
    for row in order:
        group_counts = counts[row]
        # candidate f: every fold's share, fold f's with this group added (each entry divided once, as there)
        candidates = np.broadcast_to(per_fold / share_of_class, (n_splits, n_splits, n_classes)).copy()
        candidates[diagonal, diagonal] = (per_fold + group_counts) / share_of_class
        evals = np.mean(np.std(candidates, axis=1), axis=1).tolist()
        sizes = per_fold.sum(axis=1).tolist()
        best, min_eval, min_size = 0, np.inf, np.inf
        for f in range(n_splits):
            if evals[f] < min_eval or (_isclose(evals[f], min_eval) and sizes[f] < min_size):
                best, min_eval, min_size = f, evals[f], sizes[f]
        per_fold[best] += group_counts
        fold_of_row[row] = best
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[perm] = fold_of_row
    return fold_of_group[groups_inv]


def shuffled_group_fold_ids(groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Test-fold index of every item, equal to ``GroupKFold(n_splits, shuffle=True, random_state=seed)``:
    the sorted distinct groups permuted by ``seed`` and cut into ``n_splits`` nearly equal runs."""
    _, groups_inv = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(groups_inv.max()) + 1
    shuffled = np.random.RandomState(seed).permutation(n_groups)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    for f, run in enumerate(np.array_split(shuffled, n_splits)):
        fold_of_group[run] = f
    return fold_of_group[groups_inv]


def folds_from_ids(ids: np.ndarray, n_splits: int,
                   rows: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs, each sorted, from test-fold ids; ``rows`` maps positions to row
    indices (the inner folds of an outer training part)."""
    positions = np.arange(ids.size) if rows is None else np.asarray(rows)
    return [(positions[ids != f], positions[ids == f]) for f in range(n_splits)]
