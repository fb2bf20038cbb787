"""Permutation tests of cross-validated probe scores, respecting the group structure of the data.

The statistic is the grouped-CV score (mean over folds, folds fixed from the observed labels); the null
distribution is the same statistic under B label permutations drawn so that they respect exchangeability:

* ``scheme="group"`` (chosen by ``"auto"`` when every group carries one label, e.g. one entity per group):
  whole groups swap labels. Items of a group are not exchangeable with each other (they share an entity), so
  permuting rows would break the dependence the data has and make the null too narrow (anti-conservative).
  Permuting groups keeps each group's items together; group sizes may differ, so the row-level class balance
  varies across permutations, which balanced accuracy (the default scoring) is insensitive to.
* ``scheme="within"`` (``"auto"`` when labels vary inside groups, e.g. templates that contain both classes):
  labels are shuffled among the items of each group, which is exactly the exchangeability a paired/template
  design gives. This is what scikit-learn's ``permutation_test_score(groups=...)`` does in every case; when
  labels are constant within groups that null is degenerate (every permutation is the identity), which is why
  ``"auto"`` does not use it there.
* ``scheme="rows"``: free permutation of rows (``"auto"`` when ``groups`` is None).

Permutations that leave a training fold without some class are redrawn (and, for AUROC, those that leave a
test fold with one class): the observed labelling satisfies the same condition, so under the null the observed
labelling is uniform over the allowed set and the test stays exact.

p = (1 + #{null >= observed}) / (B + 1), so the smallest attainable p is 1/(B + 1) and never 0. The comparison
allows a relative tolerance of 1e-10 so that float noise cannot flip a tie.

Two paths compute the null: ``method="exact"`` (label-linear probes: ridge, binary LDA, mass-mean; matrix
products via :mod:`conceptspace.stats._exact`) and ``method="refit"`` (any estimator; clones and refits per
permutation and fold). With the same seed they use the same permutations and give the same p-values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import clone

from conceptspace.errors import InvalidInputError
from conceptspace.stats._exact import LabelLinearSpec, Labels, OperatorCache, iter_outputs
from conceptspace.stats._folds import Fold, grouped_folds
from conceptspace.stats._linear import as_tensor
from conceptspace.stats._scoring import (
    check_scoring,
    default_scoring,
    needs_decision,
    score_batch_classes,
    score_batch_targets,
    score_one,
)
from conceptspace.utils.validation import check_features, check_groups, check_labels, infer_task

Scheme = Literal["auto", "group", "within", "rows"]
Method = Literal["auto", "exact", "refit"]
_MAX_DRAW_ROUNDS = 200


@dataclass(frozen=True)
class PermutationResult:
    """Observed grouped-CV score per layer, its permutation null and p-value.

    ``statistic`` (L,), ``null`` (L, B), ``p_value`` (L,). ``permutations`` (B, n) holds the row index each
    item took its label from, so a result can be reproduced or audited.
    """

    statistic: np.ndarray
    null: np.ndarray
    p_value: np.ndarray
    scoring: str
    scheme: str
    method: str
    n_permutations: int
    folds: tuple[Fold, ...]
    permutations: np.ndarray


def permutation_p_value(observed: np.ndarray | float, null: np.ndarray) -> np.ndarray:
    """(1 + #{null >= observed}) / (B + 1) along the last axis of ``null``; never 0."""
    obs = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    tol = 1e-10 * np.maximum(1.0, np.abs(obs))
    exceed = (null >= (obs - tol)[..., None]).sum(axis=-1)
    return (1.0 + exceed) / (null.shape[-1] + 1.0)


def prepare_labels(y: np.ndarray, task: str) -> Labels:
    """Encode labels once: class codes or a float target matrix."""
    if task == "classification":
        classes, codes = np.unique(y, return_inverse=True)
        return Labels(task=task, codes=codes.astype(np.int64), n_classes=int(classes.size), targets=None)
    targets = y[:, None] if y.ndim == 1 else y
    return Labels(task=task, codes=None, n_classes=None, targets=np.asarray(targets, dtype=np.float64))


def resolve_scheme(y: np.ndarray, group_codes: np.ndarray, scheme: Scheme, *, grouped: bool) -> str:
    """Pick the permutation scheme (see module doc); reject a degenerate one."""
    if scheme == "auto":
        if not grouped:
            return "rows"
        return "group" if _constant_within_groups(y, group_codes) else "within"
    if scheme == "group" and not _constant_within_groups(y, group_codes):
        raise InvalidInputError(
            "scheme='group' needs one label per group, but some groups mix labels; use scheme='within'"
        )
    if scheme == "within" and _constant_within_groups(y, group_codes):
        raise InvalidInputError(
            "scheme='within' is degenerate here: every group has a single label, so shuffling inside groups "
            "changes nothing; use scheme='group'"
        )
    if scheme not in ("group", "within", "rows"):
        raise InvalidInputError(f"unknown scheme {scheme!r}; use 'auto', 'group', 'within' or 'rows'")
    return scheme


def _constant_within_groups(y: np.ndarray, group_codes: np.ndarray) -> bool:
    flat = y.reshape(len(y), -1)
    order = np.argsort(group_codes, kind="stable")
    g, v = group_codes[order], flat[order]
    same_group = g[1:] == g[:-1]
    differs = np.any(v[1:] != v[:-1], axis=1)
    return not bool(np.any(same_group & differs))


def _draw_raw(rng: np.random.Generator, group_codes: np.ndarray, scheme: str, count: int) -> np.ndarray:
    n = group_codes.shape[0]
    if scheme == "rows":
        return np.argsort(rng.random((count, n)), axis=1)
    if scheme == "group":
        n_groups = int(group_codes.max()) + 1
        first_row = np.full(n_groups, n, dtype=np.int64)
        np.minimum.at(first_row, group_codes, np.arange(n))
        perm = np.argsort(rng.random((count, n_groups)), axis=1)
        return first_row[perm[:, group_codes]]
    # within: sort rows by (group, random key); positions line up group by group with the identity order.
    base = np.argsort(group_codes, kind="stable")
    keys = rng.random((count, n))
    out = np.empty((count, n), dtype=np.int64)
    for b in range(count):
        shuffled = np.lexsort((keys[b], group_codes))
        out[b, base] = shuffled
    return out


def _allowed(
    perm: np.ndarray, codes: np.ndarray | None, n_classes: int | None, folds: list[Fold], test_too: bool
) -> np.ndarray:
    if codes is None or n_classes is None:
        return np.ones(perm.shape[0], dtype=bool)
    permuted = codes[perm]
    ok = np.ones(perm.shape[0], dtype=bool)
    for tr, te in folds:
        for part in (tr, te) if test_too else (tr,):
            counts = np.stack([(permuted[:, part] == k).any(axis=1) for k in range(n_classes)])
            ok &= counts.all(axis=0)
    return ok


def draw_permutations(
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    n_permutations: int,
    *,
    seed: int | Sequence[int] = 0,
    scheme: Scheme = "auto",
    folds: list[Fold] | None = None,
    test_folds_need_all_classes: bool = False,
) -> tuple[np.ndarray, str]:
    """B row-index permutations (B, n) and the scheme used; ``y[perm[b]]`` is the b-th permuted labelling.

    With ``folds`` given (classification), permutations leaving a training fold without a class are redrawn.
    ``seed`` may be a sequence (e.g. ``[seed, offset]``: the batch of a sequential test that starts at draw
    ``offset``), which numpy's generator takes as one seed.
    """
    y_arr = np.asarray(y)
    n = y_arr.shape[0]
    if n_permutations < 1:
        raise InvalidInputError(f"n_permutations must be >= 1; got {n_permutations}")
    group_codes = check_groups(groups, n)
    used = resolve_scheme(y_arr, group_codes, scheme, grouped=groups is not None)
    codes: np.ndarray | None = None
    n_classes: int | None = None
    if folds is not None and infer_task(y_arr) == "classification":
        classes, inv = np.unique(y_arr, return_inverse=True)
        codes, n_classes = inv, int(classes.size)
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    have = 0
    for _ in range(_MAX_DRAW_ROUNDS):
        raw = _draw_raw(rng, group_codes, used, n_permutations)
        good = raw[_allowed(raw, codes, n_classes, folds or [], test_folds_need_all_classes)]
        kept.append(good)
        have += good.shape[0]
        if have >= n_permutations:
            return np.concatenate(kept)[:n_permutations], used
    raise InvalidInputError(
        "almost no permutation keeps every class in every training fold: too few groups per class for the "
        "number of folds; lower n_splits or add groups"
    )


def _refit_scores(
    probe: Any, X: np.ndarray, y: np.ndarray, folds: list[Fold], perm_idx: np.ndarray, scoring: str
) -> np.ndarray:
    out = np.empty(perm_idx.shape[0])
    with warnings.catch_warnings():
        # A permuted test fold may lack a class; scikit-learn warns, the score is still defined (and the task's
        # own folds report how many lack a class: CVResult.test_folds_missing_class).
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found in 'y_true' and 'y_pred'")
        for b, rows in enumerate(perm_idx):
            out[b] = _refit_one(probe, X, y[rows], folds, scoring)
    return out


def _refit_one(probe: Any, X: np.ndarray, yb: np.ndarray, folds: list[Fold], scoring: str) -> float:
    fold_scores = []
    for tr, te in folds:
        est = clone(probe).fit(X[tr], yb[tr])
        pred = est.decision_function(X[te]) if needs_decision(scoring) else est.predict(X[te])
        fold_scores.append(score_one(scoring, yb[te], pred))
    return float(np.mean(fold_scores))


def exact_scores(
    spec: LabelLinearSpec,
    X_layers: np.ndarray | torch.Tensor,
    labels: Labels,
    folds: list[Fold],
    perm_idx: np.ndarray,
    scoring: str,
    cache: OperatorCache | None = None,
) -> np.ndarray:
    """Grouped-CV scores (L, B) of a label-linear probe for every permuted labelling, by matrix products."""
    n_layers = X_layers.shape[0]
    scores = torch.zeros((n_layers, perm_idx.shape[0]), dtype=torch.float64)
    decision = needs_decision(scoring)
    for block in iter_outputs(spec, X_layers, labels, folds, perm_idx, decision=decision, cache=cache):
        if labels.task == "regression":
            s = score_batch_targets(scoring, block.truth.expand(block.output.shape), block.output)
        else:
            assert labels.n_classes is not None
            truth = block.truth.expand(block.output.shape)
            s = score_batch_classes(scoring, truth, block.output, labels.n_classes)
        scores[block.layers, block.perms] += s / len(folds)
    return scores.numpy()


def _label_linear_spec(probe: Any, labels: Labels) -> LabelLinearSpec | None:
    getter = getattr(probe, "label_linear_spec", None)
    return getter(labels.n_classes) if getter is not None else None


def permutation_test_layers(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    *,
    n_permutations: int = 1000,
    n_splits: int = 5,
    scoring: str | None = None,
    scheme: Scheme = "auto",
    method: Method = "auto",
    seed: int = 0,
    folds: list[Fold] | None = None,
    operator_cache: OperatorCache | None = None,
) -> PermutationResult:
    """Permutation test of ``probe``'s grouped-CV score on every layer of X (L, n, d).

    All layers share the folds and the permutations (so layer p-values are comparable and the family can be
    corrected as one). ``method="auto"`` takes the exact path when the probe declares a label-linear fit.
    ``operator_cache`` (ridge, with explicit label-free ``folds``) reuses the solves across calls on the same
    float64 X, e.g. many label sets in :func:`conceptspace.analyses.probes.calibrate_null`.
    """
    X = check_features(X_layers, ndim=3)
    n = X.shape[1]
    task = infer_task(y)
    y_arr = check_labels(y, n, task=task)
    labels = prepare_labels(y_arr, task)
    scoring = check_scoring(scoring or default_scoring(task), task, labels.n_classes)
    if folds is None:
        folds = grouped_folds(y_arr, groups, n_splits=n_splits, seed=seed, task=task)
    test_too = scoring == "roc_auc"
    if test_too and labels.codes is not None:
        for i, (_, te) in enumerate(folds):
            if np.unique(labels.codes[te]).size < 2:
                raise InvalidInputError(f"test fold {i} has one class, so AUROC is undefined; lower n_splits")
    perms, used = draw_permutations(
        y_arr, groups, n_permutations, seed=seed, scheme=scheme, folds=folds, test_folds_need_all_classes=test_too
    )
    all_rows = np.concatenate([np.arange(n)[None], perms])
    spec = _label_linear_spec(probe, labels)
    if method == "exact" and spec is None:
        raise InvalidInputError(f"{type(probe).__name__} has no label-linear fit here; use method='refit'")
    if method not in ("auto", "exact", "refit"):
        raise InvalidInputError(f"unknown method {method!r}; use 'auto', 'exact' or 'refit'")
    use_exact = spec is not None and method != "refit"
    if use_exact:
        assert spec is not None
        scores = exact_scores(spec, X, labels, folds, all_rows, scoring, operator_cache)
    else:
        scores = np.stack(
            [_refit_scores(probe, X[layer], y_arr, folds, all_rows, scoring) for layer in range(X.shape[0])]
        )
    observed, null = scores[:, 0], scores[:, 1:]
    return PermutationResult(
        statistic=observed,
        null=null,
        p_value=permutation_p_value(observed, null),
        scoring=scoring,
        scheme=used,
        method="exact" if use_exact else "refit",
        n_permutations=n_permutations,
        folds=tuple(folds),
        permutations=perms,
    )


def permutation_test(
    probe: Any,
    X: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    **kwargs: Any,
) -> PermutationResult:
    """Permutation test on one layer: X is (n, d). Keyword arguments as :func:`permutation_test_layers`."""
    X2 = check_features(X, ndim=2)
    return permutation_test_layers(probe, X2[None], y, groups, **kwargs)


def null_draws(
    probe: Any,
    X_layers: Any,
    y: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    folds: list[Fold],
    scoring: str | None = None,
    scheme: Scheme = "auto",
    method: Method = "auto",
    seed: int = 0,
) -> tuple[Callable[[int, int], np.ndarray], str, str]:
    """A numbered source of permutation-null scores for :func:`conceptspace.stats.sequential_null`.

    Returns ``(draw, scheme, method)``: ``draw(offset, count)`` is the (L, count) grouped-CV scores of
    permutations ``offset .. offset + count - 1``, each batch drawn from the seed ``[seed, offset]`` so that the
    same seed gives the same numbers, and two label sets or feature stacks with the same labels, groups and seed
    get the same permutations (the rows of one family share their draws). Scores come from the exact path for
    label-linear probes and from refits otherwise, exactly as in :func:`permutation_test_layers`.
    """
    X = check_features(X_layers, ndim=3)
    n = X.shape[1]
    task = infer_task(y)
    y_arr = check_labels(y, n, task=task)
    labels = prepare_labels(y_arr, task)
    scoring = check_scoring(scoring or default_scoring(task), task, labels.n_classes)
    spec = _label_linear_spec(probe, labels)
    if method == "exact" and spec is None:
        raise InvalidInputError(f"{type(probe).__name__} has no label-linear fit here; use method='refit'")
    use_exact = spec is not None and method != "refit"
    used = resolve_scheme(y_arr, check_groups(groups, n), scheme, grouped=groups is not None)
    fixed_scheme: Scheme = "group" if used == "group" else "within" if used == "within" else "rows"
    test_too = scoring == "roc_auc"
    Xt = as_tensor(X)  # one tensor, so that the operator cache recognises it on every batch
    ridge = use_exact and spec is not None and spec.kind == "ridge" and spec.penalty is not None
    cache = OperatorCache(Xt, folds, spec.penalty) if ridge and spec is not None and spec.penalty is not None else None

    def draw(offset: int, count: int) -> np.ndarray:
        perms, _ = draw_permutations(y_arr, groups, count, seed=[seed, offset], scheme=fixed_scheme, folds=folds,
                                     test_folds_need_all_classes=test_too)
        if use_exact:
            assert spec is not None
            return exact_scores(spec, Xt, labels, folds, perms, scoring, cache)
        return np.stack([_refit_scores(probe, X[layer], y_arr, folds, perms, scoring) for layer in range(X.shape[0])])

    return draw, used, "exact" if use_exact else "refit"
