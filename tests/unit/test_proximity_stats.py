"""P5's statistics: the paired per-context effect, its exact shuffle null, and their calibration.

The calibration tests simulate context x token rankings with shared token structure (a frequency profile both
sides follow, clusters of similar contexts) so that the row and column effects the paired effect must cancel
are present; the default tier runs a few hundred data sets, the calibration tier thousands at several sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses.geometry._context_shuffle import (
    bootstrap_rows,
    context_shuffle_draw,
    effect_replicates,
    max_t_p_values,
    paired_context_effects,
    percentile_ci,
    shuffle_null_moments,
    shuffled_pairing,
)
from conceptspace.analyses.geometry._logit_lens import ContextMatrices, ModelPasses, proximity_results
from conceptspace.analyses.geometry._vector_ops import standardized_ranks
from conceptspace.errors import InvalidInputError
from conceptspace.stats import SequentialPlan, sequential_null

V = 120
_BASE = np.random.default_rng(99)
FREQUENCY = _BASE.normal(size=V)  # what every context's proximities and probabilities share
CLUSTERS = _BASE.normal(size=(4, V))  # families of similar contexts


def spearman_matrix(rng: np.random.Generator, n: int, planted: float = 0.0) -> np.ndarray:
    """M[i, j] = Spearman(cosines of context i, log p of context j); ``planted`` ties each context's cosines to
    its own distribution beyond what all contexts share."""
    own = 0.8 * CLUSTERS[rng.integers(0, 4, n)] + rng.normal(size=(n, V))
    logp = FREQUENCY + own
    cos = 0.7 * FREQUENCY + planted * own + 0.5 * CLUSTERS[rng.integers(0, 4, n)] + rng.normal(size=(n, V))
    return standardized_ranks(cos) @ standardized_ranks(logp).T


def one_test(M: np.ndarray, seed: int, n_permutations: int = 199, n_bootstrap: int = 400) -> tuple:
    """(effect, CI, p) as the kind computes them for one row."""
    effects = paired_context_effects(M)
    out = sequential_null(context_shuffle_draw([M], seed), [np.diag(M).mean()], SequentialPlan.fixed(n_permutations))
    ci = percentile_ci(effect_replicates(effects, bootstrap_rows(len(effects), n_bootstrap, seed)))
    return float(effects.mean()), ci, float(out.p_value[0])


def population_effect(planted: float, n: int) -> float:
    """What mean diagonal - null mean estimates at n contexts: (1 - 1/n) (E M_ii - E M_ij), from 3000 contexts."""
    M = spearman_matrix(np.random.default_rng(5), 3000, planted)
    off = (M.sum() - np.trace(M)) / (3000 * 2999)
    return (1 - 1 / n) * (np.diag(M).mean() - off)


def test_paired_effect_is_observed_minus_the_exact_null_mean():
    M = spearman_matrix(np.random.default_rng(0), 20, planted=0.3)
    mean, sd = shuffle_null_moments(M)
    assert paired_context_effects(M).mean() == pytest.approx(np.diag(M).mean() - mean, abs=1e-12)
    null = context_shuffle_draw([M], 1)(0, 20000)[0]
    assert null.mean() == pytest.approx(mean, abs=3 * sd / np.sqrt(20000))
    assert null.std() == pytest.approx(sd, rel=0.03)


def test_row_and_column_effects_cancel_in_the_paired_effect():
    """A context whose proximities agree with every distribution (a row effect) is not evidence."""
    M = spearman_matrix(np.random.default_rng(1), 15)
    shifted = M + np.linspace(0, 0.3, 15)[:, None] + np.linspace(0, 0.2, 15)[None, :]
    assert np.allclose(paired_context_effects(shifted), paired_context_effects(M))
    assert shuffle_null_moments(shifted)[1] == pytest.approx(shuffle_null_moments(M)[1])


def test_draws_are_numbered_and_shared_across_rows():
    rng = np.random.default_rng(2)
    A, B = spearman_matrix(rng, 10), spearman_matrix(rng, 10)
    draw = context_shuffle_draw([A, B], seed=7)
    assert np.array_equal(draw(0, 50), context_shuffle_draw([A, B], seed=7)(0, 50))
    assert not np.array_equal(draw(0, 50), draw(50, 50))
    # row 2 of a draw over [A, A + c] is row 1 plus the constant: the same permutations
    assert np.allclose(context_shuffle_draw([A, A + 0.1], 3)(0, 30)[1], context_shuffle_draw([A], 3)(0, 30)[0] + 0.1)


def test_shuffled_pairing_is_seeded_permutation():
    p = shuffled_pairing(30, 4)
    assert sorted(p) == list(range(30)) and np.array_equal(p, shuffled_pairing(30, 4))
    assert not np.array_equal(p, shuffled_pairing(30, 5))
    with pytest.raises(InvalidInputError, match="at least 3 contexts"):
        paired_context_effects(np.ones((2, 2)))


def test_max_t_adjusts_upwards_and_keeps_a_strong_row():
    rng = np.random.default_rng(3)
    rows = [spearman_matrix(rng, 20, planted) for planted in (0.0, 0.0, 0.5)]
    null = context_shuffle_draw(rows, 0)(0, 499)
    observed = np.array([np.diag(M).mean() for M in rows])
    moments = np.array([shuffle_null_moments(M) for M in rows])
    raw = (1 + (null >= observed[:, None]).sum(axis=1)) / 500
    adjusted = max_t_p_values(observed, null, moments[:, 0], moments[:, 1])
    assert np.all(adjusted >= raw - 1e-12) and adjusted[2] < 0.01


def _calibration(n: int, draws: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    covered = significant = 0
    for d in range(draws):
        _, (lo, hi), p = one_test(spearman_matrix(rng, n), seed=d)
        covered += lo <= 0 <= hi
        significant += p < 0.05
    truth = population_effect(0.3, n)
    planted_cover = planted_significant = 0
    for d in range(draws):
        _, (lo, hi), p = one_test(spearman_matrix(rng, n, 0.3), seed=d)
        planted_cover += lo <= truth <= hi
        planted_significant += p < 0.05
    return {"cover0": covered / draws, "false_positive": significant / draws, "cover_truth": planted_cover / draws,
            "power": planted_significant / draws}


def test_pure_noise_and_planted_calibration():
    """300 noise data sets: 95% CI covers 0 in 93-97%, p < 0.05 in 3-7%; planted: CI covers the truth, p small."""
    rates = _calibration(30, 300, seed=11)
    assert 0.93 <= rates["cover0"] <= 0.97, rates
    assert 0.03 <= rates["false_positive"] <= 0.07, rates
    assert 0.93 <= rates["cover_truth"] <= 0.97, rates
    assert rates["power"] > 0.99, rates


def _passes(M: dict, last: str = "layer.3", n: int = 20) -> ContextMatrices:
    return ContextMatrices(matrices=M, describe={k: {"last_layer": k[0] == last} for k in M}, common={},
                           identity_rho=np.ones(n), zero_norm_tokens=0, last_site=last)


def test_results_share_draws_average_twin_seeds_and_mark_the_last_block():
    rng = np.random.default_rng(4)

    def model(planted: float) -> ContextMatrices:
        return _passes({(site, "cosine_vs_logp"): spearman_matrix(rng, 20, planted)
                        for site in ("layer.1", "layer.2", "layer.3")})

    groups = [ModelPasses(None, (0,), (model(0.4),)), ModelPasses("untrained", (0, 1), (model(0.0), model(0.0))),
              ModelPasses("spectrum_matched", (0,), (model(0.0),))]
    plan = SequentialPlan(start=99, maximum=99 * 8, thresholds=(0.01,))
    results, replicates = proximity_results(groups, dataset="d", plan=plan, n_bootstrap=300, seed=0,
                                            primary=("layer.2", "cosine_vs_logp"))
    real = {r.site: r for r in results.filter(control=None) if r.method == "cosine_vs_logp"}
    assert real["layer.3"].extra["role"] == "sanity" and "role" not in real["layer.2"].extra
    assert real["layer.2"].p_value < 0.01 and real["layer.2"].extra["n_permutations"] >= 99
    assert real["layer.2"].ci_low > 0 and real["layer.2"].extra["p_maxt"] >= real["layer.2"].p_value
    assert real["layer.2"].effect_size == pytest.approx(real["layer.2"].statistic - real["layer.2"].extra["null_mean"])
    twin = next(r for r in results.filter(control="untrained") if r.site == "layer.2")
    seeds = [np.diag(p.matrices[("layer.2", "cosine_vs_logp")]).mean() for p in groups[1].passes]
    assert twin.statistic == pytest.approx(np.mean(seeds)) and len(twin.extra["per_seed"]) == 2
    assert twin.ci_low <= 0 <= twin.ci_high
    assert replicates[twin.key].shape == (2, 300) and replicates[real["layer.2"].key].shape == (300,)
    spectrum = next(r for r in results.filter(control="spectrum_matched") if r.site == "layer.2")
    assert spectrum.key.model == "spectrum_matched"
    assert {r.control for r in results if r.method == "dot_vs_logp"} == {"identity"}
    with pytest.raises(InvalidInputError, match="primary test"):
        proximity_results(groups, dataset="d", plan=plan, n_bootstrap=10, seed=0, primary=("layer.9", "x"))
