"""Probes: the scikit-learn contract, recovered directions against known truth, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conceptspace.analyses.probes._estimators import (
    LayerwiseRidgeProbe,
    LDAProbe,
    LogisticProbe,
    MassMeanProbe,
    RidgeProbe,
    RidgeRegressionProbe,
)
from conceptspace.errors import InvalidInputError

BINARY_PROBES = [LogisticProbe(), RidgeProbe(), LDAProbe(), MassMeanProbe(), MassMeanProbe(covariance_adjusted=True)]


def planted(
    n: int = 300, d: int = 12, strength: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anisotropic noise plus a class shift of ``strength`` noise SDs along a known unit direction."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.5, 3.0, d)
    X = rng.standard_normal((n, d)) * scales
    direction = np.zeros(d)
    direction[3] = 1.0
    y = rng.integers(0, 2, n)
    X += np.outer(y - 0.5, direction) * strength * scales[3]
    return X, y, direction


@pytest.mark.parametrize("probe", BINARY_PROBES, ids=lambda p: repr(p))
def test_binary_probe_recovers_planted_direction(probe):
    X, y, direction = planted()
    fitted = clone(probe).fit(X, y)
    assert fitted.direction_.shape == (X.shape[1],)
    assert np.linalg.norm(fitted.direction_) == pytest.approx(1.0)
    # Points from class 0 to class 1 and along the planted axis.
    assert fitted.direction_ @ direction > 0.8
    assert fitted.score(X, y) > 0.85
    assert set(fitted.predict(X)) <= {0, 1}


@pytest.mark.parametrize("probe", BINARY_PROBES, ids=lambda p: repr(p))
def test_probes_work_in_cross_val_score_and_pipeline(probe):
    X, y, _ = planted(seed=1)
    groups = np.arange(len(y)) // 3
    scores = cross_val_score(make_pipeline(StandardScaler(), clone(probe)), X, y, groups=groups, cv=GroupKFold(4))
    assert scores.shape == (4,)
    assert scores.mean() > 0.8
    params = probe.get_params()
    assert clone(probe).get_params() == params


def test_string_labels_keep_their_names():
    X, y, _ = planted(seed=2)
    labels = np.where(y == 1, "true", "false")
    fitted = RidgeProbe().fit(X, labels)
    assert list(fitted.classes_) == ["false", "true"]
    assert set(fitted.predict(X)) <= {"true", "false"}


def test_ridge_probe_equals_sklearn_ridge_with_the_relative_penalty():
    X, y, _ = planted(seed=3)
    alpha = 0.3
    centred = X - X.mean(axis=0)
    absolute = alpha * np.sum(centred**2) / X.shape[1]
    ours = RidgeProbe(penalty=alpha).fit(X, y)
    ref = Ridge(alpha=absolute).fit(X, y.astype(float))
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_ + 0.5, ref.intercept_, rtol=1e-8)


def test_mass_mean_direction_is_the_difference_of_means():
    X, y, _ = planted(seed=4)
    delta = X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0)
    np.testing.assert_allclose(MassMeanProbe().fit(X, y).direction_, delta / np.linalg.norm(delta), rtol=1e-10)


def test_lda_direction_uses_within_class_covariance_and_matches_adjusted_mass_mean():
    X, y, _ = planted(seed=5)
    lda = LDAProbe(shrinkage=0.05).fit(X, y)
    adjusted = MassMeanProbe(covariance_adjusted=True, shrinkage=0.05).fit(X, y)
    np.testing.assert_allclose(lda.direction_, adjusted.direction_, rtol=1e-10)
    # Sherman-Morrison: the total-scatter solve points the same way (what the exact permutation path uses).
    centred = X - X.mean(axis=0)
    total = centred.T @ centred
    ridge = 0.05 * np.trace(total) / X.shape[1]
    delta = X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0)
    w = np.linalg.solve(total + ridge * np.eye(X.shape[1]), delta)
    np.testing.assert_allclose(lda.direction_, w / np.linalg.norm(w), rtol=1e-8)
    # And it differs from plain mass-mean on anisotropic data.
    assert abs(lda.direction_ @ MassMeanProbe().fit(X, y).direction_) < 0.999


@pytest.mark.parametrize("probe", [RidgeProbe(), LDAProbe(), LogisticProbe()], ids=lambda p: repr(p))
def test_multiclass_probes(probe):
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((3, 8)) * 4
    y = rng.integers(0, 3, 240)
    X = centres[y] + rng.standard_normal((240, 8))
    fitted = clone(probe).fit(X, y)
    assert fitted.score(X, y) > 0.9
    assert fitted.directions_.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(fitted.directions_, axis=1), 1.0)


def test_ridge_regression_probe_single_and_multi_output():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((200, 10))
    W = rng.standard_normal((10, 2))
    Y = X @ W + 0.1 * rng.standard_normal((200, 2))
    probe = RidgeRegressionProbe(penalty=0.001).fit(X, Y)
    assert probe.score(X, Y) > 0.98
    assert probe.directions_.shape == (2, 10)
    single = RidgeRegressionProbe(penalty=0.001).fit(X, Y[:, 0])
    assert single.direction_ @ (W[:, 0] / np.linalg.norm(W[:, 0])) > 0.99


def test_layerwise_ridge_equals_one_fit_per_layer():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((4, 90, 6)) * np.array([1.0, 10.0, 100.0, 1000.0])[:, None, None]
    y = rng.integers(0, 2, 90)
    batched = LayerwiseRidgeProbe(penalty=0.2).fit(X, y)
    for layer in range(4):
        single = RidgeProbe(penalty=0.2).fit(X[layer], y)
        np.testing.assert_allclose(batched.coef_[layer, 0], single.coef_, rtol=1e-8)
        np.testing.assert_allclose(batched.direction_[layer], single.direction_, rtol=1e-8)
        np.testing.assert_array_equal(batched.predict(X)[layer], single.predict(X[layer]))


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.empty((0, 3)), np.empty(0, dtype=int), "0 sample"),
        (np.ones((4, 3)), np.zeros(4, dtype=int), "single class"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]), "NaN"),
        (np.array([[np.inf, 1.0], [0.0, 1.0]]), np.array([0, 1]), "NaN or infinite"),
        (np.ones((4, 3)), np.array([0, 1, 0]), "inconsistent numbers of samples: \\[4, 3\\]"),
        (np.ones(4), np.array([0, 1, 0, 1]), "Reshape your data"),
        (np.ones((1, 3)), np.array([0]), "1 sample"),
        (np.ones((4, 3)), np.array([0.5, 1.5, 0.2, 0.1]), "Unknown label type: continuous"),
        (np.ones((2, 2)), np.array([0.0, np.nan]), "NaN"),
    ],
)
def test_invalid_inputs_raise_clear_errors(X, y, message):
    probe = RidgeRegressionProbe() if y.dtype.kind == "f" and "label type" not in message else RidgeProbe()
    with pytest.raises(InvalidInputError, match=message):
        probe.fit(X, y)


@pytest.mark.parametrize("probe", [*BINARY_PROBES, RidgeRegressionProbe()], ids=lambda p: repr(p))
def test_predict_checks_the_fitted_width_and_input_kind(probe):
    X, y, _ = planted(seed=9)
    fitted = clone(probe).fit(X, y if is_classifier(probe) else y.astype(float))
    with pytest.raises(InvalidInputError, match=r"X has 11 features, but \w+ is expecting 12 features"):
        fitted.predict(X[:, :11])
    with pytest.raises(TypeError, match="Sparse data was passed"):
        fitted.predict(scipy.sparse.csr_matrix(X))
    with pytest.raises(InvalidInputError, match="Complex data not supported"):
        fitted.predict(X.astype(complex))
    with pytest.raises(InvalidInputError, match="requires y to be passed"):
        clone(probe).fit(X, None)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_probe_probabilities_equal_sklearn(n_classes):
    rng = np.random.default_rng(10)
    y = rng.integers(0, n_classes, 150)
    X = rng.standard_normal((150, 6)) + rng.standard_normal((n_classes, 6))[y]
    ours = LogisticProbe(C=0.5).fit(X, y)
    ref = LogisticRegression(C=0.5, max_iter=2000).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.predict_log_proba(X), ref.predict_log_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_array_equal(ours.n_iter_, ref.n_iter_)


def test_layerwise_ridge_on_2d_x_is_one_layer_without_the_layer_axis():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((3, 60, 5))
    y = rng.integers(0, 2, 60)
    layered = LayerwiseRidgeProbe(penalty=0.2).fit(X, y)
    single = LayerwiseRidgeProbe(penalty=0.2).fit(X[1], y)
    np.testing.assert_array_equal(single.predict(X[1]), layered.predict(X)[1])
    np.testing.assert_allclose(single.decision_function(X[1]), layered.decision_function(X)[1], rtol=1e-12)
    assert single.n_features_in_ == layered.n_features_in_ == 5
    with pytest.raises(InvalidInputError, match="fitted on X of shape \\(n_layers, n, d\\)"):
        layered.predict(X[0])
    with pytest.raises(InvalidInputError, match="2 layers of 5 features"):
        layered.predict(X[:2])


def test_mass_mean_rejects_multiclass_and_bad_hyperparameters():
    X = np.random.default_rng(0).standard_normal((9, 2))
    with pytest.raises(InvalidInputError, match="binary"):
        MassMeanProbe().fit(X, np.arange(9) % 3)
    with pytest.raises(InvalidInputError, match="penalty"):
        RidgeProbe(penalty=0).fit(X, np.arange(9) % 2)
    with pytest.raises(InvalidInputError, match="shrinkage"):
        LDAProbe(shrinkage=0).fit(X, np.arange(9) % 2)


def test_ridge_strength_is_called_penalty_and_the_old_name_warns():
    """``alpha`` means only a significance level in conceptspace; a ridge strength is ``penalty``."""
    X, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 2
    with pytest.warns(DeprecationWarning, match="'alpha' is renamed 'penalty'"):
        old = RidgeProbe(alpha=0.3)
    assert old.get_params() == {"penalty": 0.3}
    np.testing.assert_array_equal(old.fit(X, y).coef_, RidgeProbe(penalty=0.3).fit(X, y).coef_)
