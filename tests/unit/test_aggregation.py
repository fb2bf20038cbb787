"""A6 pieces: perturbations keep what they should, the order-vs-content test reads the ratio right and is
calibrated (its interval inverts the p-value's own role-swap null), and every control model is paired."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses import _aggregation as aggregation
from conceptspace.analyses._aggregation import (
    FrequencySampler,
    aggregation_tests,
    bag_features,
    leading_components,
    order_vs_content_test,
    perturb,
    ratio_interval,
    role_swap_draw,
    swap_roles,
)
from conceptspace.stats import SequentialPlan


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
    aggregating = order_vs_content_test(0.1 * sub + rng.normal(0, 0.01, 60), sub, n_permutations=999)
    assert aggregating["ratio"] < 0.2 and aggregating["p"] == pytest.approx(1 / 1000)
    assert aggregating["ci"][0] <= aggregating["effect"] <= aggregating["ci"][1]
    assert aggregating["effect"] == pytest.approx(aggregating["statistic"] - aggregating["null_mean"])
    order_matters = order_vs_content_test(0.9 * sub, sub, n_bootstrap=200)
    assert order_matters["effect"] < 0.2 and order_matters["p"] < 0.05  # 0.9 < 1, but far from 0.5
    same = order_vs_content_test(sub[::-1].copy(), sub, n_bootstrap=200)
    assert same["ci"][0] <= 0 <= same["ci"][1] and same["p"] > 0.05


def test_role_swap_null_is_numbered_shared_and_centred():
    rng = np.random.default_rng(1)
    dp, ds = rng.uniform(0.1, 0.3, 40), rng.uniform(0.3, 0.6, 40)
    draw = role_swap_draw([(dp, ds), (2 * dp, 2 * ds)], seed=3)
    first = draw(0, 400)
    assert np.array_equal(first, role_swap_draw([(dp, ds), (2 * dp, 2 * ds)], seed=3)(0, 400))
    assert np.allclose(first[0], first[1])  # the same swaps on every row (scale-free statistic)
    assert not np.array_equal(first, draw(400, 400))
    assert abs(first[0].mean()) < 0.05  # swapped changes: reordering "as bad as" replacing, 1 - ratio near 0
    swapped_perm, swapped_sub = swap_roles(dp, ds, seed=2)
    assert np.array_equal(np.sort(np.r_[swapped_perm, swapped_sub]), np.sort(np.r_[dp, ds]))
    assert np.array_equal(swapped_perm + swapped_sub, dp + ds)


def test_ratio_interval_contains_the_ratio_and_shrinks_with_n():
    rng = np.random.default_rng(2)
    small = rng.gamma(4, 0.05, 20)
    large = rng.gamma(4, 0.05, 200)
    lo, hi = ratio_interval(0.5 * small, small)
    assert lo <= 0.5 <= hi
    lo_l, hi_l = ratio_interval(0.5 * large * rng.uniform(0.8, 1.2, 200), large)
    assert lo_l < 0.5 < hi_l and hi_l - lo_l < hi - lo + 0.2


def test_order_vs_content_calibration():
    """300 noise data sets (Delta_perm and Delta_sub exchangeable): the CI covers 0 in 93-97%, p < 0.05 in 3-7%;
    planted (order matters 0.6 as much as content): the CI covers the truth and the test finds it."""
    rates = calibration(30, 300, seed=5)
    assert 0.93 <= rates["cover0"] <= 0.97, rates
    assert 0.03 <= rates["false_positive"] <= 0.07, rates
    assert 0.93 <= rates["cover_truth"] <= 0.97, rates
    assert rates["power"] > 0.9, rates


def calibration(n: int, draws: int, seed: int, planted: float = 0.6) -> dict[str, float]:
    """Per sentence a scale (sentences differ in how much any change moves them), then two gamma changes."""
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(("cover0", "false_positive", "cover_truth", "power"), 0)
    for d in range(draws):
        scale = rng.lognormal(0, 0.5, n)
        noise = order_vs_content_test(scale * rng.gamma(4, 0.05, n), scale * rng.gamma(4, 0.05, n),
                                      n_permutations=199, n_bootstrap=50, seed=d)
        counts["cover0"] += noise["ci"][0] <= 0 <= noise["ci"][1]
        counts["false_positive"] += noise["p"] < 0.05
        scale = rng.lognormal(0, 0.5, n)
        real = order_vs_content_test(planted * scale * rng.gamma(4, 0.05, n), scale * rng.gamma(4, 0.05, n),
                                     n_permutations=199, n_bootstrap=50, seed=d)
        truth = 1 - planted - real["null_mean"]
        counts["cover_truth"] += real["ci"][0] <= truth <= real["ci"][1]
        counts["power"] += real["p"] < 0.05
    return {k: v / draws for k, v in counts.items()}


def test_aggregation_tests_pair_the_model_with_every_control(tiny_models):
    model = tiny_models["llama"]
    texts = [f"The {a} {b} near the {c} river." for a, b, c in
             zip(["red", "old", "small", "big", "cold", "dark", "wet", "new", "odd", "tall"] * 2,
                 ["fox", "dog", "cat", "owl", "ram", "bee", "elk", "yak", "emu", "ant"] * 2,
                 ["north", "south", "east", "west", "blue", "green", "wide", "deep", "slow", "long"] * 2, strict=True)]
    controls = [("untrained", 0, model.untrained(0)), ("untrained", 1, model.untrained(1)),
                ("spectrum_matched", 0, model.untrained(2))]
    out = aggregation_tests(model, texts, controls=controls, dataset="d", groups=list(range(20)),
                            plan=SequentialPlan(start=19, maximum=76, thresholds=(0.05,)), n_bootstrap=40, seed=0)
    ovc = {r.control: r for r in out.results if r.method == "permute_vs_substitute"}
    assert set(ovc) == {None, "untrained", "spectrum_matched"}
    assert out.replicates[ovc["untrained"].key].shape == (2, 40)
    assert out.replicates[ovc[None].key].shape == (40,)
    assert len(ovc["untrained"].extra["per_seed"]) == 2 and list(ovc["untrained"].extra["twin_seeds"]) == [0, 1]
    for r in out.results:
        assert r.extra["n_permutations"] >= 19 and r.effect_size == pytest.approx(r.statistic - r.extra["null_mean"])
    bag = {r.control: r for r in out.results if r.method == "bag_of_embeddings_ridge"}
    assert set(bag) == {None, "untrained", "spectrum_matched"} and bag[None].statistic_name == "r2"
    assert all(r.ci_low <= r.effect_size <= r.ci_high for r in bag.values())  # replicates re-centred on R^2
    null = aggregation_tests(model, texts, controls=controls[:1], dataset="d", groups=list(range(20)),
                             n_permutations=19, n_bootstrap=20, seed=0, null_seed=3)
    swapped = {r.control: r for r in null.results if r.method == "permute_vs_substitute"}
    assert swapped[None].statistic != ovc[None].statistic
def test_bag_features_weights_and_components(monkeypatch):
    # the identity as the embedding table: token i's vector is e_i (read through weights.embedding_rows)
    monkeypatch.setattr(aggregation, "embedding_rows", lambda _model, ids: np.eye(4)[np.asarray(ids)])
    X = bag_features(object(), [[0, 1, 2]], decay=0.5)  # type: ignore[arg-type]
    assert np.allclose(X[0], [0.5, 1, 0, 0, 0, 0, 1, 0])
    Y = np.random.default_rng(0).normal(size=(30, 6))
    scores = leading_components(Y, 2)
    assert scores.shape == (30, 2) and np.allclose(scores.mean(axis=0), 0)
    assert scores[:, 0].var() >= scores[:, 1].var()
    bag = aggregation.mean_token_features(object(), [[0, 1, 2], [2, 1, 0], [3, 3, 0]])  # type: ignore[arg-type]
    assert np.allclose(bag[0], bag[1]) and np.allclose(bag[2], [1 / 3, 0, 0, 2 / 3])  # order plays no part
    # axes from another set: its own mean and directions, not the scored rows'
    basis = np.zeros((10, 6))
    basis[:, 4] = np.arange(10.0)
    held = leading_components(Y + 5.0, 1, basis)
    assert np.allclose(np.abs(held[:, 0]), np.abs(Y[:, 4] + 5.0 - 4.5))


def test_a_true_bag_explains_a_mean_aggregator_and_order_adds_nothing(tiny_models):
    """Planted: the context vector *is* the mean of the sentence's token embeddings (an order-free aggregator):
    the bag of tokens predicts it out of fold (R^2 near 1) at least as well as the order-sensitive features."""
    model = tiny_models["llama"]
    rng = np.random.default_rng(4)
    texts = [" ".join(rng.choice(["red", "old", "fox", "dog", "cat", "owl", "river", "north", "blue", "wide", "deep",
                                  "slow", "small", "dark"], size=6)) for _ in range(60)]
    original = aggregation.context_vectors
    try:
        aggregation.context_vectors = lambda m, seqs, **kw: aggregation.mean_token_features(m, seqs)  # type: ignore
        out = aggregation_tests(model, texts, dataset="d", groups=list(range(60)), n_permutations=19,
                                n_bootstrap=20, seed=0, basis_texts=texts[::-1][:30], penalty=0.01)
    finally:
        aggregation.context_vectors = original
    rows = {r.method: r for r in out.results if r.control is None}
    assert rows["bag_of_tokens_ridge"].statistic > 0.9
    assert rows["bag_of_tokens_ridge"].statistic >= rows["bag_of_embeddings_ridge"].statistic - 0.02


def test_the_kind_declares_one_primary_and_marks_the_null_battery(tiny_models):
    from conceptspace.analyses import RunContext, get_kind
    from conceptspace.analyses.kinds.aggregation import AggregationParams

    model = tiny_models["llama"]
    context = RunContext(model=model, twin=None, twins=(model.untrained(0), model.untrained(1)), twin_seeds=(0, 1),
                         spectrum_twin=model.untrained(5), claim="A6", n_permutations=19, n_bootstrap=20,
                         null_seed=2)
    out = get_kind("aggregation").run(context, AggregationParams(datasets=["truth_is_universal/animal_class"],
                                                                 max_items=24))
    roles = {(r.method, r.control): r.extra["role"] for r in out.results}
    bags = ("bag_of_embeddings_ridge", "bag_of_tokens_ridge")
    assert roles == {("permute_vs_substitute", None): "primary",
                     ("permute_vs_substitute", "untrained"): "control",
                     ("permute_vs_substitute", "spectrum_matched"): "control",
                     **{(b, None): "exploratory" for b in bags},
                     **{(b, "untrained"): "control" for b in bags},
                     **{(b, "spectrum_matched"): "control" for b in bags}}
    bag_rows = [r for r in out.results if r.method in bags]
    assert all(r.extra["basis"].startswith("principal axes fitted on 24 other sentences") for r in bag_rows)
    assert all("swapped" in r.extra["null_battery"] for r in out.results)
    assert set(out.replicates) == {r.key for r in out.results}
