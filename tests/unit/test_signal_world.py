"""The signal world's interval for a regression probe's R^2 (``_signal_world``): its draws against refitting each
target set, its pure-noise case against the permutation null, its quantiles, and when the family uses it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kurtosis

from conceptspace.analyses.probes import RidgeProbe, RidgeRegressionProbe
from conceptspace.analyses.probes._cv import cross_validate_layers
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.analyses.probes._family import Arm, probe_family
from conceptspace.analyses.probes._nested import NestedRidgeRegressionProbe, nested_cross_validate
from conceptspace.analyses.probes._signal_world import (
    MAX_EXCESS_KURTOSIS,
    MIN_GROUPS,
    MIN_GROUPS_FIXED_PENALTY,
    PairedWorld,
    SignalWorld,
    group_target_kurtosis,
    signal_share_spread,
    signal_world,
    split_targets,
    target_scores,
    world_targets,
    world_unsuited,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats import SequentialPlan
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._permutation import draw_permutations
from tests.unit.test_probe_intervals import planted, planted_target


class _RefittedRidgeRegression(RidgeRegressionProbe):
    """The ridge regression probe without its label-linear declaration: forces the refitting path."""

    def label_linear_spec(self, n_classes):  # type: ignore[no-untyped-def,override]
        return None


@pytest.mark.parametrize(("probe", "validate"), [(RidgeRegressionProbe(), cross_validate_layers),
                                                 (_RefittedRidgeRegression(), cross_validate_layers),
                                                 (NestedRidgeRegressionProbe(), nested_cross_validate)])
def test_each_draw_is_the_cv_score_of_its_targets_on_the_task_folds(probe, validate):
    """The engine scores B target sets laid end to end; each must be exactly the task's CV (same outer folds, and for
    the nested probe the same inner folds and penalty grid) run on that target set."""
    X, y, groups = planted_target(3, 30, slope=1.5)
    cv = validate(probe, X, y, groups, seed=3)
    targets, slope = world_targets(y, cv.outputs[0], groups, 5, seed=3, scheme="group")
    assert slope > 0  # planted signal: the predictions carry part of the targets
    scores = target_scores(probe, X, y, targets, groups, folds=list(cv.folds), scoring="r2", seed=3)[0]
    expected = [validate(probe, X, t, groups, seed=3, folds=list(cv.folds)).scores[0] for t in targets]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)


def test_targets_hold_the_signal_and_exchange_the_rest_by_whole_groups():
    """Targets constant within groups (the null moves whole groups): each world target set is constant within
    groups too, the group's mean signal plus another group's mean rest; with the identity it gives back y."""
    X, y, groups = planted_target(0, 30)
    predictions = cross_validate_layers(RidgeRegressionProbe(), X, y, groups, seed=0).outputs[0]
    targets, slope = world_targets(y, predictions, groups, 20, seed=0, scheme="group")
    signal = slope * (predictions - predictions.mean())
    group_signal = np.array([signal[groups == g].mean() for g in range(30)])
    group_rest = y[::3] - y.mean() - group_signal
    perms, _ = draw_permutations(y, groups, 20, seed=[0, 7_919_000], scheme="group")
    source = groups[perms]  # (B, n): the group whose rest each item receives
    np.testing.assert_allclose(targets, y.mean() + group_signal[groups] + group_rest[source])
    np.testing.assert_allclose(y, y.mean() + group_signal[groups] + group_rest[groups])
    assert all(np.ptp(targets[:, groups == g], axis=1).max() < 1e-12 for g in range(30))
    np.testing.assert_allclose(targets.mean(axis=1), y.mean())


def test_targets_varying_within_groups_exchange_the_rest_item_by_item():
    X, y, groups = planted_target(0, 30)
    y = y + 0.1 * np.random.default_rng(1).standard_normal(y.size)
    predictions = cross_validate_layers(RidgeRegressionProbe(), X, y, groups, seed=0).outputs[0]
    targets, slope = world_targets(y, predictions, groups, 20, seed=0, scheme="within")
    signal = slope * (predictions - predictions.mean())
    perms, _ = draw_permutations(y, groups, 20, seed=[0, 7_919_000], scheme="within")
    np.testing.assert_allclose(targets, y.mean() + signal + (y - y.mean() - signal)[perms])


def test_predictions_that_carry_nothing_make_the_world_the_permutation_null():
    """With slope 0 (predictions anti-correlated with the targets), every world target set is a permutation of the
    targets, so the world's draws are permutation-null draws and the interval is the permutation test inverted."""
    _, y, groups = planted_target(1, 30, slope=0.0)
    anti = -(y - y.mean())
    targets, slope = world_targets(y, anti, groups, 30, seed=1, scheme="group")
    assert slope == 0.0
    perms, _ = draw_permutations(y, groups, 30, seed=[1, 7_919_000], scheme="group")
    np.testing.assert_allclose(targets, y[perms])


def test_the_interval_is_the_basic_one_from_the_draws_quantiles():
    scores = np.linspace(-1.0, 1.0, 401) ** 3 + 0.2  # skewed draws, mean 0.2
    world = SignalWorld(scores=scores, design=np.full(401, 0.4), slope=0.5)  # a fixed share adds no spread
    q_low, q_high = np.quantile(scores - scores.mean(), [0.025, 0.975])
    assert world.interval(0.3, 0.95) == pytest.approx((0.3 - q_high, 0.3 - q_low))
    low, high = world.interval(0.3, 0.5)
    assert high - low < np.subtract(*world.interval(0.3, 0.95)[::-1])
    design = np.random.default_rng(0).normal(0.4, 0.2, 401)  # a spread share widens it, its deviations added
    wider = SignalWorld(scores=scores, design=design, slope=0.5)
    assert np.std(wider.deviations) == pytest.approx(np.hypot(np.std(scores), np.std(design)), rel=0.1)
    assert np.subtract(*wider.interval(0.3, 0.95)[::-1]) > np.subtract(*world.interval(0.3, 0.95)[::-1])
    assert wider.interval(0.3, 0.95) == wider.interval(0.3, 0.95)  # the pairing of the two is seeded


def test_the_signal_share_spread_is_a_grouped_bootstrap_of_the_realized_share():
    X, y, groups = planted_target(6, 40)
    predictions = cross_validate_layers(RidgeRegressionProbe(), X, y, groups, seed=6).outputs[0]
    split = split_targets(y, predictions, groups, scheme="group")
    share = signal_share_spread(split, groups, 50, seed=3)
    weights = group_counts(groups, y.size, 50, 3)

    def variance(values: np.ndarray, w: np.ndarray) -> float:
        return float(np.sum(w * (values - np.sum(w * values)) ** 2))

    for b in (0, 17, 49):
        w = weights[b] / weights[b].sum()
        signal, rest = variance(split.signal, w), variance(split.rest, w)
        assert share[b] == pytest.approx(signal / (signal + rest))
    assert 0 < share.min() < share.max() < 1
    nothing = split_targets(y, -(y - y.mean()), groups, scheme="group")
    assert nothing.slope == 0 and np.all(signal_share_spread(nothing, groups, 20, seed=3) == 0)


def test_kurtosis_of_the_group_targets_and_when_the_world_is_unsuited():
    _, y, groups = planted_target(2, 120)
    means = y[::3]
    assert group_target_kurtosis(y, groups) == pytest.approx(kurtosis(means, fisher=True, bias=True))
    assert world_unsuited(y, groups) is None
    few_y, few_groups = y[: 3 * (MIN_GROUPS - 1)], groups[: 3 * (MIN_GROUPS - 1)]
    assert "fewer than 100 for a probe that selects its penalty" in world_unsuited(few_y, few_groups)
    assert world_unsuited(few_y, few_groups, selects_penalty=False) is None  # a fixed penalty held at 40 groups
    fewer_y, fewer_groups = y[: 3 * (MIN_GROUPS_FIXED_PENALTY - 1)], groups[: 3 * (MIN_GROUPS_FIXED_PENALTY - 1)]
    assert "fewer than 40 for a fixed-penalty probe" in world_unsuited(fewer_y, fewer_groups, selects_penalty=False)
    heavy = np.random.default_rng(0).standard_t(2, 120)[groups]
    assert group_target_kurtosis(heavy, groups) > MAX_EXCESS_KURTOSIS
    assert "heavy-tailed" in world_unsuited(heavy, groups)


def test_bad_input_is_refused_with_what_to_fix():
    X, y, groups = planted_target(0, 30)
    with pytest.raises(InvalidInputError, match="finite"):
        world_targets(y, np.where(np.arange(y.size) == 0, np.nan, y), groups, 5, seed=0, scheme="group")
    with pytest.raises(InvalidInputError, match="one target and one prediction"):
        world_targets(y, y[:-1], groups, 5, seed=0, scheme="group")
    with pytest.raises(InvalidInputError, match="one out-of-fold prediction"):
        signal_world(RidgeRegressionProbe(), X, y, y[None, :-3], groups, folds=[], scoring="r2", seed=0,
                     scheme="group")


def test_the_family_reports_the_world_interval_where_the_targets_suit_it():
    X, y, groups = planted_target(4, MIN_GROUPS)
    r = probe_layers(NestedRidgeRegressionProbe(), X, y, groups, dataset="toy", n_permutations=49, n_bootstrap=50,
                     seed=4)[0][0]
    assert r.extra["ci_method"] == "signal_world"
    assert r.extra["world_draws"] == 400 and r.extra["world_slope"] > 0
    assert "ci_calibration" not in r.extra and len(r.extra["bootstrap_ci"]) == 2
    assert r.ci_low < r.effect_size < r.ci_high
    again = probe_layers(NestedRidgeRegressionProbe(), X, y, groups, dataset="toy", n_permutations=49,
                         n_bootstrap=50, seed=4)[0][0]
    assert (again.ci_low, again.ci_high) == (r.ci_low, r.ci_high)  # seeded


def test_the_family_keeps_the_bootstrap_and_says_why_where_the_world_is_unsuited():
    X, _, groups = planted_target(5, MIN_GROUPS)
    heavy = np.random.default_rng(5).standard_t(2, MIN_GROUPS)[groups]
    r = probe_layers(RidgeRegressionProbe(), X, heavy, groups, dataset="toy", n_permutations=19, n_bootstrap=30,
                     seed=5)[0][0]
    assert r.extra["ci_method"] == "bootstrap"
    assert "heavy-tailed" in r.extra["signal_world_skipped"] and "R^2" in r.extra["ci_calibration"]
    forced = probe_layers(RidgeRegressionProbe(), X, heavy, groups, dataset="toy", n_permutations=19,
                          n_bootstrap=30, seed=5, score_interval="signal_world")[0][0]
    assert forced.extra["ci_method"] == "signal_world"
    X50, y50, g50 = planted_target(5, 50)  # 50 groups: enough for a fixed penalty, not for a selected one
    fixed = probe_layers(RidgeRegressionProbe(), X50, y50, g50, dataset="toy", n_permutations=19, n_bootstrap=30,
                         seed=5)[0][0]
    selected = probe_layers(NestedRidgeRegressionProbe(), X50, y50, g50, dataset="toy", n_permutations=19,
                            n_bootstrap=30, seed=5)[0][0]
    assert fixed.extra["ci_method"] == "signal_world" and selected.extra["ci_method"] == "bootstrap"
    assert "fewer than 100" in selected.extra["signal_world_skipped"]
    Xc, yc, gc = planted(0, 20)
    with pytest.raises(InvalidInputError, match="single-target R\\^2"):
        probe_layers(RidgeProbe(), Xc, yc, gc, dataset="toy", n_permutations=19, n_bootstrap=30,
                     score_interval="signal_world")


# ------------------------------------------------------------------------------ the paired world ("beats the control")
def _family(X, y, groups, controls, *, seed=0, probe=None, **kwargs):
    """A one-site R^2 family: the task and ``controls`` [(name, X, y, twin seed)], on shared folds and draws."""
    sites = ("layer.0",)
    arms = [Arm(None, X, y, sites)] + [Arm(name, Xc, yc, sites, seed=s) for name, Xc, yc, s in controls]
    family = probe_family(probe or RidgeRegressionProbe(), arms, groups, dataset="toy", primary="layer.0",
                          plan=SequentialPlan.fixed(49), n_bootstrap=30, seed=seed, **kwargs)
    return family, next(r for r in family.results if r.key.control is None)


def test_a_control_with_the_task_s_features_differs_by_nothing_in_every_draw():
    """Same features and targets: the two worlds are drawn on the same permutations and bootstrap weights, so each
    draw's difference and each share difference is 0, and so is the interval's width."""
    X, y, groups = planted_target(11, 60)
    _, task = _family(X, y, groups, [("untrained", X.copy(), y, 0)])
    paired = task.extra["paired"]["untrained"]
    assert paired["method"] == "signal_world" and paired["world_draws"] == 400 and paired["n_seeds"] == 1
    assert paired["difference"] == pytest.approx(0.0, abs=1e-12)
    assert paired["ci_low"] == pytest.approx(0.0, abs=1e-9) and paired["ci_high"] == pytest.approx(0.0, abs=1e-9)


def test_the_paired_world_shares_the_task_s_permutations():
    """A control whose features are the task's plus a little noise scores almost as the task in every draw, so the
    paired draws spread far less than one world does; worlds drawn with other permutations would spread like
    two independent worlds (sqrt(2) times one)."""
    X, y, groups = planted_target(12, 60)
    near = X + 0.05 * np.random.default_rng(3).standard_normal(X.shape)
    family, task = _family(X, y, groups, [("untrained", near, y, 0)])
    mine = family.arms[0]
    world, (control,) = mine.worlds[0], mine.paired_worlds["untrained"][0]
    paired = PairedWorld(task=world, controls=(control,))
    assert np.std(world.scores - control.scores) < 0.2 * np.std(world.scores)
    other = signal_world(RidgeRegressionProbe(), near, y, family.arms[1].cv.outputs, groups,
                         folds=list(mine.cv.folds), scoring="r2", seed=99, scheme="group")[0]
    assert np.std(world.scores - other.scores) > 1.2 * np.std(world.scores)  # other permutations: no pairing
    low, high = paired.interval(task.extra["paired"]["untrained"]["difference"], 0.95)
    assert (low, high) == (task.extra["paired"]["untrained"]["ci_low"], task.extra["paired"]["untrained"]["ci_high"])
    # the draws' difference is each arm's own world: the control's equals its world drawn on its own
    alone = signal_world(RidgeRegressionProbe(), near, y, family.arms[1].cv.outputs, groups,
                         folds=list(mine.cv.folds), scoring="r2", seed=0, scheme="group")[0]
    assert np.allclose(alone.scores, control.scores) and np.allclose(alone.design, control.design)


def test_twin_seeds_are_one_contrast_with_their_spread_added():
    X, y, groups = planted_target(13, 60)
    twins = [("untrained", planted_target(100 + s, 60, slope=0.0)[0], y, s) for s in range(3)]
    family, task = _family(X, y, groups, twins)
    paired = task.extra["paired"]["untrained"]
    twin_rows = [a for a in family.arms if a.arm.control == "untrained"]
    scores = np.array([a.cv.scores[0] for a in twin_rows])
    assert paired["n_seeds"] == 3 and paired["seed_sd"] == pytest.approx(np.std(scores, ddof=1))
    nulls = [family.null.null[a.rows][0].mean() for a in twin_rows]
    control_effect = float(np.mean(scores - np.array(nulls)))
    assert paired["difference"] == pytest.approx(task.effect_size - control_effect)
    mine = family.arms[0]
    spread = PairedWorld(task=mine.worlds[0], controls=mine.paired_worlds["untrained"][0], seed_sd=0.2)
    still = PairedWorld(task=mine.worlds[0], controls=mine.paired_worlds["untrained"][0])
    assert np.var(spread.deviations) == pytest.approx(np.var(still.deviations) + 0.2**2 / 3, rel=0.25)


def test_no_paired_world_where_the_sides_share_no_targets_or_the_task_has_no_world():
    X, y, groups = planted_target(14, 60)
    other = np.random.default_rng(1).permutation(y)
    _, task = _family(X, y, groups, [("untrained", planted_target(15, 60)[0], y, 0), ("control_task", X, other, 0)])
    assert task.extra["paired"]["untrained"]["method"] == "signal_world"
    assert "control_task" not in task.extra.get("paired", {})
    assert "other targets" in task.extra["paired_signal_world_skipped"]["control_task"]
    X30, y30, g30 = planted_target(14, 30)  # below the fixed penalty's 40 groups: no world, so no paired world
    _, few = _family(X30, y30, g30, [("untrained", planted_target(15, 30)[0], y30, 0)])
    assert few.extra["ci_method"] == "bootstrap" and "paired" not in few.extra
    _, asked = _family(X, y, groups, [("untrained", planted_target(15, 60)[0], y, 0)], paired_interval="bootstrap")
    assert "paired" not in asked.extra
