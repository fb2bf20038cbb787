"""Small data must not spray library warnings: the conditions behind them are handled and reported instead.

Each test runs the call that used to warn under ``warnings.simplefilter("error")`` and shows, as a control, that
the condition which produced the warning is really present in the data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from conceptspace.analyses.probes._estimators import LogisticProbe, RidgeProbe
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.stats._bootstrap import bootstrap_cv_scores, group_counts


def _small_class_data(n_minority: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20, dtype=int), np.ones(n_minority, dtype=int)]
    X = rng.normal(size=(1, y.size, 5))
    X[0, :, 0] += 2.0 * y
    return X, y


def test_the_splitter_warns_on_this_data():
    _, y = _small_class_data()
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    with pytest.warns(UserWarning, match="least populated class"):
        list(splitter.split(np.zeros((y.size, 1)), y, np.arange(y.size)))


@pytest.mark.parametrize("probe", [RidgeProbe(), LogisticProbe()])
def test_probe_layers_with_a_class_smaller_than_n_splits_reports_instead_of_warning(probe):
    X, y = _small_class_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results, cv = probe_layers(probe, X, y, dataset="small", n_splits=5, n_permutations=19, n_bootstrap=200)
    # 3 minority items over 5 folds: exactly 2 test folds cannot hold the minority class.
    assert cv.test_folds_missing_class == 2
    assert results[0].extra["test_folds_missing_a_class"] == 2
    assert np.isfinite(results[0].statistic) and results[0].ci_low <= results[0].ci_high


def test_no_missing_class_no_extra_entry():
    X, y = _small_class_data(n_minority=10)
    results, cv = probe_layers(RidgeProbe(), X, y, dataset="small", n_permutations=9, n_bootstrap=50)
    assert cv.test_folds_missing_class == 0 and "test_folds_missing_a_class" not in results[0].extra


def test_bootstrap_with_replicates_that_draw_no_item_of_a_fold_does_not_warn():
    n, n_bootstrap = 10, 500
    truth = np.array([0, 1] * 5)
    outputs = np.array([[0, 1, 1, 1, 0, 0, 0, 1, 1, 1]])
    fold_id = np.repeat(np.arange(5), 2)
    weights = group_counts(None, n, n_bootstrap, seed=0)
    empty = np.stack([weights[:, fold_id == f].sum(axis=1) == 0 for f in range(5)])
    assert empty.any()  # the condition that made np.nanmean warn "Mean of empty slice"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        boot = bootstrap_cv_scores("balanced_accuracy", truth, outputs, fold_id, None, n_classes=2,
                                   n_bootstrap=n_bootstrap)
    # Same numbers as a plain fold-wise nan-mean: replicate by replicate, over the folds that drew an item.
    correct = (outputs[0] == truth).astype(float)
    expected = []
    for b in range(n_bootstrap):
        folds = []
        for f in range(5):
            w = weights[b] * (fold_id == f)
            masses = [w * (truth == k) for k in (0, 1)]
            recalls = [m @ correct / m.sum() for m in masses if m.sum()]
            if recalls:
                folds.append(np.mean(recalls))
        expected.append(np.mean(folds))
    np.testing.assert_allclose(boot[0], expected, rtol=1e-12)
