"""Relation directions: planted consistent offsets are found, noise is not; causal inner product; orthogonality."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses.geometry._relations import (
    _boot_pair_cosine,
    loo_cosines,
    mean_pairwise_cosine,
    relation_consistency_tests,
    relation_orthogonality_tests,
)
from conceptspace.analyses.geometry._vector_ops import causal_inner_product
from conceptspace.errors import InvalidInputError


def _pairs(seed: int, offsets: np.ndarray, n: int = 12, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    A, B, rel = [], [], []
    for r, off in enumerate(offsets):
        a = rng.normal(size=(n, offsets.shape[1]))
        A.append(a)
        B.append(a + off + noise * rng.normal(size=a.shape))
        rel += [f"r{r}"] * n
    return np.concatenate(A), np.concatenate(B), rel


def test_mean_pairwise_and_loo_cosines_match_loops() -> None:
    rng = np.random.default_rng(0)
    D = rng.normal(size=(7, 5))
    U = D / np.linalg.norm(D, axis=1, keepdims=True)
    pairs = [U[i] @ U[j] for i in range(7) for j in range(7) if i != j]
    assert mean_pairwise_cosine(D) == pytest.approx(np.mean(pairs))
    loo = [D[k] @ (D.sum(0) - D[k]) / np.linalg.norm(D[k]) / np.linalg.norm(D.sum(0) - D[k]) for k in range(7)]
    assert np.allclose(loo_cosines(D), loo)


def test_planted_relation_is_consistent_under_both_inner_products() -> None:
    rng = np.random.default_rng(1)
    A, B, rel = _pairs(1, rng.normal(size=(2, 20)) * 2)
    U = rng.normal(size=(500, 20)) * np.linspace(0.5, 3, 20)
    for ip in (None, causal_inner_product(U)):
        res = relation_consistency_tests(A, B, rel, inner_product=ip, n_permutations=199, n_bootstrap=100, seed=0)
        assert len(res) == 2 * 2 + 1  # two statistics per relation, then the pooled mean pairwise cosine
        assert res[-1].extra["relation"] == "all" and list(res[-1].extra["relations"]) == ["r0", "r1"]
        for r in res:
            assert r.p_value == pytest.approx(1 / 200), r.test_id
            assert r.effect_size > 0.1 and r.ci_low > 0
        loo = res.filter(statistic_name="mean_loo_cosine")[0]
        assert loo.extra["cliffs_delta_vs_repaired"] > 0.8


def test_noise_relations_are_significant_at_about_the_nominal_rate() -> None:
    hits, trials = 0, 30
    for s in range(trials):
        rng = np.random.default_rng(200 + s)
        A, B = rng.normal(size=(10, 15)), rng.normal(size=(10, 15))
        r = relation_consistency_tests(A, B, ["r"] * 10, n_permutations=99, n_bootstrap=20, seed=s)
        hits += r.filter(statistic_name="mean_pairwise_cosine")[0].p_value <= 0.05
    assert hits / trials <= 0.2


def test_class_offset_without_pairing_is_not_significant() -> None:
    """Both words drawn at random from two shifted clouds: differences share the class offset, not the pairing."""
    rng = np.random.default_rng(3)
    shift = rng.normal(size=15) * 3
    hits = 0
    for s in range(20):
        A = rng.normal(size=(10, 15))
        B = rng.normal(size=(10, 15)) + shift
        r = relation_consistency_tests(A, B, ["r"] * 10, n_permutations=99, n_bootstrap=20, seed=s)[0]
        assert r.statistic > 0.5  # raw cosine is high: the offset is shared
        hits += r.p_value <= 0.05
    assert hits <= 4


def test_causal_inner_product_is_inverse_covariance() -> None:
    rng = np.random.default_rng(4)
    U = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    ip = causal_inner_product(U, ridge=0.0)
    cov = np.cov(U, rowvar=False)
    x, y = rng.normal(size=(3, 6)), rng.normal(size=(2, 6))
    assert np.allclose(ip.inner(x, y), x @ np.linalg.inv(cov) @ y.T)
    W = ip.whiten(U - U.mean(0))
    assert np.allclose(np.cov(W, rowvar=False), np.eye(6), atol=1e-8)
    with pytest.raises(InvalidInputError, match="dimension"):
        ip.whiten(np.ones((2, 5)))
    with pytest.raises(InvalidInputError, match="singular"):
        causal_inner_product(np.ones((4, 6)))


def test_context_side_map_is_parks_dual_and_keeps_every_logit() -> None:
    """Park et al.: g(y) = Cov^-1/2 gamma(y) for tokens, l(x) = Cov^+1/2 lambda(x) for contexts, so that
    l(x)' g(y) = lambda(x)' gamma(y) (the logits); whitening a context vector with the token map does not."""
    rng = np.random.default_rng(6)
    U = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))
    token_side = causal_inner_product(U, ridge=0.0)
    context_side = token_side.for_context()
    lam = rng.normal(size=(7, 5))
    assert context_side.side == "context" and token_side.side == "unembedding"
    np.testing.assert_allclose(context_side.whiten(lam) @ token_side.whiten(U).T, lam @ U.T, atol=1e-8)
    assert not np.allclose(token_side.whiten(lam) @ token_side.whiten(U).T, lam @ U.T, atol=1e-3)
    np.testing.assert_allclose(context_side.whitener @ context_side.whitener, np.cov(U, rowvar=False), atol=1e-8)
    back = context_side.for_context()
    np.testing.assert_allclose(back.whitener, token_side.whitener)
    assert back.side == "unembedding"


def test_planted_orthogonal_pair_ranks_below_every_reference_pair() -> None:
    rng = np.random.default_rng(5)
    d = 20
    common = rng.normal(size=d)
    offsets = np.stack([common + 0.3 * rng.normal(size=d) for _ in range(5)])
    offsets[0] = np.eye(d)[0] * 3
    offsets[1] = np.eye(d)[1] * 3
    A, B, rel = _pairs(6, offsets, noise=0.05)
    res = relation_orthogonality_tests(A, B, rel, [("r0", "r1")], n_bootstrap=100, seed=0)
    r = res[0]
    assert r.statistic < 0.1
    assert r.p_value == pytest.approx(1 / (r.extra["n_reference_pairs"] + 1))
    assert r.effect_size > 0.3 and r.ci_low > 0


def test_bad_input_is_rejected() -> None:
    A, B, rel = _pairs(7, np.ones((3, 4)))
    with pytest.raises(InvalidInputError, match="same shape"):
        relation_consistency_tests(A, B[:-1], rel)
    with pytest.raises(InvalidInputError, match="at least 3 pairs"):
        relation_consistency_tests(A[:2], B[:2], rel[:2])
    with pytest.raises(InvalidInputError, match="relation names"):
        relation_consistency_tests(A, B, rel[:-1])
    with pytest.raises(InvalidInputError, match="not in the set"):
        relation_orthogonality_tests(A, B, rel, [("r0", "zz")])
    with pytest.raises(InvalidInputError, match="itself"):
        relation_orthogonality_tests(A, B, rel, [("r0", "r0")])
    first = relation_consistency_tests(A, B, rel, n_permutations=20, n_bootstrap=20, seed=1)
    assert first == relation_consistency_tests(A, B, rel, n_permutations=20, n_bootstrap=20, seed=1)


def test_cliffs_delta_is_unbiased_on_noise() -> None:
    """The re-paired comparison pairs must not share words with the direction they are compared with."""
    deltas = []
    for s in range(15):
        rng = np.random.default_rng(400 + s)
        A, B = rng.normal(size=(20, 30)), rng.normal(size=(20, 30))
        res = relation_consistency_tests(A, B, ["r"] * 20, n_permutations=40, n_bootstrap=10, seed=s)
        deltas.append(res.filter(statistic_name="mean_loo_cosine")[0].extra["cliffs_delta_vs_repaired"])
    assert abs(float(np.mean(deltas))) < 0.05


def test_gram_null_draws_equal_the_vector_path_and_ignore_batch_sizes() -> None:
    """The re-pairing null computed from Gram matrices (a batch of draws at once) gives the numbers the
    per-draw vector path gave, draw by draw, with causal whitening included."""
    from conceptspace.analyses.geometry._nulls import batch_rng
    from conceptspace.analyses.geometry._relations import _batch_pair_stats, relation_null_rows

    rng = np.random.default_rng(11)
    A = rng.normal(size=(17, 9))
    B = A + rng.normal(size=(17, 9)) * 0.5 + 1.0
    relations = ["r1"] * 6 + ["r2"] * 7 + ["r3"] * 4
    U = rng.normal(size=(200, 9))
    for ip in (None, causal_inner_product(U)):
        rows = relation_null_rows(A, B, relations, inner_product=ip, n_bootstrap=10, seed=5)
        Aw, Bw = (A, B) if ip is None else (ip.whiten(A), ip.whiten(B))
        members = [np.flatnonzero(np.asarray(relations) == r) for r in ("r1", "r2", "r3")]
        expected = []
        for i in range(12):
            g = batch_rng(5, i, 0)
            values = []
            for idx in members:
                pair, loo = _batch_pair_stats(Aw[idx], Bw[idx], g.permutation(idx.size)[None, :])
                values += [pair[0], loo[0]]
            values.append(float(np.mean(values[0::2])))
            expected.append(values)
        np.testing.assert_allclose(rows.draw(0, 12), np.array(expected).T, atol=1e-12)
        np.testing.assert_allclose(np.concatenate([rows.draw(0, 5), rows.draw(5, 7)], axis=1), rows.draw(0, 12))


def test_the_bootstrap_pair_cosine_from_counts_equals_its_definition() -> None:
    """Each resample's mean cosine over its pairs of positions holding different items (an item's own copies
    left out), computed from the resample's counts, equals the literal double loop; a resample of one item
    repeated has no such pair (NaN)."""
    rng = np.random.default_rng(3)
    U = rng.normal(size=(7, 5))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    cos = U @ U.T
    for size in (7, 4, 11):  # resamples as large as the item set, and smaller or larger than it (pooled rows)
        rows = np.vstack([rng.integers(0, 7, size=(30, size)), np.full((1, size), 4)])
        got = _boot_pair_cosine(cos, rows)
        for r, drawn in enumerate(rows[:-1]):
            pairs = [cos[i, j] for i in drawn for j in drawn if i != j]
            assert got[r] == pytest.approx(np.mean(pairs), rel=1e-12)
        assert np.isnan(got[-1])
