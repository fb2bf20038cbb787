"""N2 (context narrows) and N3 (function vectors): planted-positive and null cases, run through the kinds.

The tiny random models cannot do in-context learning, so the planted cases replace the one measurement function
of each kind (what the model says about the prompts) by arrays with a known truth, and everything after it runs
as in a suite: the Monte Carlo null, effects against its mean, intervals, roles, controls and replicates. The null
cases run the real measurement on the tiny random llama, plus arrays with no signal. A calibration test checks the
statistics' p-values and intervals over many pure-noise data sets.
"""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses import RunContext, _icl, registry
from conceptspace.analyses.kinds import function_vectors as fv
from conceptspace.analyses.kinds import icl_narrowing as n2
from conceptspace.stats import SequentialPlan, sequential_null


@pytest.fixture(scope="module")
def pair(tiny_models):
    model = tiny_models["llama"]
    return model, model.untrained(1)


def _context(model, twin, claim, **kw):
    return RunContext(model=model, twin=twin, claim=claim, n_permutations=99, n_bootstrap=200, **kw)


def _primary(output):
    (primary,) = [r for r in output.results if r.extra.get("role") == "primary"]
    return primary


# ------------------------------------------------------------------------------------------------------ N2
def _planted_narrowing(items: n2.Items, delta: float, seed: int) -> n2.Measured:
    """Answers lifted by 1-3 nats; the own query's zero-shot ranking places them ``delta`` orders higher."""
    rng = np.random.default_rng(seed)
    n = items.n
    L = np.full((n, n), np.nan)
    for t in np.unique(items.task):
        members = np.flatnonzero(items.task == t)
        block = rng.normal(-2.0, 0.5, size=(members.size, members.size)) + delta * np.eye(members.size)
        L[np.ix_(members, members)] = block
    logp0 = rng.normal(-6.0, 1.0, n)
    logpk = logp0 + rng.uniform(1.0, 3.0, n)
    ranks = np.maximum(1, (10 ** -np.diag(L)).astype(np.int64))
    return n2.Measured(logp0, logpk, logp0 + 0.5, ranks, np.ones(n, dtype=np.int64), ranks, L)


N2_PARAMS = {"tasks": ["country_capital", "present_past"], "n_items": 16, "n_arbitrary": 16, "shots": 1}


def test_n2_planted_narrowing_is_found_and_beats_the_twin(pair, monkeypatch):
    model, twin = pair
    delta = 1.0

    def fake(m, items):
        return _planted_narrowing(items, delta if m is model else 0.0, seed=1 if m is model else 2)

    monkeypatch.setattr(n2, "measure_narrowing", fake)
    kind = registry()["icl_narrowing"]
    out = kind.run(_context(model, twin, "N2"), kind.Params(**N2_PARAMS))
    primary = _primary(out)
    truth = delta * (1 - 1 / 16)
    assert primary.p_value < 0.02 and "not_testable" not in primary.extra
    assert primary.ci_low < truth < primary.ci_high and primary.effect_size > 0.6
    twin_test = next(r for r in out.results if r.control == "untrained")
    assert abs(twin_test.effect_size) < 0.3
    assert set(out.replicates) >= {primary.key, primary.key.counterpart("untrained")}
    diff = out.replicates[primary.key] - out.replicates[primary.key.counterpart("untrained")][0]
    assert np.quantile(diff, 0.025) > 0.3


def test_n2_null_arrays_and_the_random_tiny_model_are_not_significant(pair, monkeypatch):
    model, twin = pair
    kind = registry()["icl_narrowing"]
    real = kind.run(_context(model, twin, "N2"), kind.Params(**{**N2_PARAMS, "n_items": 6, "n_arbitrary": 6}))
    primary = _primary(real)
    # a random network: either it lifts nothing (then the design says so) or the effect is not significant
    assert "not_testable" in primary.extra or primary.p_value > 0.01
    monkeypatch.setattr(n2, "measure_narrowing", lambda m, items: _planted_narrowing(items, 0.0, seed=3))
    null = _primary(kind.run(_context(model, twin, "N2"), kind.Params(**N2_PARAMS)))
    assert null.p_value > 0.05 and null.ci_low < 0 < null.ci_high


def test_n2_null_seed_shuffles_answers_within_task_and_builds_the_same_queries():
    params = n2.IclNarrowingParams(**N2_PARAMS)
    real, shuffled = n2.build_items(params, 0), n2.build_items(params, 0, null_seed=5)
    assert real.queries == shuffled.queries and real.answers != shuffled.answers
    for t in range(len(real.tasks)):
        assert set(np.asarray(real.answers)[real.task == t]) != set() and (real.task == shuffled.task).all()
    arbitrary = real.tasks.index("arbitrary")
    for i in np.flatnonzero(real.task == arbitrary):  # the arbitrary query's own pair is among its demonstrations
        assert (real.queries[i], real.answers[i]) in real.demos[i]


def test_within_task_permutations_stay_within_task():
    task = np.repeat([0, 1, 2], [3, 4, 5])
    perms = n2.within_task_permutations(task, 50, seed=0, offset=0)
    assert (task[perms] == task[None, :]).all()
    assert np.array_equal(np.sort(perms, axis=1), np.tile(np.arange(12), (50, 1)))
    assert np.array_equal(perms, n2.within_task_permutations(task, 50, seed=0, offset=0))


# ------------------------------------------------------------------------------------------------------ N3
def _planted_gain(prompts: fv.Prompts, boost: float, seed: int, n_random: int) -> fv.Measured:
    rng = np.random.default_rng(seed)
    n, t = prompts.test_task.size, len(prompts.tasks)
    gain = rng.normal(0.0, 0.5, size=(n, t))
    gain[np.arange(n), prompts.test_task] += boost
    return fv.Measured(gain, rng.normal(0.0, 0.5, size=(n, n_random)), np.ones(t))


FV_PARAMS = {"tasks": ["country_capital", "country_currency", "present_past", "singular_plural", "capitalize",
                       "next_item"], "layers": [1], "shots": 1, "n_icl": 2, "n_test": 8, "n_random": 4}


def test_n3_planted_function_vector_is_found_and_beats_placebos_and_twin(pair, monkeypatch):
    model, twin = pair

    def fake(m, prompts, site, params, seed):
        return _planted_gain(prompts, 1.0 if m is model else 0.0, 1 if m is model else 2, params.n_random)

    monkeypatch.setattr(fv, "measure_vectors", fake)
    kind = registry()["function_vector"]
    out = kind.run(_context(model, twin, "N3"), kind.Params(**FV_PARAMS))
    primary = _primary(out)
    truth = 1.0 * (1 - 1 / 6)
    assert primary.p_value < 0.01 and primary.ci_low < truth < primary.ci_high
    random = next(r for r in out.results if r.control == "random_direction")
    assert random.effect_size > 0.5
    diff = out.replicates[primary.key] - out.replicates[primary.key.counterpart("untrained")][0]
    assert np.quantile(diff, 0.025) > 0.05


def test_n3_null_gains_and_the_random_tiny_model_are_not_significant(pair, monkeypatch):
    model, twin = pair
    kind = registry()["function_vector"]
    small = {**FV_PARAMS, "tasks": FV_PARAMS["tasks"][:4], "n_test": 3, "n_random": 2}
    real = _primary(kind.run(_context(model, twin, "N3"), kind.Params(**small)))
    assert real.p_value > 0.01 and abs(real.effect_size) < 0.5
    monkeypatch.setattr(fv, "measure_vectors", lambda m, p, s, params, seed: _planted_gain(p, 0.0, 4, 4))
    null = _primary(kind.run(_context(model, twin, "N3"), kind.Params(**FV_PARAMS)))
    assert null.p_value > 0.05 and null.ci_low < 0 < null.ci_high


def test_n3_null_seed_vectors_come_from_a_pool_of_all_tasks():
    params = fv.FunctionVectorParams(**FV_PARAMS)
    real, null = fv.build_prompts(params, 0), fv.build_prompts(params, 0, null_seed=3)
    assert real.test_prompts == null.test_prompts and real.icl != null.icl
    with pytest.raises(Exception, match="at least 3 tasks"):
        fv.build_prompts(fv.FunctionVectorParams(**{**FV_PARAMS, "tasks": ["country_capital", "present_past"]}), 0)


# ------------------------------------------------------------------------------------------- calibration
def _n2_once(seed: int, delta: float) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    task = np.repeat([0, 1, 2], 12)
    n = task.size
    L = np.full((n, n), np.nan)
    for t in range(3):
        m = np.flatnonzero(task == t)
        L[np.ix_(m, m)] = rng.normal(-2.0, 0.5, size=(m.size, m.size)) + delta * np.eye(m.size)
    w = rng.uniform(0.0, 2.0, n)
    d = n2.own_minus_mean(L, task)
    rows = lambda perm: n2.narrowing_statistic(w, L, perm)[None, :]  # noqa: E731
    out = sequential_null(lambda o, c: rows(n2.within_task_permutations(task, c, seed, o)),
                          rows(np.arange(n)[None, :])[:, 0], SequentialPlan.fixed(199))
    effect = float(out.observed[0] - out.null_mean[0])
    boot = n2.effect_replicates(w, d, _icl.stratified_resamples(task, 200, seed))
    low, high = _icl.percentile_ci(_icl.matched_replicates(effect, boot, out.null[0], stratum_size=12))
    return float(out.p_value[0]), low, high


def _n3_once(seed: int, boost: float) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(6), 8)
    gain = rng.normal(0.0, 0.5, size=(task.size, 6))
    gain[np.arange(task.size), task] += boost
    out = sequential_null(lambda o, c: fv.permuted_gain(gain, task, fv.task_permutations(6, c, seed, o))[None, :],
                          fv.permuted_gain(gain, task, np.arange(6)[None, :]), SequentialPlan.fixed(199))
    effect = float(out.observed[0] - out.null_mean[0])
    boot = fv.two_level_replicates(gain, task, _icl.stratified_resamples(task, 200, seed), seed)
    low, high = _icl.percentile_ci(_icl.matched_replicates(effect, boot, out.null[0], stratum_size=8, widen=False))
    return float(out.p_value[0]), low, high


@pytest.mark.parametrize("once", [_n2_once, _n3_once])
def test_calibration_on_pure_noise_and_planted_truth(once):
    """Pure noise: the 95% CI covers 0 and p < 0.05 at about the nominal rates (200 data sets: 95% +- 3.5%,
    5% +- 3.5% allows for the Monte Carlo error of 200 draws); planted: the CI covers the truth."""
    noise = np.array([once(s, 0.0) for s in range(200)])
    covers = np.mean((noise[:, 1] <= 0) & (0 <= noise[:, 2]))
    rejects = np.mean(noise[:, 0] < 0.05)
    assert 0.915 <= covers <= 0.99, covers
    assert 0.015 <= rejects <= 0.085, rejects
    delta = 0.6
    truth = delta * (1 - 1 / (12 if once is _n2_once else 6))
    planted = np.array([once(1000 + s, delta) for s in range(200)])
    assert 0.9 <= np.mean((planted[:, 1] <= truth) & (truth <= planted[:, 2])) <= 0.99


def test_length_buckets_give_the_numbers_of_one_padded_batch(tiny_models, monkeypatch):  # type: ignore[no-untyped-def]
    """Prompts of very different lengths, run in length-sorted buckets of 2, equal one left-padded batch (and
    come back in the caller's order), with and without added vectors."""
    model = tiny_models["llama"]
    prompts = ["a b c d e f g h i j k l", "x", "one two", "p q r s t u v w x y z a b c", "hello", "m n o"]
    vectors = np.random.default_rng(0).standard_normal((2, model.d_model))
    buckets = _icl.length_buckets(model, prompts, size=2)
    assert [len(b) for b in buckets] == [2, 2, 2] and sorted(np.concatenate(buckets)) == list(range(6))
    original = _icl.length_buckets
    monkeypatch.setattr(_icl, "length_buckets", lambda m, p: original(m, p, size=2))
    bucketed = _icl.next_token_logprobs(model, prompts, vectors=vectors, site="layer.0")
    full = _icl.next_token_logprobs(model, prompts, target_ids=[1, 5])
    monkeypatch.setattr(_icl, "length_buckets", lambda m, p: [np.arange(len(p))])
    np.testing.assert_allclose(bucketed, _icl.next_token_logprobs(model, prompts, vectors=vectors, site="layer.0"),
                               atol=2e-5)
    np.testing.assert_allclose(full, _icl.next_token_logprobs(model, prompts, target_ids=[1, 5]), atol=2e-5)
    assert bucketed.shape[:2] == (2, len(prompts)) and full.shape == (1, len(prompts), 2)
