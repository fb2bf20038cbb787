"""Grouped CV per layer, controls side by side, transfer matrix."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score

from conceptspace.analyses.probes._estimators import LDAProbe, LogisticProbe, RidgeProbe, RidgeRegressionProbe
from conceptspace.analyses.probes._evaluation import (
    control_task_labels,
    cross_validate_layers,
    probe_layers,
    probe_with_controls,
    side_by_side,
    transfer_matrix,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._folds import grouped_folds


def layered(seed: int = 0, signal_layer: int = 1, strength: float = 2.0):
    """3 layers x 150 items (50 groups of 3); the concept is planted only in ``signal_layer``."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(50), 3)
    y = rng.permutation(np.arange(50) % 2)[groups]
    X = rng.standard_normal((3, 150, 10)) + 0.8 * rng.standard_normal((50, 10))[groups]
    X[signal_layer, :, 2] += strength * y
    return X, y, groups


def test_folds_never_split_a_group_and_are_stratified():
    _, y, groups = layered()
    folds = grouped_folds(y, groups, n_splits=5, seed=0)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested) == list(range(150))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert 0.3 < y[te].mean() < 0.7


def test_fold_errors_say_what_to_fix():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(InvalidInputError, match="lower n_splits"):
        grouped_folds(y, [0, 0, 1, 1], n_splits=3)
    y = np.array([0, 0, 0, 0, 1, 1])
    with pytest.raises(InvalidInputError, match="no items of class"):
        grouped_folds(y, [0, 1, 2, 3, 4, 4], n_splits=4)


@pytest.mark.parametrize("probe", [RidgeProbe(), LDAProbe(), LogisticProbe()], ids=repr)
def test_layer_cv_matches_sklearn_cross_val_score_on_the_same_folds(probe):
    X, y, groups = layered(strength=4.0)
    cv = cross_validate_layers(probe, X, y, groups, n_splits=4, scoring="accuracy", seed=2)
    for layer in range(3):
        ref = cross_val_score(probe, X[layer], y, cv=list(cv.folds), scoring="accuracy")
        np.testing.assert_allclose(cv.fold_scores[layer], ref, atol=1e-12)
    assert cv.scores[1] > 0.85 and cv.scores[0] < 0.75


def test_regression_layer_cv_uses_group_folds():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 2)
    target = rng.standard_normal(40)[groups]
    X = rng.standard_normal((2, 80, 6))
    X[1, :, 0] += 3 * target
    cv = cross_validate_layers(RidgeRegressionProbe(), X, target, groups, scoring="spearman")
    assert cv.scores[1] > 0.8 and abs(cv.scores[0]) < 0.4


def test_probe_layers_finds_the_signal_layer_only():
    X, y, groups = layered()
    rs, _ = probe_layers(RidgeProbe(), X, y, groups, dataset="toy", n_permutations=99, n_bootstrap=200)
    rs = rs.correct("holm")
    assert [r.layer for r in rs] == [0, 1, 2]
    assert [r.significant for r in rs] == [False, True, False]
    hit = rs[1]
    assert hit.p_value == pytest.approx(1 / 100)
    assert hit.ci_low <= hit.effect_size <= hit.ci_high and hit.ci_low > 0.1
    assert hit.n == 150 and hit.n_groups == 50
    assert hit.extra["permutation_scheme"] == "group"
    assert hit.test_id == "probe/toy/layer.1/RidgeProbe/task" and hit.site == "layer.1"


def test_controls_side_by_side_with_selectivity():
    X, y, groups = layered(strength=3.0)
    types = groups  # one word type per group
    control_y = control_task_labels(types, y, seed=1)
    rng = np.random.default_rng(5)
    untrained = rng.standard_normal(X.shape)
    lexical = rng.standard_normal((150, 10))
    rs = probe_with_controls(
        RidgeProbe(),
        X,
        y,
        groups,
        dataset="toy",
        control_y=control_y,
        X_untrained=untrained,
        X_lexical=lexical,
        n_permutations=49,
        n_bootstrap=100,
    )
    assert {r.control for r in rs} == {None, "control_task", "untrained", "lexical"}
    table = side_by_side(rs)
    assert set(table.columns) == {"task", "control_task", "untrained", "lexical"}
    task = rs.filter(control=None, layer=1)[0]
    assert task.extra["selectivity"] > 0.3
    lo, hi = task.extra["selectivity_ci"]
    assert lo <= task.extra["selectivity"] <= hi and lo > 0
    assert task.extra["untrained_score"] < 0.7
    assert "lexical_score" in task.extra


def test_control_task_labels_are_a_function_of_the_type():
    types = np.array(["cat", "dog", "cat", "eel", "dog"])
    labels = control_task_labels(types, [0, 1, 0, 1, 1], seed=0)
    assert labels[0] == labels[2] and labels[1] == labels[4]
    np.testing.assert_array_equal(labels, control_task_labels(types, [0, 1, 0, 1, 1], seed=0))


def test_transfer_matrix_generalises_along_a_shared_direction_only():
    rng = np.random.default_rng(6)

    def dataset(axis: int, seed: int):
        r = np.random.default_rng(seed)
        y = r.integers(0, 2, 120)
        X = r.standard_normal((120, 8))
        X[:, axis] += 3 * y
        return X, y, np.arange(120) // 2

    data = {"a": dataset(0, 1), "b": dataset(0, 2), "c": dataset(5, 3)}
    m = transfer_matrix(RidgeProbe(), data, n_splits=3)
    assert m.loc["a", "b"] > 0.85 and m.loc["b", "a"] > 0.85
    assert m.loc["a", "c"] < 0.7
    assert np.all(np.diag(m.to_numpy()) > 0.85)
    assert rng is not None
