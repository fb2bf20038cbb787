"""Clustering against labels: metrics match scikit-learn, planted clusters are found, noise is not."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples
from sklearn.metrics.cluster import contingency_matrix

from conceptspace.analyses.geometry._clustering import (
    ari_from_table,
    cluster,
    clustering_tests,
    contingency,
    nmi_from_table,
    purity_from_table,
    silhouette_values,
)
from conceptspace.analyses.geometry._vector_ops import cosine_matrix
from conceptspace.errors import InvalidInputError


def _planted(seed: int, n_per: int = 20, k: int = 4, d: int = 16, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    labels = np.repeat(np.arange(k), n_per)
    return centers[labels] + spread * rng.normal(size=(k * n_per, d)), labels


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, 90)
    pred = rng.integers(0, 5, 90)
    pred[:40] = true[:40]
    table = contingency(true, pred)
    assert np.allclose(table[0], contingency_matrix(true, pred))
    assert ari_from_table(table)[0] == pytest.approx(adjusted_rand_score(true, pred), abs=1e-12)
    assert nmi_from_table(table)[0] == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-12)
    cm = contingency_matrix(true, pred)
    assert purity_from_table(table)[0] == pytest.approx(cm.max(axis=0).sum() / cm.sum())


def test_silhouette_matches_scikit_learn() -> None:
    X, labels = _planted(1, spread=2.0)
    D = np.clip(1 - cosine_matrix(X), 0, 2)
    np.fill_diagonal(D, 0)
    ours = silhouette_values(D, labels)
    ref = silhouette_samples(D, labels, metric="precomputed")
    assert np.allclose(ours, ref, atol=1e-10)


def test_weighted_contingency_equals_repeated_rows() -> None:
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    w = np.array([[2, 0, 1, 3, 1]])
    rows = np.repeat(np.arange(5), w[0])
    assert np.allclose(contingency(true, pred, w)[0], contingency_matrix(true[rows], pred[rows]))


@pytest.mark.parametrize("method", ["kmeans", "agglomerative_cosine", "agglomerative_ward"])
def test_planted_clusters_are_found(method: str) -> None:
    X, labels = _planted(2)
    assert adjusted_rand_score(labels, cluster(X, 4, method, seed=0)) > 0.95


def test_planted_clusters_are_significant_with_positive_effect() -> None:
    X, labels = _planted(3)
    res = clustering_tests(X, labels, n_permutations=199, n_bootstrap=100, seed=0, dataset="planted")
    assert len(res) == 3 * 3 + 1
    for r in res:
        assert r.p_value == pytest.approx(1 / 200)
        assert r.effect_size > 0.3 and r.ci_low > 0, r.test_id
        assert r.ci_low <= r.effect_size <= r.ci_high


def test_pure_noise_is_significant_at_about_the_nominal_rate() -> None:
    hits = 0
    trials = 40
    for s in range(trials):
        rng = np.random.default_rng(100 + s)
        X = rng.normal(size=(40, 8))
        labels = rng.integers(0, 3, 40)
        res = clustering_tests(X, labels, methods=("kmeans",), n_permutations=99, n_bootstrap=20, seed=s)
        hits += res.filter(statistic_name="ari")[0].p_value <= 0.05
    assert hits / trials <= 0.15


def test_group_labels_are_permuted_by_group() -> None:
    X, labels = _planted(4, n_per=10)
    groups = np.arange(labels.size) // 2  # pairs of rows with one label each
    res = clustering_tests(X, labels, groups=groups, methods=("kmeans",), n_permutations=50, n_bootstrap=20)
    assert res[0].extra["permutation_scheme"] == "group"
    assert res[0].n_groups == labels.size // 2


def test_same_seed_same_numbers() -> None:
    X, labels = _planted(5, spread=3.0)
    a = clustering_tests(X, labels, n_permutations=50, n_bootstrap=30, seed=7)
    b = clustering_tests(X, labels, n_permutations=50, n_bootstrap=30, seed=7)
    assert a == b


def test_bad_input_is_rejected() -> None:
    X, labels = _planted(6)
    with pytest.raises(InvalidInputError, match="single class"):
        clustering_tests(X, np.zeros(len(labels)))
    with pytest.raises(InvalidInputError, match="one entry per row"):
        clustering_tests(X, labels[:-1])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        clustering_tests(bad, labels)
    with pytest.raises(InvalidInputError, match="empty"):
        clustering_tests(np.zeros((0, 3)), [])
    with pytest.raises(InvalidInputError, match="unknown clustering method"):
        cluster(X, 3, "dbscan")


def test_bootstrap_interval_brackets_the_effect_even_near_the_null():
    """Plug-in NMI on resamples with repeated groups is biased upward; the CI must still contain the estimate."""
    import numpy as np

    from conceptspace.analyses.geometry._clustering import clustering_tests

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 16))
    labels = np.repeat(np.arange(4), 20)
    results = clustering_tests(X, labels, methods=("kmeans",), n_permutations=200, n_bootstrap=300, seed=0)
    for r in results:
        assert r.ci_low <= r.effect_size <= r.ci_high, (r.statistic_name, r.ci_low, r.effect_size, r.ci_high)
