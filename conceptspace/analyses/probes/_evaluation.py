"""Grouped cross-validated probing per layer, with controls side by side and cross-dataset transfer.

This is where a probe becomes a reviewed claim: for each layer, the grouped-CV score (statistic), its margin
over chance (effect size) with a grouped-bootstrap CI, and a group-respecting permutation p-value, as
:class:`~conceptspace.stats.TestResult` records. The same probe, folds and permutations are run on the
controls (control task, untrained twin, lexical baseline) so that the numbers are comparable row by row.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from conceptspace.errors import InvalidInputError
from conceptspace.site_names import EMBED, is_site_name, layer_site
from conceptspace.stats._bootstrap import bootstrap_cv_scores, percentile_intervals
from conceptspace.stats._exact import iter_outputs
from conceptspace.stats._folds import Fold, fold_ids, grouped_folds
from conceptspace.stats._permutation import Scheme, _label_linear_spec, permutation_test_layers, prepare_labels
from conceptspace.stats._results import TRAINED, UNTRAINED, ResultSet, TestKey, TestResult
from conceptspace.stats._scoring import chance_level, check_scoring, default_scoring, needs_decision, score_one
from conceptspace.validation import check_features, check_groups, check_labels, infer_task

Groups = Sequence[Hashable] | np.ndarray | None


@dataclass(frozen=True)
class CVResult:
    """Grouped-CV scores per layer and the out-of-fold outputs they came from.

    ``outputs`` (L, n[, k]): predicted class codes, decision values (``roc_auc``) or predictions.
    ``truth``: class codes (classification) or targets, aligned with ``outputs``.
    ``test_folds_missing_class``: how many test folds lack at least one class (small classes; see
    :func:`_split`); such a fold is scored over the classes it holds.
    """

    scores: np.ndarray
    fold_scores: np.ndarray
    outputs: np.ndarray
    truth: np.ndarray
    fold_id: np.ndarray
    folds: tuple[Fold, ...]
    scoring: str
    task: str
    n_classes: int | None
    test_folds_missing_class: int = 0


def _split(y: np.ndarray, groups: Groups, *, n_splits: int, seed: int, task: str) -> list[Fold]:
    """:func:`grouped_folds`, with scikit-learn's "least populated class" warning replaced by a reported count.

    ``StratifiedGroupKFold`` warns when a class has fewer *items* than folds, because then some test folds
    cannot hold it. With groups that item count is not even the right quantity (a class of 6 items in 2 groups
    reaches only 2 test folds, and scikit-learn stays silent). What matters is checked on the actual folds:
    :func:`grouped_folds` refuses folds whose *training* part lacks a class (no probe could learn it), and a
    test fold without a class is scored over the classes it holds (as every permuted labelling is), with the
    number of such folds reported (``CVResult.test_folds_missing_class`` and the result's ``extra``). So the
    splitter's generic warning, which would repeat on every call with no way to act on it, is not passed on;
    every other warning is.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class in y has only", category=UserWarning)
        return grouped_folds(y, groups, n_splits=n_splits, seed=seed, task=task)


def _folds_missing_class(truth: np.ndarray, folds: Sequence[Fold], n_classes: int | None) -> int:
    """How many test folds lack at least one of the ``n_classes`` class codes (0 for regression)."""
    if n_classes is None:
        return 0
    return sum(int(np.unique(truth[te]).size < n_classes) for _, te in folds)


def cross_validate_layers(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Groups = None,
    *,
    n_splits: int = 5,
    scoring: str | None = None,
    seed: int = 0,
    folds: list[Fold] | None = None,
) -> CVResult:
    """Grouped (stratified) k-fold CV of ``probe`` on every layer of X (L, n, d).

    Label-linear probes (ridge, binary LDA, mass-mean) are fitted for all layers at once per fold (one batched
    solve per layer); other estimators are cloned and refitted per layer and fold.
    """
    X = check_features(X_layers, ndim=3)
    n_layers, n, _ = X.shape
    task = infer_task(y)
    y_arr = check_labels(y, n, task=task)
    labels = prepare_labels(y_arr, task)
    scoring = check_scoring(scoring or default_scoring(task), task, labels.n_classes)
    if folds is None:
        folds = _split(y_arr, groups, n_splits=n_splits, seed=seed, task=task)
    fid = fold_ids(folds, n)
    truth = labels.codes if task == "classification" else y_arr
    assert truth is not None
    spec = _label_linear_spec(probe, labels)
    decision = needs_decision(scoring)
    out_shape = (n_layers, *np.shape(y_arr)) if task == "regression" else (n_layers, n)
    outputs = np.zeros(out_shape)
    if spec is not None:
        identity = np.arange(n)[None]
        for block in iter_outputs(spec, X, labels, folds, identity, decision=decision):
            out = block.output[..., 0, :] if task == "regression" else block.output[..., 0]
            out_np = out.numpy()
            if task == "regression" and y_arr.ndim == 1:
                out_np = out_np[..., 0]
            outputs[block.layers, block.test_idx] = out_np
    else:
        for layer in range(n_layers):
            for tr, te in folds:
                est = clone(probe).fit(X[layer][tr], y_arr[tr])
                if decision:
                    outputs[layer, te] = est.decision_function(X[layer][te])
                elif task == "classification":
                    outputs[layer, te] = np.searchsorted(np.unique(y_arr), est.predict(X[layer][te]))
                else:
                    outputs[layer, te] = est.predict(X[layer][te])
    fold_scores = np.empty((n_layers, len(folds)))
    with warnings.catch_warnings():
        # A test fold may lack a class (counted in test_folds_missing_class); balanced accuracy is then the mean
        # recall of the classes it holds, as in the exact permutation path, and scikit-learn's two warnings
        # about that fold say nothing more.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found in 'y_true' and 'y_pred'")
        for layer in range(n_layers):
            for f, (_, te) in enumerate(folds):
                fold_scores[layer, f] = score_one(scoring, truth[te], outputs[layer][te])
    return CVResult(
        scores=fold_scores.mean(axis=1),
        fold_scores=fold_scores,
        outputs=outputs,
        truth=truth,
        fold_id=fid,
        folds=tuple(folds),
        scoring=scoring,
        task=task,
        n_classes=labels.n_classes,
        test_folds_missing_class=_folds_missing_class(truth, folds, labels.n_classes),
    )


def row_site(name: int | str | None) -> str:
    """The site a row of X was read at: an int is a block (``layer.<i>``), a string a site name, and None a
    layer-less input such as the static embedding of the last token (the lexical baseline reads ``embed``)."""
    if name is None:
        return EMBED
    if isinstance(name, str):
        if not is_site_name(name):
            raise InvalidInputError(f"{name!r} is not a site name (embed, layer.<i>, final_norm, unembed)")
        return name
    return layer_site(int(name))


def probe_layers(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Groups = None,
    *,
    dataset: str,
    layers: Sequence[int | str | None] | None = None,
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
) -> tuple[ResultSet, CVResult]:
    """One :class:`TestResult` per layer: grouped-CV score, score - chance with grouped-bootstrap CI, perm p.

    ``layers`` names the rows of X: block indices (default 0..L-1), site names (``"embed"``, ``"final_norm"``),
    or ``None`` for the static embedding of the last token (the lexical baseline). ``test`` names the family in
    each result's :class:`~conceptspace.stats.TestKey`. Returns the results and the CV details (for paired
    comparisons).
    """
    X = check_features(X_layers, ndim=3)
    cv = cross_validate_layers(probe, X, y, groups, n_splits=n_splits, scoring=scoring, seed=seed, folds=folds)
    perm = permutation_test_layers(
        probe,
        X,
        y,
        groups,
        n_permutations=n_permutations,
        scoring=cv.scoring,
        scheme=scheme,
        seed=seed,
        folds=list(cv.folds),
    )
    boot = bootstrap_cv_scores(
        cv.scoring, cv.truth, cv.outputs, cv.fold_id, groups, n_classes=cv.n_classes, n_bootstrap=n_bootstrap, seed=seed
    )
    chance = chance_level(cv.scoring, cv.n_classes)
    lo, hi = percentile_intervals(boot - chance, level)
    names = list(range(X.shape[0])) if layers is None else list(layers)
    if len(names) != X.shape[0]:
        raise InvalidInputError(f"layers names {len(names)} rows but X has {X.shape[0]} layers")
    n_groups = int(check_groups(groups, X.shape[1]).max()) + 1
    method = type(probe).__name__
    missing = {"test_folds_missing_a_class": cv.test_folds_missing_class} if cv.test_folds_missing_class else {}
    results = [
        TestResult(
            key=TestKey(test=test, dataset=dataset, method=method, site=row_site(names[i]), position=position,
                        control=control, model=UNTRAINED if control == UNTRAINED else TRAINED),
            claim=claim,
            statistic_name=cv.scoring,
            statistic=float(cv.scores[i]),
            effect_size_name=f"{cv.scoring}_minus_chance",
            effect_size=float(cv.scores[i] - chance),
            ci_low=float(lo[i]),
            ci_high=float(hi[i]),
            p_value=float(perm.p_value[i]),
            n=X.shape[1],
            n_groups=n_groups,
            extra={
                "chance": chance,
                "n_splits": len(cv.folds),
                "n_permutations": n_permutations,
                "permutation_scheme": perm.scheme,
                "permutation_method": perm.method,
                "n_bootstrap": n_bootstrap,
                "ci_level": level,
                "fold_scores": cv.fold_scores[i].tolist(),
                "seed": seed,
                **missing,
            },
        )
        for i in range(X.shape[0])
    ]
    return ResultSet(results), cv


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
    **kwargs: Any,
) -> ResultSet:
    """The probe on the task and on each available control, with the same folds, permutations and seed.

    Controls: ``control_y`` (control-task labels, e.g. from :func:`control_task_labels`), ``X_untrained``
    (L, n, d) activations of the untrained twin, ``X_lexical`` (n, d) static embedding of the last token.
    The task results' ``extra`` carries ``selectivity`` (task - control-task score) with a paired grouped-
    bootstrap CI, and the untrained/lexical scores, so one row reads as the whole comparison.
    Keyword arguments go to :func:`probe_layers`.
    """
    X = check_features(X_layers, ndim=3)
    task_rs, task_cv = probe_layers(probe, X, y, groups, dataset=dataset, **kwargs)
    out = task_rs
    extras: list[dict[str, Any]] = [dict(r.extra) for r in task_rs]
    n_bootstrap = kwargs.get("n_bootstrap", 1000)
    seed = kwargs.get("seed", 0)
    level = kwargs.get("level", 0.95)
    shared = {**kwargs, "folds": list(task_cv.folds)}
    if control_y is not None:
        ctl_kwargs = dict(shared) if _folds_cover_classes(task_cv.folds, control_y) else dict(kwargs)
        ctl_rs, ctl_cv = probe_layers(
            probe, X, control_y, groups, dataset=dataset, control="control_task", **ctl_kwargs
        )
        out = out + ctl_rs
        boot_task = bootstrap_cv_scores(
            task_cv.scoring,
            task_cv.truth,
            task_cv.outputs,
            task_cv.fold_id,
            groups,
            n_classes=task_cv.n_classes,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        boot_ctl = bootstrap_cv_scores(
            ctl_cv.scoring,
            ctl_cv.truth,
            ctl_cv.outputs,
            ctl_cv.fold_id,
            groups,
            n_classes=ctl_cv.n_classes,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        lo, hi = percentile_intervals(boot_task - boot_ctl, level)
        for i, e in enumerate(extras):
            e.update(
                selectivity=float(task_cv.scores[i] - ctl_cv.scores[i]),
                selectivity_ci=[float(lo[i]), float(hi[i])],
                control_task_score=float(ctl_cv.scores[i]),
            )
    if X_untrained is not None:
        U = check_features(X_untrained, ndim=3)
        if U.shape[:2] != X.shape[:2]:
            raise InvalidInputError(
                f"X_untrained has shape {U.shape}; it must match X's layers and items {X.shape[:2]}"
            )
        un_rs, _ = probe_layers(probe, U, y, groups, dataset=dataset, control="untrained", **shared)
        out = out + un_rs
        for e, r in zip(extras, un_rs, strict=True):
            e["untrained_score"] = r.statistic
    if X_lexical is not None:
        lex = check_features(X_lexical, ndim=2)
        lex_kwargs = {k: v for k, v in shared.items() if k != "layers"}
        lex_rs, _ = probe_layers(
            probe, lex[None], y, groups, dataset=dataset, control="lexical", layers=[None], **lex_kwargs
        )
        out = out + lex_rs
        for e in extras:
            e["lexical_score"] = lex_rs[0].statistic
    updated = ResultSet(r.replace(extra=e) for r, e in zip(task_rs, extras, strict=True))
    return updated + ResultSet(out[len(task_rs) :])


def _folds_cover_classes(folds: Sequence[Fold], y: Any) -> bool:
    """Whether every training fold holds every class of ``y`` (then the task's folds can be reused)."""
    y_arr = np.asarray(y)
    if infer_task(y_arr) != "classification":
        return True
    classes = np.unique(y_arr)
    return all(np.unique(y_arr[tr]).size == classes.size for tr, _ in folds)


def side_by_side(results: ResultSet) -> pd.DataFrame:
    """Statistic per layer (rows) and control (columns: ``task``, ``control_task``, ``untrained``, ...)."""
    frame = results.to_frame()
    frame["control"] = frame["control"].fillna("task")
    frame["layer"] = frame["layer"].astype("object").where(frame["layer"].notna(), "lexical")
    return frame.pivot_table(index="layer", columns="control", values="statistic", aggfunc="first", dropna=False)


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
