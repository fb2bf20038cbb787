"""Park et al.'s protocol for C2 (geometry._park): planted offsets are found, noise is not, the causal inner
product undoes an anisotropic covariance, and relations too small for a LOO direction are refused or skipped."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses.geometry._nulls import fixed_or_sequential, outcomes
from conceptspace.analyses.geometry._park import (
    GAP,
    NON_SEPARABLE,
    POOLED,
    PROJECTION,
    SEPARABLE,
    _Projection,
    cosine_matrix,
    orthogonality_rows,
    projection_rows,
    separable_pairs,
)
from conceptspace.analyses.geometry._vector_ops import causal_inner_product
from conceptspace.errors import InvalidInputError

D = 24


def _vocabulary(rng: np.random.Generator, n: int = 600) -> np.ndarray:
    return rng.normal(size=(n, D))


def _random_differences(vocab: np.ndarray, rng: np.random.Generator, n: int = 400) -> np.ndarray:
    i, j = rng.integers(0, len(vocab), n), rng.integers(0, len(vocab), n)
    keep = i != j
    return vocab[i[keep]] - vocab[j[keep]]


def _relations(vocab: np.ndarray, offsets: list[np.ndarray | None], n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pairs of each relation: a from the vocabulary, b = a + offset + noise (offset None: b another word)."""
    A, B, rel = [], [], []
    for k, offset in enumerate(offsets):
        rows = rng.choice(len(vocab), 2 * n, replace=False)
        a = vocab[rows[:n]]
        b = vocab[rows[n:]] if offset is None else a + offset + 0.3 * rng.normal(size=a.shape)
        A.append(a)
        B.append(b)
        rel += [f"r{k}"] * n
    return np.concatenate(A), np.concatenate(B), rel


def _tests(rows, n_permutations: int = 199):  # type: ignore[no-untyped-def]
    out = fixed_or_sequential(rows, n_permutations, None, None)
    return {(lab["relation"], lab["statistic"]): row for lab, row in zip(rows.labels, outcomes(rows, out),
                                                                         strict=True)}


def _offset(rng: np.random.Generator, norm: float) -> np.ndarray:
    v = rng.normal(size=D)
    return norm * v / np.linalg.norm(v)


def test_planted_offset_held_out_projections_beat_random_pairs_and_the_repaired_null() -> None:
    rng = np.random.default_rng(0)
    vocab = _vocabulary(rng)
    A, B, rel = _relations(vocab, [_offset(rng, 3.0), _offset(rng, 3.0)], 30, rng)
    rows = projection_rows(A, B, rel, _random_differences(vocab, rng), n_bootstrap=200, seed=0)
    tests = _tests(rows)
    assert {r for r, _ in tests} == {"r0", "r1", POOLED}
    auroc, gap = tests[(POOLED, PROJECTION)], tests[(POOLED, GAP)]
    assert auroc.statistic > 0.95  # Park et al.'s histograms: held-out pairs right of the random ones
    for row in (auroc, gap):
        assert row.effect > 0 and row.p_value <= 0.01 and row.ci_low > 0
    assert tests[("r0", PROJECTION)].extra["standardized_gap"] > 1.5


def _projections_by_definition(a: np.ndarray, b: np.ndarray, Q: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """(2, n) straight from Park et al.'s histogram: each pair's projection onto the other pairs' summed
    difference against the R random pairs' projections onto it (share below, ties half; standardized gap)."""
    D = b[perm] - a
    out = np.empty((2, a.shape[0]))
    for i in range(a.shape[0]):
        u = D.sum(axis=0) - D[i]
        u = u / np.linalg.norm(u)
        held, rand = D[i] @ u, Q @ u
        out[0, i] = np.mean(rand < held) + 0.5 * np.mean(rand == held)
        out[1, i] = (held - rand.mean()) / rand.std(ddof=1)
    return out


def test_the_gram_form_of_the_projections_equals_their_definition() -> None:
    """The null draws use inner products and numerators only (_Projection): the same shares and gaps as
    projecting every random pair onto every leave-one-out direction, for the identity and for re-pairings."""
    rng = np.random.default_rng(7)
    a, Q = rng.normal(size=(9, D)), rng.normal(size=(300, D))
    b = a + _offset(rng, 2.0) + 0.5 * rng.normal(size=(9, D))
    perms = np.stack([np.arange(9)] + [rng.permutation(9) for _ in range(40)])
    got = _Projection(a, b, Q).contributions(perms)
    for p, perm in enumerate(perms):
        want = _projections_by_definition(a, b, Q, perm)
        np.testing.assert_array_equal(got[0, p], want[0])  # counts: no random pair within rounding of a tie
        np.testing.assert_allclose(got[1, p], want[1], rtol=1e-9, atol=1e-12)
    assert got[0, 0].mean() > 0.8 and 0.2 < got[0, 1:].mean() < 0.8  # the planted pairing stands out


def test_no_shared_offset_is_not_significant_and_the_ci_covers_zero() -> None:
    rng = np.random.default_rng(1)
    vocab = _vocabulary(rng)
    A, B, rel = _relations(vocab, [None, None], 30, rng)
    rows = projection_rows(A, B, rel, _random_differences(vocab, rng), n_bootstrap=200, seed=0)
    tests = _tests(rows)
    for stat in (PROJECTION, GAP):
        row = tests[(POOLED, stat)]
        assert row.p_value > 0.05, stat
        assert row.ci_low <= 0 <= row.ci_high, stat
    assert abs(tests[(POOLED, PROJECTION)].statistic - 0.5) < 0.1


def test_the_causal_inner_product_makes_whitened_orthogonal_directions_orthogonal() -> None:
    rng = np.random.default_rng(2)
    mixing = np.eye(D) + 0.8 * rng.normal(size=(D, D))  # an anisotropic, correlated unembedding
    unembedding = rng.normal(size=(20000, D)) @ mixing.T
    causal = causal_inner_product(unembedding)
    assert causal.dual_whitener is not None
    _, vectors = np.linalg.eigh(causal.dual_whitener)
    big, small = vectors[:, -1], vectors[:, 0]  # the most and least variable directions of the unembedding
    e1, e2 = (big + small) / np.sqrt(2), (big - small) / np.sqrt(2)  # orthonormal in the whitened space
    x, y = 4.0 * causal.dual_whitener @ e1, 4.0 * causal.dual_whitener @ e2
    raw = abs(x @ y) / (np.linalg.norm(x) * np.linalg.norm(y))
    assert raw > 0.2  # Euclidean: far from orthogonal
    vocab = unembedding[:800]
    a = vocab[:40]
    A = np.concatenate([a[:20], a[20:]])
    B = np.concatenate([a[:20] + x, a[20:] + y]) + 0.02 * rng.normal(size=(40, D)) @ causal.dual_whitener
    rel = ["gender"] * 20 + ["number"] * 20
    _, cos_causal = cosine_matrix(A, B, rel, inner_product=causal)
    _, cos_euclid = cosine_matrix(A, B, rel)
    assert abs(cos_causal[0, 1]) < 0.02
    assert abs(cos_euclid[0, 1]) > 0.2
    factors = {"gender": "gender", "number": "noun_number"}
    causal_rows, euclid_rows = (orthogonality_rows(A, B, rel, vocab, inner_product=ip, factors=factors,
                                                   n_bootstrap=50, seed=0) for ip in (causal, None))
    causal_row, euclid_row = causal_rows.observed[0], euclid_rows.observed[0]
    assert causal_rows.labels[0]["statistic"] == SEPARABLE
    assert causal_row < 0.02 < 0.2 < euclid_row


def test_separable_pairs_follow_the_attributes_and_same_attribute_pairs_are_reported_apart() -> None:
    sep, same = separable_pairs(["family", "gram3-comparative", "gram4-superlative", "unknown"])
    assert sep[0, 1] and sep[0, 2] and not sep[1, 2]
    assert same[1, 2] and not same[0, 1]
    assert not sep[:, 3].any() and not same[:, 3].any()  # an unlisted relation is in neither mean
    rng = np.random.default_rng(3)
    vocab = _vocabulary(rng)
    A, B, rel = _relations(vocab, [_offset(rng, 3.0)] * 3, 10, rng)
    names = {"r0": "gender", "r1": "degree", "r2": "degree"}
    rows = orthogonality_rows(A, B, rel, vocab, factors=names, n_bootstrap=20, seed=0)
    assert [lab["statistic"] for lab in rows.labels] == [SEPARABLE, NON_SEPARABLE]
    assert rows.extra[0]["attributes"] == ["gender", "degree", "degree"]


def test_relations_with_fewer_than_three_pairs_are_refused_or_skipped_with_their_names() -> None:
    rng = np.random.default_rng(4)
    vocab = _vocabulary(rng)
    Q = _random_differences(vocab, rng)
    A, B, rel = _relations(vocab, [_offset(rng, 3.0)], 2, rng)
    with pytest.raises(InvalidInputError, match="no relation has at least 3 pairs"):
        projection_rows(A, B, rel, Q, n_bootstrap=10)
    A2, B2, _ = _relations(vocab, [_offset(rng, 3.0)], 6, rng)
    rows = projection_rows(np.concatenate([A, A2]), np.concatenate([B, B2]), ["tiny"] * 2 + ["big"] * 6, Q,
                           n_bootstrap=10)
    assert {lab["relation"] for lab in rows.labels} == {"big"}
    assert rows.extra[0]["skipped_relations"] == ["tiny"]
    with pytest.raises(InvalidInputError, match="change different attributes"):
        orthogonality_rows(A2, B2, ["big"] * 6, vocab, factors={"big": "x"}, n_bootstrap=10)


def test_the_kind_is_wholly_exploratory_with_the_twin_as_its_control(tiny_models) -> None:  # type: ignore[no-untyped-def]
    """No row is primary, so C2's family and verdict stay the relations kind's; the twin ran every test."""
    from conceptspace.analyses._base import RunContext, registry

    model = tiny_models["llama"]
    analysis = registry()["park_directions"]
    params = analysis.make_params({"dataset": "google_analogy/all", "words": "all", "n_random_pairs": 50})
    context = RunContext(model=model, twin=model.untrained(0), claim="C2", seed=0, n_permutations=9,
                         n_bootstrap=9)
    results = analysis.run(context, params).results
    roles = {r.extra["role"] for r in results}
    assert roles == {"exploratory", "control"}
    trained = [r for r in results if r.control is None]
    keys = {r.key for r in results}
    assert all(r.key.counterpart("untrained") in keys for r in trained)
    assert {r.key.test for r in trained} == {"park_projection", "park_orthogonality"}


def test_the_null_battery_repairs_b_within_each_relation_and_token_group() -> None:
    from conceptspace.analyses.geometry._run_park import _repaired

    b = [f"b{i}" for i in range(12)]
    rel = np.array(["x"] * 6 + ["y"] * 6)
    groups = [np.array([0, 1, 2, 6, 7, 8]), np.array([3, 4, 5, 9, 10, 11])]
    out = _repaired(b, rel, groups, seed=0)
    assert out != b
    for rows in groups:
        for r in ("x", "y"):
            members = rows[rel[rows] == r]
            assert sorted(out[i] for i in members) == sorted(b[i] for i in members)
    assert _repaired(b, rel, groups, seed=0) == out
