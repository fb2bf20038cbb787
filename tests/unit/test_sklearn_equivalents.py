"""The library's fast fold dealing and balanced accuracy equal scikit-learn's, bit for bit.

They replace scikit-learn calls in the hot loops of the nested-CV interval (thousands of small fold sets and
fold scores per run), so every reported number must stay exactly what scikit-learn gives. A future
scikit-learn that changes its dealing fails here first.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from conceptspace.analyses.probes._nested import inner_folds
from conceptspace.errors import InvalidInputError
from conceptspace.stats._dealing import shuffled_group_fold_ids, stratified_group_fold_ids
from conceptspace.stats._folds import grouped_folds
from conceptspace.stats._scoring import score_one


def _random_design(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    n_groups = int(rng.integers(3, 60))
    n_splits = int(rng.integers(2, min(n_groups, 10) + 1))
    n_classes = int(rng.integers(2, 12))
    sizes = rng.integers(1, 5, n_groups)
    groups = np.repeat(rng.permutation(3 * n_groups)[:n_groups], sizes)  # sparse, unsorted group names
    if rng.random() < 0.5:  # every group one class, as in the battery's data
        y = np.repeat(rng.integers(0, n_classes, n_groups), sizes)
    else:
        y = rng.integers(0, n_classes, groups.size)
    return y, groups, n_splits


def _test_ids(splits, n: int) -> np.ndarray:
    ids = np.full(n, -1)
    for f, (_, te) in enumerate(splits):
        ids[te] = f
    return ids


def test_stratified_dealing_equals_scikit_learn():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(800):
        y, groups, n_splits = _random_design(rng)
        if rng.random() < 0.3:
            y = np.array(["abc"[v % 3] for v in y])
        seed = int(rng.integers(0, 2**31))
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                expected = _test_ids(splitter.split(np.zeros((y.size, 1)), y, groups), y.size)
            except ValueError:  # every class smaller than n_splits: grouped_folds refuses these too
                continue
        np.testing.assert_array_equal(stratified_group_fold_ids(y, groups, n_splits, seed), expected)
        compared += 1
    assert compared > 700


def test_stratified_dealing_breaks_ties_as_scikit_learn():
    """Identical groups (every group one item of one class) make every choice a near-tie."""
    for n_groups, n_splits in [(10, 3), (12, 4), (20, 5), (8, 4)]:
        y = np.arange(n_groups) % 2
        groups = np.arange(n_groups)
        for seed in range(20):
            splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
            expected = _test_ids(splitter.split(np.zeros((n_groups, 1)), y, groups), n_groups)
            np.testing.assert_array_equal(stratified_group_fold_ids(y, groups, n_splits, seed), expected)


def test_shuffled_group_dealing_equals_scikit_learn():
    rng = np.random.default_rng(1)
    for _ in range(300):
        y, groups, n_splits = _random_design(rng)
        seed = int(rng.integers(0, 2**31))
        splitter = GroupKFold(n_splits, shuffle=True, random_state=seed)
        expected = _test_ids(splitter.split(np.zeros((y.size, 1)), None, groups), y.size)
        np.testing.assert_array_equal(shuffled_group_fold_ids(groups, n_splits, seed), expected)


def test_inner_folds_are_the_splitter_on_the_training_part():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(30), 3)
    y = np.repeat(rng.integers(0, 3, 30), 3)
    train = np.flatnonzero(groups % 5 != 0)
    splitter = StratifiedGroupKFold(3, shuffle=True, random_state=11)
    expected = [(train[np.sort(a)], train[np.sort(b)])
                for a, b in splitter.split(np.zeros((train.size, 1)), y[train], groups[train])]
    got = inner_folds(y, groups, train, inner_splits=3, seed=11, task="classification")
    for (tr, te), (tr_ref, te_ref) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(tr, tr_ref)
        np.testing.assert_array_equal(te, te_ref)


def test_every_class_smaller_than_the_folds_is_refused():
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(InvalidInputError, match="fewer than n_splits=3 items"):
        grouped_folds(y, np.arange(6), n_splits=3)


def test_balanced_accuracy_equals_scikit_learn_bit_for_bit():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        n = int(rng.integers(1, 40))
        k = int(rng.integers(1, 12))
        truth = rng.integers(0, k, n)
        pred = rng.integers(0, k + int(rng.integers(0, 3)), n)  # classes only predicted, or never predicted
        if rng.random() < 0.5:
            pred = pred.astype(np.float64)  # the nested probe's outputs hold codes as floats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = balanced_accuracy_score(truth, pred)
        assert score_one("balanced_accuracy", truth, pred) == expected


def test_other_labels_still_go_through_scikit_learn():
    truth = np.array(["a", "b", "a", "b"])
    assert score_one("balanced_accuracy", truth, np.array(["a", "a", "a", "b"])) == 0.75
    with pytest.raises(ValueError):  # continuous "predictions" are not classes
        score_one("balanced_accuracy", np.array([0, 1, 0, 1]), np.array([0.5, 1.0, 0.0, 1.0]))
