"""Ridge penalties chosen by nested grouped CV: the fast operator path against slow references (scikit-learn's
GridSearchCV and a loop of ridge fits), the permutation null against refitting the whole procedure, the
bootstrap's weighted selection against fits on duplicated rows, planted signals and null calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from conceptspace.analyses.probes import RidgeRegressionProbe
from conceptspace.analyses.probes._family import Arm, probe_family
from conceptspace.analyses.probes._nested import (
    NestedRidgeProbe,
    NestedRidgeRegressionProbe,
    inner_folds,
    nested_cross_validate,
    nested_null_draws,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats import SequentialPlan
from conceptspace.stats._permutation import draw_permutations
from conceptspace.stats._refit_bootstrap import _selected_predict, deal_folds, group_strata, refit_bootstrap
from conceptspace.stats._scoring import score_one

GRID = [0.01, 0.1, 1.0, 10.0, 100.0]


def _data(seed: int, *, n_groups: int = 20, per: int = 3, d: int = 8, layers: int = 2, signal: float = 0.4):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = rng.normal(size=(layers, g.size, d))
    y = signal * X[0] @ rng.normal(size=d) + rng.normal(size=g.size)
    return X, y, g


def _local(tr: np.ndarray, folds: list) -> list:
    """Global inner folds as row indices of X[tr] (tr is sorted)."""
    return [(np.searchsorted(tr, a), np.searchsorted(tr, b)) for a, b in folds]


def test_nested_regression_equals_gridsearchcv_inside_the_outer_folds():
    X, y, g = _data(0)
    cv = nested_cross_validate(NestedRidgeRegressionProbe(GRID, inner_splits=3), X, y, g, n_splits=5)
    for layer in range(X.shape[0]):
        reference = np.zeros(y.size)
        for f, (tr, te) in enumerate(cv.folds):
            inner = _local(tr, inner_folds(y, g, tr, inner_splits=3, seed=0, task="regression"))
            search = GridSearchCV(RidgeRegressionProbe(), {"penalty": GRID}, cv=inner, scoring="r2")
            search.fit(X[layer][tr], y[tr])
            reference[te] = search.predict(X[layer][te])
            assert cv.penalties is not None and cv.penalties[layer, f] == search.best_params_["penalty"]
            # the estimator alone (groups given, folds derived from them) is the same procedure
            alone = NestedRidgeRegressionProbe(GRID, inner_splits=3).fit(X[layer][tr], y[tr], groups=g[tr])
            assert alone.penalty_ == search.best_params_["penalty"]
        np.testing.assert_allclose(cv.outputs[layer], reference, atol=1e-8, rtol=0)
    assert len(set(cv.penalties.ravel())) > 1  # the data make the choice matter: not one penalty everywhere


@pytest.mark.parametrize(("n_classes", "scoring"), [(2, None), (2, "roc_auc"), (3, None)])
def test_nested_classification_equals_a_loop_of_ridge_fits(n_classes, scoring):
    rng = np.random.default_rng(n_classes)
    X, _, g = _data(1, n_groups=24)
    y = (np.arange(24) % n_classes)[rng.permutation(24)][g]
    y = np.where(X[1, :, 0] > 1.0, (y + 1) % n_classes, y)  # some signal, labels still mixed in a few groups
    probe = NestedRidgeProbe(GRID, inner_splits=3)
    cv = nested_cross_validate(probe, X, y, g, n_splits=4, scoring=scoring)
    for layer in range(X.shape[0]):
        reference = np.zeros(y.size)
        for f, (tr, te) in enumerate(cv.folds):
            est = NestedRidgeProbe(GRID, inner_splits=3).fit(X[layer][tr], y[tr], groups=g[tr])
            reference[te] = est.decision_function(X[layer][te]) if scoring else np.searchsorted(
                est.classes_, est.predict(X[layer][te]))
            assert cv.penalties is not None and cv.penalties[layer, f] == est.penalty_
        np.testing.assert_allclose(cv.outputs[layer], reference, atol=1e-8, rtol=0)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # the reference's own scoring
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_permutation_null_equals_refitting_the_nested_procedure(task):
    X, y, g = _data(2)
    if task == "classification":
        y = (np.random.default_rng(3).random(20) > 0.5).astype(int)[g]
        probe: NestedRidgeProbe | NestedRidgeRegressionProbe = NestedRidgeProbe(GRID)
    else:
        y = y.reshape(20, 3).mean(axis=1)[g]  # one value per group: group permutations
        probe = NestedRidgeRegressionProbe(GRID)
    cv = nested_cross_validate(probe, X, y, g, n_splits=4)
    draw, scheme, method = nested_null_draws(probe, X, y, g, folds=list(cv.folds))
    null = draw(0, 6)
    perms, _ = draw_permutations(y, g, 6, seed=[0, 0], scheme="group", folds=list(cv.folds))
    inner = [inner_folds(y, g, tr, inner_splits=3, seed=0, task=task) for tr, _ in cv.folds]  # fixed, as the outer
    assert scheme == "group" and method == "nested"
    for b, rows in enumerate(perms):
        yb = y[rows]
        for layer in range(X.shape[0]):
            scores = []
            for (tr, te), fold_inner in zip(cv.folds, inner, strict=True):
                est = type(probe)(GRID).fit(X[layer][tr], yb[tr], inner=_local(tr, fold_inner))
                scores.append(score_one(cv.scoring, np.searchsorted(np.unique(y), yb[te]) if task ==
                                        "classification" else yb[te], np.searchsorted(np.unique(y), est.predict(
                                            X[layer][te])) if task == "classification" else est.predict(X[layer][te])))
            assert null[layer, b] == pytest.approx(np.mean(scores), abs=1e-8)


def test_selected_penalty_follows_the_signal():
    """Few features and little noise want almost no shrinkage; many features and a weak signal want a lot."""
    chosen = {}
    # ridge's best absolute penalty is noise variance / signal variance per coefficient; relative to the mean
    # eigenvalue of the scatter (~ n training rows) that is ~2e-4 for "small" and ~25 for "large"
    for name, (d, signal, noise) in {"small": (5, 2.0, 0.3), "large": (150, 0.02, 1.0)}.items():
        picks = []
        for seed in range(4):
            rng = np.random.default_rng(seed)
            g = np.repeat(np.arange(40), 3)
            X = rng.normal(size=(1, g.size, d))
            y = signal * X[0] @ rng.normal(size=d) + noise * rng.normal(size=g.size)
            cv = nested_cross_validate(NestedRidgeRegressionProbe(GRID), X, y, g, n_splits=5)
            assert cv.penalties is not None
            picks.extend(np.log10(cv.penalties.ravel()))
        chosen[name] = float(np.mean(picks))
    assert chosen["small"] <= -1.0  # mostly 0.01 or 0.1
    assert chosen["large"] >= 1.0  # mostly 10 or 100


def test_nested_null_is_calibrated_on_pure_noise():
    """100 noise data sets (one value per group, 20 groups): the nested-CV permutation p rejects at 0.05 about 5%."""
    rejections = 0
    probe = NestedRidgeRegressionProbe(GRID)
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        g = np.repeat(np.arange(20), 3)
        X = rng.normal(size=(1, g.size, 6))
        y = rng.normal(size=20)[g]
        cv = nested_cross_validate(probe, X, y, g, n_splits=4, seed=seed)
        draw, _, _ = nested_null_draws(probe, X, y, g, folds=list(cv.folds), seed=seed)
        null = draw(0, 99)[0]
        p = (1 + np.sum(null >= cv.scores[0] - 1e-10)) / 100
        rejections += int(p <= 0.05)
    print(f"nested-CV null: {rejections} of 100 noise data sets rejected at 0.05")
    assert 0.01 <= rejections / 100 <= 0.10


@pytest.mark.parametrize("row_space", [False, True])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_weighted_selection_equals_fits_on_duplicated_rows(task, row_space):
    """The bootstrap's weighted inner CV with integer weights is the nested fit on duplicated rows."""
    X, y, g = _data(4, n_groups=12, layers=1)
    codes = g
    if task == "classification":
        y = (y > np.median(y)).astype(int)
    strata = group_strata(codes, None)
    W = np.random.default_rng(5).multinomial(12, np.full(12, 1 / 12), size=3)[:, codes].astype(np.float64)
    W[:, g == 0] = 0.0  # group 0 out of this training part
    Xt = torch.from_numpy(X - X.mean(axis=1, keepdims=True))
    T = torch.from_numpy(y[:, None].astype(np.float64))
    gram = Xt @ Xt.transpose(1, 2) if row_space else None  # the kernel path, on the weighted rows only
    pred = _selected_predict(Xt, W, T, tuple(GRID), 3, codes, strata, np.random.default_rng(7), gram,
                             regression=task == "regression")
    rng = np.random.default_rng(7)  # the same stream deals the same inner folds
    nested = NestedRidgeRegressionProbe if task == "regression" else NestedRidgeProbe
    for b in range(W.shape[0]):
        drawn = np.zeros(12, dtype=bool)
        drawn[codes[W[b] > 0]] = True
        inner = deal_folds(codes, strata, drawn, 3, rng)[codes]
        rows = np.repeat(np.arange(y.size), W[b].astype(int))
        folds = [(np.flatnonzero(inner[rows] != j), np.flatnonzero(inner[rows] == j)) for j in range(3)]
        est = nested(GRID).fit(Xt[0].numpy()[rows], y[rows], inner=folds)
        fitted = est.predict(Xt[0].numpy()) if task == "regression" else est.decision_function(Xt[0].numpy()) + 0.5
        np.testing.assert_allclose(pred[b, 0, :, 0], fitted, atol=1e-8, rtol=0)


def test_one_penalty_grid_bootstrap_equals_the_fixed_penalty_bootstrap():
    """Selection over a grid of one is no selection: the replicates equal the fixed-penalty ones exactly."""
    X, y, g = _data(6)
    kw = {"observed": np.zeros(2), "scoring": "r2", "task": "regression", "n_splits": 4, "n_bootstrap": 8, "seed": 3}
    plain = refit_bootstrap(RidgeRegressionProbe(penalty=1.0), X, y, g, **kw)
    nested = refit_bootstrap(RidgeRegressionProbe(penalty=1.0), X, y, g, penalties=[1.0], **kw)
    np.testing.assert_allclose(nested.raw, plain.raw, atol=1e-10)
    wide = refit_bootstrap(RidgeRegressionProbe(penalty=1.0), X, y, g, penalties=GRID, **kw)
    assert not np.allclose(wide.raw, plain.raw)  # with a real grid the selection changes the replicates


def test_probe_family_reports_the_chosen_penalties_and_reselects_everywhere():
    X, y, g = _data(7, n_groups=15)
    out = probe_family(NestedRidgeRegressionProbe(GRID), [Arm(None, X, y, ("layer.0", "layer.1"))], g,
                       dataset="planted", primary="layer.1", plan=SequentialPlan.fixed(19), n_splits=3,
                       n_bootstrap=10, interval="auto")
    for result in out.results:
        assert len(result.extra["penalties_chosen"]) == 3
        assert set(result.extra["penalties_chosen"]) <= set(GRID)
        assert list(result.extra["penalty_grid"]) == GRID and result.extra["inner_splits"] == 3
        assert result.extra["permutation_method"] == "nested"
        assert result.extra["bootstrap"].startswith("refit")
    assert out.arms[0].boot.refitted is not None and out.arms[0].boot.refitted.all()


def test_bad_grids_and_tasks_are_refused_with_a_way_out():
    X, y, g = _data(8)
    with pytest.raises(InvalidInputError, match="positive"):
        nested_cross_validate(NestedRidgeRegressionProbe([0.0, 1.0]), X, y, g)
    with pytest.raises(InvalidInputError, match="inner_splits"):
        nested_cross_validate(NestedRidgeRegressionProbe(GRID, inner_splits=1), X, y, g)
    with pytest.raises(InvalidInputError, match="NestedRidgeRegressionProbe"):
        nested_cross_validate(NestedRidgeProbe(GRID), X, y, g)


def test_probe_kind_runs_nested_selection_and_refuses_it_for_probes_without_a_penalty(tiny_models):
    from conceptspace.analyses import RunContext, registry
    from conceptspace.analyses.kinds.probe import make_probe

    kind = registry()["probe"]
    params = kind.make_params({"dataset": "truth_is_universal/animal_class_polarity", "layers": [0, 1],
                               "max_items": 40, "n_splits": 3, "controls": ["control_task", "lexical"],
                               "penalty": "nested", "penalties": [0.1, 10.0], "inner_splits": 2})
    context = RunContext(model=tiny_models["llama"], twin=None, claim="C4", seed=0, n_permutations=19,
                         n_bootstrap=10)
    out = kind.run(context, params)
    for result in out.results:
        assert result.method == "NestedRidgeProbe"
        assert len(result.extra["penalties_chosen"]) == 3 and set(result.extra["penalties_chosen"]) <= {0.1, 10.0}
        assert result.extra["permutation_method"] == "nested"
    with pytest.raises(InvalidInputError, match="ridge"):
        make_probe("lda", False, "nested")
    with pytest.raises(InvalidInputError, match="nested"):
        make_probe("ridge", False, "tuned")


def test_a_rare_class_missing_from_an_inner_training_part_does_not_stop_the_selection():
    X, _, g = _data(9, n_groups=12, layers=1)
    y = np.where(g < 1, 1, 0)  # class 1 in one group: the inner training part beside its fold lacks it
    inner = inner_folds(y, g, np.arange(y.size), inner_splits=3, seed=0, task="classification")
    assert any(np.unique(y[a]).size < 2 for a, _ in inner)
    est = NestedRidgeProbe(GRID, inner_splits=3).fit(X[0], y, groups=g)
    assert est.penalty_ in GRID and np.isfinite(est.inner_losses_).all()
