"""A6 pieces: perturbations keep what they should, the order-vs-content test reads the ratio right."""

from __future__ import annotations

import numpy as np

from conceptspace.analyses import _aggregation as aggregation
from conceptspace.analyses._aggregation import (
    FrequencySampler,
    bag_features,
    leading_components,
    order_vs_content_test,
    perturb,
)


def _sampler(vocab=500, seed=0):
    zipf = np.random.default_rng(seed).uniform(0, 7, vocab)
    return FrequencySampler(zipf, exclude=[0], window=20), zipf


def test_perturb_keeps_last_and_special_tokens_and_counts_changes():
    sampler, zipf = _sampler()
    seqs = [[0, 5, 6, 7, 8, 9], [0, 11, 12, 13], [0, 4, 4, 9], [0, 3]]
    p = perturb(seqs * 4, sampler, protected=[0], seed=1)
    for orig, perm, sub, k in zip(p.original, p.permuted, p.substituted, p.n_changed, strict=True):
        assert perm[-1] == orig[-1] and sub[-1] == orig[-1] and perm[0] == 0 and sub[0] == 0
        assert sorted(perm) == sorted(orig)
        assert sum(a != b for a, b in zip(orig, perm, strict=True)) == k
        assert sum(a != b for a, b in zip(orig, sub, strict=True)) == k
        for a, b in zip(orig, sub, strict=True):
            if a != b:
                assert abs(zipf[a] - zipf[b]) < 1.5
    assert all(len(seqs[i % 4]) >= 3 for i in p.kept)  # [0, 3] has one movable token: dropped


def test_perturb_is_seeded():
    sampler, _ = _sampler()
    seqs = [[0, 5, 6, 7, 8, 9]] * 10
    assert perturb(seqs, sampler, protected=[0], seed=3) == perturb(seqs, sampler, protected=[0], seed=3)
    assert perturb(seqs, sampler, protected=[0], seed=3) != perturb(seqs, sampler, protected=[0], seed=4)


def test_order_vs_content_detects_aggregation_and_its_absence():
    rng = np.random.default_rng(0)
    sub = rng.uniform(0.4, 0.6, 60)
    aggregating = order_vs_content_test(0.1 * sub + rng.normal(0, 0.01, 60), sub, n_bootstrap=200)
    assert aggregating["ratio"] < 0.2 and aggregating["p"] < 1e-6
    assert aggregating["ci"][0] <= aggregating["effect"] <= aggregating["ci"][1]
    order_matters = order_vs_content_test(0.9 * sub, sub, n_bootstrap=200)
    assert order_matters["effect"] < 0.2 and order_matters["p"] > 0.5


def test_bag_features_weights_and_components(monkeypatch):
    # the identity as the embedding table: token i's vector is e_i (read through weights.embedding_rows)
    monkeypatch.setattr(aggregation, "embedding_rows", lambda _model, ids: np.eye(4)[np.asarray(ids)])
    X = bag_features(object(), [[0, 1, 2]], decay=0.5)  # type: ignore[arg-type]
    assert np.allclose(X[0], [0.5, 1, 0, 0, 0, 0, 1, 0])
    Y = np.random.default_rng(0).normal(size=(30, 6))
    scores = leading_components(Y, 2)
    assert scores.shape == (30, 2) and np.allclose(scores.mean(axis=0), 0)
    assert scores[:, 0].var() >= scores[:, 1].var()
