"""Grouped bootstrap and effect sizes, checked against known truth."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import (
    bootstrap_cv_scores,
    group_counts,
    grouped_bootstrap,
    percentile_interval,
)
from conceptspace.stats._effects import auroc, cohens_d, project, score_minus_chance, selectivity
from conceptspace.stats._scoring import score_one


def test_group_counts_resample_whole_groups():
    groups = np.repeat(["a", "b", "c", "d"], [1, 2, 3, 4])
    counts = group_counts(groups, 10, 200, seed=0)
    for g in "abcd":
        rows = counts[:, groups == g]
        assert np.all(rows == rows[:, :1])  # every row of a group drawn together
    per_group = np.stack([counts[:, groups == g][:, 0] for g in "abcd"], 1)
    np.testing.assert_array_equal(per_group.sum(1), 4)  # G draws per replicate
    np.testing.assert_array_equal(group_counts(groups, 10, 5, seed=1), group_counts(groups, 10, 5, seed=1))


def test_grouped_ci_covers_the_truth_where_row_bootstrap_does_not():
    """Group-correlated data: the grouped CI of a mean is near nominal, the row-level one far too narrow."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 10)
    covered_grouped = covered_rows = 0
    sims = 60
    for _ in range(sims):
        values = rng.standard_normal(20)[groups] + 0.3 * rng.standard_normal(200)
        draws = grouped_bootstrap(lambda idx, v=values: v[idx].mean(), groups, 200, n_bootstrap=300)
        lo, hi = percentile_interval(draws)
        covered_grouped += lo <= 0 <= hi
        lo, hi = percentile_interval(grouped_bootstrap(lambda idx, v=values: v[idx].mean(), None, 200, n_bootstrap=300))
        covered_rows += lo <= 0 <= hi
    assert covered_grouped / sims >= 0.85
    assert covered_rows / sims <= 0.6


@pytest.mark.parametrize("scoring", ["accuracy", "balanced_accuracy", "roc_auc", "r2", "spearman"])
def test_weighted_bootstrap_matches_explicit_resampling(scoring):
    rng = np.random.default_rng(1)
    n = 60
    groups = np.repeat(np.arange(20), 3)
    fold_id = np.repeat(np.arange(20) % 3, 3)
    if scoring in ("r2", "spearman"):
        truth = rng.standard_normal(n)
        outputs = truth[None] + rng.standard_normal((2, n))
    elif scoring == "roc_auc":
        truth = rng.integers(0, 2, n)
        outputs = truth[None] + rng.standard_normal((2, n))
    else:
        truth = rng.integers(0, 3, n)
        outputs = np.where(rng.random((2, n)) < 0.6, truth[None], rng.integers(0, 3, (2, n)))
    reps = bootstrap_cv_scores(scoring, truth, outputs, fold_id, groups, n_classes=3, n_bootstrap=6, seed=4)
    counts = group_counts(groups, n, 6, seed=4).astype(int)
    for b in range(6):
        idx = np.repeat(np.arange(n), counts[b])
        for layer in range(2):
            per_fold = []
            for f in range(3):
                sel = idx[fold_id[idx] == f]
                if sel.size and (scoring != "roc_auc" or np.unique(truth[sel]).size == 2):
                    per_fold.append(score_one(scoring, truth[sel], outputs[layer][sel]))
            assert reps[layer, b] == pytest.approx(np.mean(per_fold), rel=1e-9)


def test_effect_sizes_against_known_values():
    y = np.array([0, 0, 0, 1, 1, 1])
    proj = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 4.0])
    assert cohens_d(proj, y) == pytest.approx(2.0)  # mean diff 2, pooled SD 1
    assert auroc(y, proj) == pytest.approx((8 + 0.5) / 9)
    assert score_minus_chance(0.8, "balanced_accuracy", 4) == pytest.approx(0.55)
    assert score_minus_chance(0.7, "roc_auc", 2) == pytest.approx(0.2)
    assert selectivity(0.9, 0.6) == pytest.approx(0.3)
    X = np.array([[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(project(X, [0.0, 2.0]), [4.0, 1.0])
    with pytest.raises(InvalidInputError, match="two classes"):
        auroc(np.zeros(3), [1, 2, 3])
    with pytest.raises(InvalidInputError, match="zero vector"):
        project(X, [0.0, 0.0])


def test_large_samples_give_large_effects_their_due():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 5000)
    proj = rng.standard_normal(10_000) + 0.5 * y
    assert cohens_d(proj, y) == pytest.approx(0.5, abs=0.05)
    assert auroc(y, proj) == pytest.approx(0.638, abs=0.02)  # Phi(d / sqrt 2)
