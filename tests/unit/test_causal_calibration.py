"""Calibration of the causal tests' placebo statistics (issue 13): an interval that matches the rank p.

A pure-noise "concept" (itself a data-drawn placebo: the mass-mean direction of a random relabelling) must get
a 95% CI that covers 0 in 93-97% of draws and p < 0.05 in 3-7%; a planted direction must come out significant.
The noise draws use real steering slopes of a tiny random Llama (one pool of placebo directions evaluated once,
each draw takes a concept and a fresh placebo set from it), so the test measures the statistic on the
per-prompt structure a model gives, at seconds' cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conceptspace.activations import extract
from conceptspace.analyses.causal._inputs import as_targets, prepare_prompts
from conceptspace.analyses.causal._placebo import (
    IsotropicPlacebos,
    RelabelledPlacebos,
    index_seed,
    placebo_interval,
    rank_p_value,
)
from conceptspace.analyses.causal._steering import _Steerer, steering_test
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.models import load_model
from conceptspace.stats._sequential import SequentialPlan
from tests.unit.planted import BAD, GOOD, NEGATIVE, NEUTRAL, POSITIVE, make_planted_model, prompts

PROMPTS = ["The capital of France is", "Dogs bark", "A queen and a king", "The quick brown fox", "Paris is a city in",
           "birds sing in the", "the old castle by", "Berlin is a city", "cats meow and", "walked into the old"]


def _relabel(y: np.ndarray):  # type: ignore[no-untyped-def]
    return lambda seed: np.random.default_rng(seed).permutation(y)


def placebo_pool(model, n_directions: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(2 * n_directions, n_prompts) per-prompt steering slopes of data-drawn placebos as +/-u pairs."""
    prepared = prepare_prompts(model, PROMPTS, "last")
    target = as_targets(model, (["a", "e"], ["o", "u"]))
    base = run_edits(model, prepared, "layer.1", Edits.additive(torch.zeros(1, model.d_model)), target.ids)
    scale = float(base.norms[prepared.edit_mask].median())
    steerer = _Steerer(model, prepared, "layer.1", target, np.array([-1.0, -0.5, 0.5, 1.0]), scale,
                       target.score(base.target_logp[0]), 256)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, model.d_model)) * np.linspace(0.2, 3.0, model.d_model)  # anisotropic activations
    source = RelabelledPlacebos(X, _relabel(np.repeat([0, 1], 20)), seed=1)
    delta = steerer.deltas(source.directions(np.arange(n_directions)))
    pool = np.empty((2 * n_directions, len(PROMPTS)))
    pool[0::2], pool[1::2] = steerer.slopes(delta, 1), steerer.slopes(delta, -1)
    return pool


def null_rates(pool: np.ndarray, draws: int, n_placebos: int, seed: int = 1) -> tuple[float, float]:
    """(CI coverage of 0, rate of p < 0.05) over ``draws`` pure-noise concepts, each with a fresh placebo set."""
    rng = np.random.default_rng(seed)
    n_directions = pool.shape[0] // 2
    cover = significant = 0
    for r in range(draws):
        chosen = rng.choice(n_directions, size=n_placebos + 1, replace=False)
        concept = pool[2 * chosen[0] + int(rng.integers(2))]
        null = np.concatenate([pool[2 * chosen[1:]], pool[2 * chosen[1:] + 1]])
        fit = placebo_interval(concept, null, n_bootstrap=100, seed=r)
        cover += fit.ci_low <= 0.0 <= fit.ci_high
        significant += rank_p_value(fit.statistic, null.mean(axis=1)) < 0.05
    return cover / draws, significant / draws


@pytest.fixture(scope="module")
def pool(tiny_models):  # type: ignore[no-untyped-def]
    return placebo_pool(tiny_models["llama"], 600)


def test_pure_noise_concept_ci_covers_zero_and_p_is_calibrated(pool):
    cover, false_positive = null_rates(pool, draws=1000, n_placebos=60)
    assert 0.93 <= cover <= 0.97
    assert 0.03 <= false_positive <= 0.07


def test_pure_noise_calibration_many_draws(tiny_models):
    """The calibration tier: 3000 noise concepts against 100 placebo pairs each, from 3000 placebos."""
    cover, false_positive = null_rates(placebo_pool(tiny_models["llama"], 3000), draws=3000, n_placebos=100, seed=2)
    assert 0.93 <= cover <= 0.97
    assert 0.03 <= false_positive <= 0.07


def test_the_interval_reflects_direction_noise_not_only_prompt_noise(pool):
    """The reference run's failure: with the directions fixed, a bootstrap over prompts alone is far narrower
    than the placebo spread. The two-level interval is at least as wide as the placebo 95% range."""
    concept, null = pool[0], pool[2:202]
    fit = placebo_interval(concept, null, n_bootstrap=1000, seed=0)
    spread = np.quantile(null.mean(axis=1), [0.025, 0.975])
    assert fit.ci_high - fit.ci_low >= 0.9 * (spread[1] - spread[0])
    assert fit.null_mean == pytest.approx(0.0, abs=1e-9)  # +/-u pairs centre the null exactly
    assert fit.replicates.shape == (1000,)


def test_same_seed_same_replicates_pair_across_tests(pool):
    a = placebo_interval(pool[0], pool[2:102], n_bootstrap=200, seed=5)
    b = placebo_interval(pool[0], pool[2:102], n_bootstrap=200, seed=5)
    c = placebo_interval(pool[0], pool[2:102], n_bootstrap=200, seed=6)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert not np.array_equal(a.replicates, c.replicates)


def test_placebo_j_is_the_same_whatever_the_batch():
    source = IsotropicPlacebos(16, seed=3)
    torch.testing.assert_close(source.directions(np.arange(10))[4:], source.directions(np.arange(4, 10)))
    assert index_seed(3, 0) != index_seed(3, 1) != index_seed(4, 1)
    relabelled = RelabelledPlacebos(np.random.default_rng(0).normal(size=(12, 16)), _relabel(np.repeat([0, 1], 6)))
    torch.testing.assert_close(relabelled.directions(np.array([7])), relabelled.directions(np.arange(8))[7:])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    info = make_planted_model(Path(tmp_path_factory.mktemp("planted")))
    model = load_model(str(info.folder))
    words = POSITIVE + NEGATIVE
    X = np.asarray(extract(model, words, sites=["layer.0"], position="last")["layer.0"], dtype=np.float64)
    y = np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    return info, model, X, y


def test_planted_direction_beats_data_drawn_placebos_sequentially(planted):
    _info, model, X, y = planted
    direction = X[y == 1].mean(0) - X[y == 0].mean(0)  # the concept's own mass-mean direction, as the kinds use
    source = RelabelledPlacebos(X, _relabel(y), seed=0)
    plan = SequentialPlan(start=20, maximum=2000, thresholds=(0.01,), confidence=0.99)
    result = steering_test(model, direction, prompts(NEUTRAL[:12]), (GOOD, BAD), site="layer.0", placebos=source,
                           plan=plan, n_random=10, n_orthogonal=0, n_bootstrap=300)
    primary = result.results.filter(method="steering_vs_relabelled", control=None)[0]
    assert primary.extra["role"] == "primary"
    drawn = primary.extra["n_permutations"]
    assert 20 < drawn <= 2000 and primary.extra["settled"]  # it had to draw more than the start to settle
    # a few relabellings of 32 words split them almost like the concept: they may exceed it, not often
    assert 1 / (drawn + 1) <= primary.p_value < 0.01
    assert primary.ci_low > 0
    held_out = result.results.filter(control="random_direction")[0]
    assert held_out.extra["role"] == "control" and held_out.p_value > 0.01
    assert set(result.replicates) == {r.key for r in result.results}
    assert {r.extra["role"] for r in result.results} == {"primary", "control"}


def test_pure_noise_concept_through_the_whole_test_is_not_significant(planted):
    """End to end: the 'concept' is a relabelled direction itself (the null battery's concept)."""
    _, model, X, y = planted
    source = RelabelledPlacebos(X, _relabel(y), seed=0)
    noise = source.directions(np.array([12345]))[0].numpy()
    result = steering_test(model, noise, prompts(NEUTRAL[:12]), (GOOD, BAD), site="layer.0", placebos=source,
                           n_permutations=100, n_random=0, n_orthogonal=0, n_bootstrap=300)
    primary = result.results[0]
    assert primary.p_value > 0.05 and primary.ci_low <= 0 <= primary.ci_high


def test_pure_noise_directional_derivative_is_calibrated(tiny_models):
    """The same statistic on directional derivatives (one gradient pass; each direction is a dot product)."""
    from conceptspace.analyses.causal._trace import run_gradients

    model = tiny_models["llama"]
    prepared = prepare_prompts(model, PROMPTS, "last")
    target = as_targets(model, (["a", "e"], ["o", "u"]))
    grads = run_gradients(model, prepared, "layer.1", target.positive, target.negative)
    X = np.random.default_rng(0).normal(size=(40, model.d_model)) * np.linspace(0.2, 3.0, model.d_model)
    source = RelabelledPlacebos(X, _relabel(np.repeat([0, 1], 20)), seed=2)
    d = (grads @ source.directions(np.arange(2000)).T).T.double().numpy()
    pool = np.empty((4000, len(PROMPTS)))
    pool[0::2], pool[1::2] = d, -d
    cover, false_positive = null_rates(pool, draws=1000, n_placebos=60, seed=3)
    assert 0.93 <= cover <= 0.97
    assert 0.03 <= false_positive <= 0.07


def test_unpaired_rank_interval_is_calibrated_for_erasure_style_nulls():
    """Erasure's null has no +/-u pairs (|change| does not depend on a basis' sign): the unpaired interval."""
    rng = np.random.default_rng(4)
    cover = significant = 0
    draws = 1000
    for r in range(draws):
        values = np.abs(rng.normal(size=(41, 8)) + rng.normal(size=(41, 1)))  # per-placebo level + item noise
        fit = placebo_interval(values[0], values[1:], n_bootstrap=50, seed=r, paired=False)
        cover += fit.ci_low <= 0.0 <= fit.ci_high
        significant += rank_p_value(fit.statistic, values[1:].mean(axis=1)) < 0.05
    assert 0.93 <= cover / draws <= 0.97
    assert 0.03 <= significant / draws <= 0.07
