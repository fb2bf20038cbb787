"""RSA and rated word pairs: statistics match independent implementations; planted structure is found, noise is not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from conceptspace.analyses.geometry._similarity import category_similarity, mantel_test, pair_similarity_test, rsa_tests
from conceptspace.errors import InvalidInputError
from conceptspace.stats._permutation import permutation_p_value


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


def _rated_pairs(seed: int, *, signal: float, n_words: int = 60, n_pairs: int = 150):  # type: ignore[no-untyped-def]
    """Random word vectors and a sparse pair list; ratings = signal * cosine + noise (signal 0: pure noise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_words, 16))
    words = [f"w{i}" for i in range(n_words)]
    chosen = rng.choice(n_words * (n_words - 1) // 2, size=n_pairs, replace=False)
    iu = np.triu_indices(n_words, 1)
    pairs = [(words[iu[0][k]], words[iu[1][k]]) for k in chosen]
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = np.array([unit[iu[0][k]] @ unit[iu[1][k]] for k in chosen])
    scores = np.round(signal * cos + rng.normal(size=n_pairs) * 0.1, 1)  # rounded: ties, as in real norms
    return X, words, pairs, scores, cos


def test_pair_rho_equals_scipy_spearman_of_the_pair_cosines() -> None:
    X, words, pairs, scores, cos = _rated_pairs(0, signal=0.5)
    assert np.unique(scores).size < scores.size  # ties are exercised
    r = pair_similarity_test(X, words, pairs, scores, n_permutations=9, n_bootstrap=10)[0]
    assert r.statistic == pytest.approx(spearmanr(cos, scores).statistic, abs=1e-12)
    assert r.n == 150 and r.method == "pair_cosine_spearman"


def test_pair_null_is_the_word_permutation_null() -> None:
    X, words, pairs, scores, _ = _rated_pairs(1, signal=0.3, n_words=12, n_pairs=20)
    r = pair_similarity_test(X, words, pairs, scores, n_permutations=50, n_bootstrap=10, seed=4)[0]
    used = sorted({w for p in pairs for w in p}, key=words.index)
    rng = np.random.default_rng(4)
    null = []
    for _ in range(50):
        perm = rng.permutation(len(used))
        vectors = {w: X[words.index(used[perm[i]])] for i, w in enumerate(used)}
        cos = [vectors[a] @ vectors[b] / np.linalg.norm(vectors[a]) / np.linalg.norm(vectors[b]) for a, b in pairs]
        null.append(spearmanr(cos, scores).statistic)
    expected_p = permutation_p_value(r.statistic, np.array(null))
    assert r.p_value == pytest.approx(float(expected_p))
    assert r.extra["null_mean"] == pytest.approx(float(np.mean(null)), abs=1e-12)


def test_planted_pair_signal_is_found() -> None:
    X, words, pairs, scores, _ = _rated_pairs(2, signal=1.0)
    r = pair_similarity_test(X, words, pairs, scores, n_permutations=199, n_bootstrap=300)[0]
    assert r.statistic > 0.5 and r.ci_low > 0.2
    assert r.p_value == pytest.approx(1 / 200)


def test_pure_noise_pairs_are_not_significant() -> None:
    X, words, pairs, scores, _ = _rated_pairs(3, signal=0.0)
    r = pair_similarity_test(X, words, pairs, scores, n_permutations=199, n_bootstrap=300)[0]
    assert r.ci_low < 0 < r.ci_high
    assert r.p_value > 0.1
    hits = 0
    for s in range(30):
        X, words, pairs, scores, _ = _rated_pairs(100 + s, signal=0.0, n_words=30, n_pairs=60)
        result = pair_similarity_test(X, words, pairs, scores, n_permutations=99, n_bootstrap=5, seed=s)[0]
        hits += result.p_value <= 0.05
    assert hits / 30 <= 0.17


def test_rows_outside_every_pair_are_ignored() -> None:
    X, words, pairs, scores, _ = _rated_pairs(5, signal=0.5, n_words=20, n_pairs=40)
    used = {w for p in pairs for w in p}
    extra_X = np.vstack([X, np.random.default_rng(0).normal(size=(5, 16))])
    extra_words = [*words, *(f"unused{i}" for i in range(5))]
    a = pair_similarity_test(X, words, pairs, scores, n_permutations=30, n_bootstrap=30)[0]
    b = pair_similarity_test(extra_X, extra_words, pairs, scores, n_permutations=30, n_bootstrap=30)[0]
    assert (a.statistic, a.p_value, a.ci_low, a.ci_high) == (b.statistic, b.p_value, b.ci_low, b.ci_high)
    assert a.extra["n_words"] == len(used)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pairs": [("w0", "nope"), ("w1", "w2"), ("w2", "w3")]}, "no row in X: \\['nope'\\]"),
        ({"pairs": [("w0", "w0"), ("w1", "w2"), ("w2", "w3")]}, "with itself"),
        ({"words": ["w0", "w0", "w2", "w3"]}, "unique"),
        ({"words": ["w0", "w1"]}, "one word per row"),
        ({"scores": [1.0, 2.0]}, "one rating per pair"),
        ({"scores": [1.0, 1.0, 1.0]}, "same rating"),
        ({"scores": [1.0, np.nan, 2.0]}, "NaN"),
        ({"pairs": ["w0", "w1", "w2"]}, "shape \\(m, 2\\)"),
    ],
)
def test_bad_pair_input_says_what_to_fix(change, message) -> None:  # type: ignore[no-untyped-def]
    args = {
        "X": np.random.default_rng(0).normal(size=(4, 3)),
        "words": ["w0", "w1", "w2", "w3"],
        "pairs": [("w0", "w1"), ("w1", "w2"), ("w2", "w3")],
        "scores": [1.0, 2.0, 3.0],
    }
    args.update(change)
    with pytest.raises(InvalidInputError, match=message):
        pair_similarity_test(**args, n_permutations=5, n_bootstrap=5)
