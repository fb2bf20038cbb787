"""Permutation tests: the exact fast path reproduces refitting, schemes respect groups, p is never 0."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conceptspace.analyses.probes._estimators import (
    LDAProbe,
    LogisticProbe,
    MassMeanProbe,
    RidgeProbe,
    RidgeRegressionProbe,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._permutation import (
    draw_permutations,
    permutation_p_value,
    permutation_test,
    permutation_test_layers,
)
from conceptspace.stats._scoring import score_batch_classes, score_batch_targets, score_one


def grouped_data(task: str = "binary", signal: float = 0.4, seed: int = 0, layers: int = 2):
    """40 groups of 3 items; labels constant within groups; weak planted signal in feature 0/1."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(40), 3)
    X = rng.standard_normal((layers, 120, 16)) * np.linspace(0.5, 2, 16) + rng.standard_normal((40, 16))[groups]
    if task == "binary":
        y = rng.permutation(np.arange(40) % 2)[groups]
        X[:, :, 0] += signal * y
    elif task == "multiclass":
        y = rng.permutation(np.arange(40) % 3)[groups]
        X[:, :, 0] += signal * (y == 1)
        X[:, :, 1] += signal * (y == 2)
    else:
        target = rng.standard_normal(40)
        y = target[groups] if task == "regression" else np.stack([target, rng.standard_normal(40)], 1)[groups]
        X[:, :, 0] += signal * y if y.ndim == 1 else signal * y[:, 0]
    return X, y, groups


CASES = [
    (RidgeProbe(), "binary", "balanced_accuracy"),
    (RidgeProbe(), "binary", "accuracy"),
    (RidgeProbe(), "binary", "roc_auc"),
    (RidgeProbe(penalty=0.01), "multiclass", "balanced_accuracy"),
    (LDAProbe(), "binary", "balanced_accuracy"),
    (LDAProbe(shrinkage=0.5), "binary", "roc_auc"),
    (MassMeanProbe(), "binary", "accuracy"),
    (MassMeanProbe(covariance_adjusted=True), "binary", "balanced_accuracy"),
    (RidgeRegressionProbe(), "regression", "r2"),
    (RidgeRegressionProbe(), "regression", "spearman"),
    (RidgeRegressionProbe(), "multi_output", "r2"),
]


@pytest.mark.parametrize(("probe", "task", "scoring"), CASES, ids=lambda v: v if isinstance(v, str) else repr(v))
def test_exact_path_reproduces_refitting(probe, task, scoring):
    X, y, groups = grouped_data(task)
    kwargs = dict(n_permutations=25, n_splits=4, scoring=scoring, seed=3)
    exact = permutation_test_layers(probe, X, y, groups, method="exact", **kwargs)
    refit = permutation_test_layers(probe, X, y, groups, method="refit", **kwargs)
    assert exact.method == "exact" and refit.method == "refit"
    np.testing.assert_array_equal(exact.permutations, refit.permutations)
    np.testing.assert_allclose(exact.statistic, refit.statistic, rtol=0, atol=1e-9)
    np.testing.assert_allclose(exact.null, refit.null, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(exact.p_value, refit.p_value)


def test_auto_method_picks_exact_for_linear_probes_and_refit_otherwise():
    X, y, groups = grouped_data()
    assert permutation_test_layers(RidgeProbe(), X, y, groups, n_permutations=5, n_splits=3).method == "exact"
    assert permutation_test_layers(LDAProbe(), X, y, groups, n_permutations=5, n_splits=3).method == "exact"
    logistic = permutation_test_layers(LogisticProbe(), X[:1], y, groups, n_permutations=3, n_splits=3)
    assert logistic.method == "refit"
    with pytest.raises(InvalidInputError, match="refit"):
        permutation_test_layers(LogisticProbe(), X, y, groups, n_permutations=3, method="exact")


def test_multiclass_lda_falls_back_to_refit():
    X, y, groups = grouped_data("multiclass")
    res = permutation_test_layers(LDAProbe(), X[:1], y, groups, n_permutations=3, n_splits=3)
    assert res.method == "refit"


def test_strong_signal_gets_the_smallest_attainable_p_and_never_zero():
    X, y, groups = grouped_data(signal=6.0)
    res = permutation_test_layers(RidgeProbe(), X, y, groups, n_permutations=99, seed=0)
    np.testing.assert_array_equal(res.p_value, 1 / 100)
    assert np.all(res.statistic > 0.9)


def test_p_value_formula_counts_ties_and_is_never_zero():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    assert permutation_p_value(0.5, null) == pytest.approx(4 / 5)
    assert permutation_p_value(2.0, null) == pytest.approx(1 / 5)
    assert permutation_p_value(0.5 + 1e-13, null) == pytest.approx(4 / 5)  # float noise cannot break a tie


def test_same_seed_same_numbers_other_seed_other_permutations():
    X, y, groups = grouped_data()
    a = permutation_test_layers(RidgeProbe(), X, y, groups, n_permutations=20, seed=5)
    b = permutation_test_layers(RidgeProbe(), X, y, groups, n_permutations=20, seed=5)
    c = permutation_test_layers(RidgeProbe(), X, y, groups, n_permutations=20, seed=6)
    np.testing.assert_array_equal(a.null, b.null)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    assert not np.array_equal(a.permutations, c.permutations)


def test_group_scheme_moves_whole_groups():
    _, y, groups = grouped_data()
    perms, scheme = draw_permutations(y, groups, 50, seed=0)
    assert scheme == "group"
    for rows in perms:
        permuted = y[rows]
        for g in range(40):
            assert np.unique(permuted[groups == g]).size == 1  # still one label per group
    assert np.mean([np.any(y[rows] != y) for rows in perms]) > 0.9


def test_within_scheme_shuffles_inside_groups_only():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), 4)
    y = np.tile([0, 1, 0, 1], 30)  # every template holds both classes
    y[rng.random(120) < 0.2] ^= 1
    perms, scheme = draw_permutations(y, groups, 30, seed=0)
    assert scheme == "within"
    for rows in perms:
        np.testing.assert_array_equal(groups[rows], groups)  # labels only come from the same group
        for g in range(30):
            assert sorted(y[rows][groups == g]) == sorted(y[groups == g])


def test_schemes_that_would_be_degenerate_or_invalid_are_refused():
    _, y, groups = grouped_data()
    with pytest.raises(InvalidInputError, match="degenerate"):
        draw_permutations(y, groups, 5, scheme="within")
    mixed = y.copy()
    mixed[0] = 1 - mixed[0]
    with pytest.raises(InvalidInputError, match="mix labels"):
        draw_permutations(mixed, groups, 5, scheme="group")
    assert draw_permutations(y, None, 5)[1] == "rows"


def test_permutations_keep_every_class_in_every_training_fold():
    X, y, groups = grouped_data("multiclass")
    res = permutation_test_layers(RidgeProbe(), X[:1], y, groups, n_permutations=200, n_splits=5, seed=0)
    for rows in res.permutations:
        for tr, _ in res.folds:
            assert np.unique(y[rows][tr]).size == 3


def test_single_layer_wrapper_and_input_errors():
    X, y, groups = grouped_data()
    single = permutation_test(RidgeProbe(), X[0], y, groups, n_permutations=10)
    layered = permutation_test_layers(RidgeProbe(), X[:1], y, groups, n_permutations=10)
    np.testing.assert_array_equal(single.p_value, layered.p_value)
    with pytest.raises(InvalidInputError, match="n_permutations"):
        permutation_test(RidgeProbe(), X[0], y, groups, n_permutations=0)
    with pytest.raises(InvalidInputError, match="groups"):
        permutation_test(RidgeProbe(), X[0], y, groups[:3], n_permutations=5, n_splits=2)
    with pytest.raises(InvalidInputError, match="only 2 group"):
        permutation_test(RidgeProbe(), X[0][:6], y[:6], groups[:6], n_permutations=5)
    with pytest.raises(InvalidInputError, match="scoring"):
        permutation_test(RidgeProbe(), X[0], y, groups, n_permutations=5, scoring="r2")


def test_batched_scores_match_sklearn_metrics():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 3, (40, 7))
    pred = rng.integers(0, 3, (40, 7))
    binary = rng.integers(0, 2, (40, 7))
    dec = rng.standard_normal((40, 7))
    y = rng.standard_normal((40, 7, 2))
    yhat = y + rng.standard_normal((40, 7, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for scoring in ("accuracy", "balanced_accuracy"):
            batch = score_batch_classes(scoring, torch.from_numpy(codes), torch.from_numpy(pred), 3).numpy()
            ref = [score_one(scoring, codes[:, b], pred[:, b]) for b in range(7)]
            np.testing.assert_allclose(batch, ref, rtol=1e-12)
    auc = score_batch_classes("roc_auc", torch.from_numpy(binary), torch.from_numpy(dec), 2).numpy()
    np.testing.assert_allclose(auc, [score_one("roc_auc", binary[:, b], dec[:, b]) for b in range(7)], rtol=1e-12)
    for scoring in ("r2", "spearman"):
        batch = score_batch_targets(scoring, torch.from_numpy(y), torch.from_numpy(yhat)).numpy()
        ref = [score_one(scoring, y[:, b], yhat[:, b]) for b in range(7)]
        np.testing.assert_allclose(batch, ref, rtol=1e-10)
