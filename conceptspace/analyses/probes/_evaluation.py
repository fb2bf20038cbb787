"""Grouped cross-validated probing per layer, with controls side by side and cross-dataset transfer.

This is where a probe becomes a reviewed claim: for each layer, the grouped-CV score (statistic), its margin
over the permutation null's mean (effect size) with a refit grouped-bootstrap CI, and a group-respecting
permutation p-value, as :class:`~conceptspace.stats.TestResult` records. The same probe, folds, permutations and
bootstrap resamples are run on the controls (control task, untrained twin, lexical baseline) so that the numbers
are comparable row by row (:mod:`conceptspace.analyses.probes._family`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from conceptspace.activations import Activations
from conceptspace.analyses.probes._cv import (
    CVResult,
    LayerName,
    LayerRows,
    _folds_cover_classes,
    cross_validate_layers,
    layer_rows,
    row_site,
)
from conceptspace.analyses.probes._family import Arm, probe_family
from conceptspace.analyses.probes._ncv_interval import DEFAULT_REPEATS
from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import percentile_intervals
from conceptspace.stats._folds import Fold
from conceptspace.stats._permutation import Scheme
from conceptspace.stats._results import ResultSet
from conceptspace.stats._scoring import default_scoring, needs_decision, score_one
from conceptspace.stats._sequential import SequentialPlan
from conceptspace.utils.validation import check_features, check_groups, check_labels, infer_task

Groups = Sequence[Hashable] | np.ndarray | None

__all__ = ["CVResult", "LayerRows", "_folds_cover_classes", "control_task_labels", "cross_validate_layers",
           "layer_rows", "probe_layers", "probe_with_controls", "row_site", "side_by_side", "transfer_matrix"]


def probe_layers(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Groups = None,
    *,
    dataset: str,
    layers: Sequence[LayerName] | str | None = None,
    n_layers: int | None = None,
    claim: str | None = None,
    position: str | None = None,
    control: str | None = None,
    n_splits: int = 5,
    scoring: str | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    scheme: Scheme = "auto",
    seed: int = 0,
    level: float = 0.95,
    folds: list[Fold] | None = None,
    test: str = "probe",
    plan: SequentialPlan | None = None,
    primary: str | None = None,
    interval: str = "auto",
    score_interval: str = "auto",
    ncv_repeats: int = DEFAULT_REPEATS,
) -> tuple[ResultSet, CVResult]:
    """One :class:`TestResult` per layer: grouped-CV score, score - permutation null mean with a refit grouped-
    bootstrap CI, and the permutation p-value (all layers share the draws; ``extra["p_maxt"]`` adjusts for them).

    ``X_layers`` is an :class:`~conceptspace.activations.Activations` (each result is labelled with the site it
    was read at: ``embed``, ``layer.<i>``, ``final_norm``; its position is the default ``position``) or an
    (L, n, d) array. ``layers`` chooses (Activations) or names (array) the rows: site names, ``layer@<f>``,
    block indices (default 0..L-1 for an array), fractions of depth, ``"all"``, or ``None`` for the static
    embedding (the lexical baseline); see :func:`layer_rows`. ``n_layers``: the model's block count, read from
    an Activations; with it each block's result carries ``extra["depth"] = i / (n_layers - 1)``
    (:mod:`conceptspace.depth`; none for embed and final_norm). ``test`` names the family in each result's
    :class:`~conceptspace.stats.TestKey`. ``plan``: a sequential Monte Carlo plan (default: exactly
    ``n_permutations`` draws), decided on the ``primary`` site (default: every row). Returns the results and the
    CV details (for paired comparisons). ``interval``: how the CI is bootstrapped (``"auto"``: refitted for
    ridge probes, from fixed out-of-fold outputs otherwise; see :func:`~conceptspace.analyses.probes._family.
    probe_family`).
    """
    rows = layer_rows(X_layers, layers, n_layers=n_layers)
    family = probe_family(
        probe, [Arm(control, rows.X, np.asarray(y), rows.sites)], groups, dataset=dataset, primary=primary,
        plan=plan or SequentialPlan.fixed(n_permutations), claim=claim,
        position=position if position is not None else rows.position, n_layers=rows.n_layers, n_splits=n_splits,
        scoring=scoring, scheme=scheme, n_bootstrap=n_bootstrap, seed=seed, level=level, test=test, folds=folds,
        interval=interval, score_interval=score_interval, ncv_repeats=ncv_repeats,
    )
    return ResultSet(family.results), family.arms[0].cv


def probe_with_controls(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Groups = None,
    *,
    dataset: str,
    control_y: Any = None,
    X_untrained: Any = None,
    X_lexical: Any = None,
    layers: Sequence[LayerName] | str | None = None,
    n_layers: int | None = None,
    position: str | None = None,
    n_permutations: int = 1000,
    plan: SequentialPlan | None = None,
    **kwargs: Any,
) -> ResultSet:
    """The probe on the task and on each available control, with the same folds, permutations and resamples.

    Controls: ``control_y`` (control-task labels, e.g. from :func:`control_task_labels`), ``X_untrained``
    (L, n, d) activations of the untrained twin, ``X_lexical`` (n, d) static embeddings (the lexical baseline).
    The task results' ``extra`` carries ``selectivity`` (task - control-task score) with a paired refit-
    bootstrap CI, and the untrained/lexical scores, so one row reads as the whole comparison. Rows with the
    nested-CV interval (accuracy-type scores) also carry ``paired``: per control, the nested-CV interval of the
    difference of effects, calibrated where the bootstrap's errs wide (the one a suite's verdict reads).
    ``X_layers`` and ``X_untrained`` may be :class:`~conceptspace.activations.Activations` (the twin's is read
    at the model's sites); ``layers`` and ``n_layers`` choose and name the rows as in :func:`layer_rows`.
    Other keyword arguments go to :func:`~conceptspace.analyses.probes._family.probe_family`.
    """
    rows = layer_rows(X_layers, layers, n_layers=n_layers)
    y_arr = np.asarray(y)
    arms = [Arm(None, rows.X, y_arr, rows.sites)]
    if control_y is not None:
        arms.append(Arm("control_task", rows.X, np.asarray(control_y), rows.sites))
    if X_untrained is not None:
        U = layer_rows(X_untrained, list(rows.sites), n_layers=rows.n_layers).X if isinstance(
            X_untrained, Activations) else check_features(X_untrained, ndim=3)
        if U.shape[:2] != rows.X.shape[:2]:
            raise InvalidInputError(
                f"X_untrained has shape {U.shape}; it must match X's layers and items {rows.X.shape[:2]}"
            )
        arms.append(Arm("untrained", U, y_arr, rows.sites))
    if X_lexical is not None:
        arms.append(Arm("lexical", check_features(X_lexical, ndim=2)[None], y_arr, ("embed",), baseline=True))
    kwargs.setdefault("interval", "auto")
    family = probe_family(probe, arms, groups, dataset=dataset, primary=kwargs.pop("primary", None),
                          plan=plan or SequentialPlan.fixed(n_permutations), n_layers=rows.n_layers,
                          position=position if position is not None else rows.position, **kwargs)
    results = list(family.results)
    task_arm = family.arms[0]
    extras: dict[str, Any] = {}
    for other in family.arms[1:]:
        if other.arm.control == "control_task":
            sel = task_arm.boot.centred - other.boot.centred
            lo, hi = percentile_intervals(sel, kwargs.get("level", 0.95))
            extras["selectivity"] = (task_arm.cv.scores - other.cv.scores, lo, hi, other.cv.scores)
        elif other.arm.control == "untrained":
            extras["untrained_score"] = other.cv.scores
        elif other.arm.control == "lexical":
            extras["lexical_score"] = float(other.cv.scores[0])
    for i in range(len(rows.sites)):
        e = dict(results[i].extra)
        if "selectivity" in extras:
            diff, lo, hi, ctl = extras["selectivity"]
            e.update(selectivity=float(diff[i]), selectivity_ci=[float(lo[i]), float(hi[i])],
                     control_task_score=float(ctl[i]))
        if "untrained_score" in extras:
            e["untrained_score"] = float(extras["untrained_score"][i])
        if "lexical_score" in extras:
            e["lexical_score"] = extras["lexical_score"]
        results[i] = results[i].replace(extra=e)
    return ResultSet(results)


def side_by_side(results: ResultSet) -> pd.DataFrame:
    """Statistic per site (rows, in the order probed: ``embed``, ``layer.<i>``, ``final_norm``; the lexical
    baseline's row is ``lexical``) and control (columns: ``task``, ``control_task``, ``untrained``, ...).

    Rows are sites, not block numbers, so that ``embed`` and ``final_norm`` keep rows of their own."""
    rows = ["lexical" if r.control == "lexical" else (r.site or "lexical") for r in results]
    frame = pd.DataFrame({"site": rows, "control": [r.control or "task" for r in results],
                          "statistic": [r.statistic for r in results]})
    table = frame.pivot_table(index="site", columns="control", values="statistic", aggfunc="first", dropna=False)
    return table.reindex(list(dict.fromkeys(rows)))


def control_task_labels(types: Sequence[Hashable] | np.ndarray, y: Any, *, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: every word type gets a random label, drawn with the task's class shares.

    The labels are a deterministic function of the type (a probe can only memorise them), so a probe that
    scores as well on them as on the task shows capacity, not a represented concept.
    """
    y_arr = np.asarray(y)
    codes = check_groups(types, y_arr.shape[0])
    classes, counts = np.unique(y_arr, return_counts=True)
    rng = np.random.default_rng(seed)
    per_type = rng.choice(classes, size=int(codes.max()) + 1, p=counts / counts.sum())
    return per_type[codes]


def transfer_matrix(
    probe: Any,
    data: Mapping[str, tuple[Any, Any, Groups]],
    *,
    scoring: str | None = None,
    n_splits: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Train on dataset A, test on dataset B, for every pair (Marks & Tegmark's generalisation matrix).

    ``data`` maps a name to ``(X, y, groups)`` with X (n, d) from the same layer and position. Off-diagonal
    cells fit on all of A and score on all of B; the diagonal is A's grouped-CV score, so it is not inflated
    by testing on training items. Rows: train set, columns: test set.
    """
    names = list(data)
    if not names:
        raise InvalidInputError("transfer_matrix needs at least one dataset")
    prepared = {}
    for name in names:
        X, y, g = data[name]
        X = check_features(X)
        task = infer_task(y)
        prepared[name] = (X, check_labels(y, X.shape[0], task=task), g, task)
    tasks = {p[3] for p in prepared.values()}
    dims = {p[0].shape[1] for p in prepared.values()}
    if len(tasks) != 1 or len(dims) != 1:
        raise InvalidInputError("all datasets must share the task type and feature dimension (same layer/site)")
    task = tasks.pop()
    scoring = scoring or default_scoring(task)
    matrix = pd.DataFrame(index=pd.Index(names, name="train"), columns=pd.Index(names, name="test"), dtype=float)
    for a in names:
        Xa, ya, ga, _ = prepared[a]
        cv = cross_validate_layers(probe, Xa[None], ya, ga, n_splits=n_splits, scoring=scoring, seed=seed)
        matrix.loc[a, a] = float(cv.scores[0])
        fitted = clone(probe).fit(Xa, ya)
        for b in names:
            if b == a:
                continue
            Xb, yb, _, _ = prepared[b]
            out = fitted.decision_function(Xb) if needs_decision(scoring) else fitted.predict(Xb)
            matrix.loc[a, b] = score_one(scoring, yb, out)
    return matrix
