"""Sequential Monte Carlo p-values (Besag-Clifford style with a stated error bound) and paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.errors import InvalidInputError
from conceptspace.stats import (
    SequentialPlan,
    exceedances,
    mc_interval,
    null_extra,
    paired_difference,
    seed_mean_replicates,
    sequential_null,
)

THRESHOLDS = tuple(0.05 / (2 * j) for j in range(1, 8))


def _normal_draws(seed: int, rows: int = 1):
    def draw(offset: int, count: int) -> np.ndarray:
        # numbered draws: draw i depends only on (seed, i), so batch sizes never change the numbers
        return np.stack([np.random.default_rng([seed, offset + i]).normal(size=rows) for i in range(count)], axis=1)
    return draw


def test_a_far_tail_statistic_draws_until_its_interval_clears_the_smallest_threshold():
    plan = SequentialPlan(start=99, maximum=50_000, thresholds=THRESHOLDS)
    out = sequential_null(_normal_draws(0), [6.0], plan)
    assert out.settled
    assert out.mc_high[0] < min(THRESHOLDS)  # the decision no longer hinges on Monte Carlo error
    assert out.n_drawn > 99 and out.p_value[0] == pytest.approx(1 / (out.n_drawn + 1))


def test_a_null_statistic_stops_at_the_first_batch():
    plan = SequentialPlan(start=199, maximum=50_000, thresholds=THRESHOLDS)
    out = sequential_null(_normal_draws(1), [0.0], plan)
    assert out.settled and out.n_drawn == 199
    assert out.mc_low[0] > max(THRESHOLDS)


def test_the_maximum_caps_the_draws_and_says_the_decision_is_unsettled():
    plan = SequentialPlan(start=50, maximum=200, thresholds=THRESHOLDS)
    out = sequential_null(_normal_draws(2), [6.0], plan)
    assert out.n_drawn == 200 and not out.settled


def test_numbered_draws_make_a_longer_run_extend_a_shorter_one():
    short = sequential_null(_normal_draws(3), [6.0], SequentialPlan.fixed(100))
    long = sequential_null(_normal_draws(3), [6.0], SequentialPlan(start=100, maximum=400, thresholds=THRESHOLDS))
    np.testing.assert_array_equal(long.null[:, :100], short.null)


def test_sequential_p_values_are_valid_under_the_null():
    """Under the null, P(p <= 0.05) <= 0.05 (+ Monte Carlo slack) whatever the stopping rule did."""
    plan = SequentialPlan(start=39, maximum=2000, thresholds=(0.05,))
    ps = []
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        observed = rng.normal()
        ps.append(sequential_null(_normal_draws(seed), [observed], plan).p_value[0])
    rate = np.mean(np.array(ps) <= 0.05)
    assert 0.01 <= rate <= 0.085


def test_mc_interval_matches_clopper_pearson_edges():
    low, high = mc_interval(np.array([0, 5]), 100, 0.95)
    assert low[0] == 0.0 and high[0] == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-6)
    assert 0.01 < low[1] < 0.05 < high[1] < 0.12


def test_exceedances_count_ties_as_exceeding():
    assert exceedances(np.array([1.0]), np.array([[1.0, 0.5, 2.0]]))[0] == 2


def test_null_extra_reports_what_the_report_reads():
    out = sequential_null(_normal_draws(4), [0.0], SequentialPlan.fixed(50))
    extra = null_extra(out)
    assert extra["n_permutations"] == 50 and extra["p_mc_low"] <= out.p_value[0] <= extra["p_mc_high"] + 0.05
    assert extra["null_sd"] == pytest.approx(np.std(out.null[0], ddof=1))


def test_a_bad_draw_shape_and_plan_are_refused():
    with pytest.raises(InvalidInputError, match="shape"):
        sequential_null(lambda o, c: np.zeros((3, c)), [0.0], SequentialPlan.fixed(5))
    with pytest.raises(InvalidInputError, match="start"):
        SequentialPlan(start=10, maximum=5)


def test_paired_difference_sees_a_shared_shift_that_separate_intervals_miss():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1.0, 2000)  # item noise common to test and control
    real, control = 0.3 + shared, shared + rng.normal(0, 0.05, 2000)
    out = paired_difference(real, control)
    assert out["ci_low"] > 0.15  # paired: the shared noise cancels
    assert np.quantile(real, 0.025) < np.quantile(control, 0.975)  # the separate intervals overlap


def test_seed_level_spread_widens_the_paired_interval():
    rng = np.random.default_rng(1)
    items = rng.normal(0, 0.05, 1000)
    one_seed = paired_difference(0.5 + items, items[None, :] + 0.0)
    seeds = np.stack([items + offset for offset in (-0.3, 0.0, 0.3)])
    three = paired_difference(0.5 + items, seeds)
    assert (three["ci_high"] - three["ci_low"]) > 3 * (one_seed["ci_high"] - one_seed["ci_low"])
    assert seed_mean_replicates(seeds).shape == (1000,)
