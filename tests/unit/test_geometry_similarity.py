"""RSA: the Mantel test matches an independent implementation; planted structure is found, noise is not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from conceptspace.analyses.geometry._similarity import category_similarity, mantel_test, rsa_tests
from conceptspace.errors import InvalidInputError


def _reference_mantel(M: np.ndarray, R: np.ndarray, n_perm: int, seed: int) -> tuple[float, np.ndarray]:
    """Textbook Mantel: Spearman of upper triangles, reference rows/columns permuted together."""
    iu = np.triu_indices(M.shape[0], 1)
    rho = spearmanr(M[iu], R[iu]).statistic
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(n_perm):
        p = rng.permutation(M.shape[0])
        null.append(spearmanr(M[iu], R[np.ix_(p, p)][iu]).statistic)
    return float(rho), np.array(null)


def test_mantel_matches_reference_implementation() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(15, 4))
    M = X @ X.T
    R = M + rng.normal(size=M.shape) * 2
    R = (R + R.T) / 2
    rho, null = mantel_test(M, R, n_permutations=100, seed=3)
    ref_rho, ref_null = _reference_mantel(M, R, 100, 3)
    assert rho == pytest.approx(ref_rho, abs=1e-12)
    assert np.allclose(null, ref_null, atol=1e-12)


def test_planted_categories_are_found() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 10)
    X = rng.normal(size=(4, 12))[labels] * 2 + rng.normal(size=(40, 12))
    r = rsa_tests(X, category_similarity(labels), n_permutations=199, n_bootstrap=100)[0]
    assert r.statistic > 0.3 and r.ci_low > 0.2
    assert r.p_value == pytest.approx(1 / 200)


def test_noise_is_significant_at_about_the_nominal_rate() -> None:
    hits, trials = 0, 40
    for s in range(trials):
        rng = np.random.default_rng(300 + s)
        labels = rng.integers(0, 3, 24)
        r = rsa_tests(rng.normal(size=(24, 6)), category_similarity(labels), n_permutations=99, n_bootstrap=10, seed=s)
        hits += r[0].p_value <= 0.05
    assert hits / trials <= 0.15


def test_bad_input_is_rejected() -> None:
    X = np.random.default_rng(2).normal(size=(6, 3))
    with pytest.raises(InvalidInputError, match="square"):
        rsa_tests(X, np.ones((6, 5)))
    with pytest.raises(InvalidInputError, match="6 items"):
        rsa_tests(X, np.eye(5))
    asym = np.arange(36.0).reshape(6, 6)
    with pytest.raises(InvalidInputError, match="symmetric"):
        rsa_tests(X, asym)
    with pytest.raises(InvalidInputError, match="no structure"):
        rsa_tests(X, np.ones((6, 6)))
    with pytest.raises(InvalidInputError, match="zero length"):
        rsa_tests(np.zeros((6, 3)), np.eye(6))
