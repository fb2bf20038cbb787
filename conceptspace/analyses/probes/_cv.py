"""Grouped cross-validation of a probe on every layer, and which site each row of the features is.

The primitives every probing test is built from (moved here from ``_evaluation`` so that the probe family,
which the evaluation functions call, can use them without an import cycle): ``CVResult``,
:func:`cross_validate_layers`, :func:`layer_rows` (the site of each row, or an error where it would be a guess).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from conceptspace.activations import Activations
from conceptspace.depth import resolve_layer, site_depth, site_fraction
from conceptspace.errors import InvalidInputError
from conceptspace.site_names import EMBED, is_site_name, layer_site, site_layer
from conceptspace.stats._exact import iter_outputs
from conceptspace.stats._folds import Fold, fold_ids, grouped_folds
from conceptspace.stats._permutation import _label_linear_spec, prepare_labels
from conceptspace.stats._scoring import check_scoring, default_scoring, needs_decision, score_one
from conceptspace.utils.validation import check_features, check_labels, infer_task

Groups = Sequence[Hashable] | np.ndarray | None
LayerName = int | float | str | None


@dataclass(frozen=True)
class CVResult:
    """Grouped-CV scores per layer and the out-of-fold outputs they came from.

    ``outputs`` (L, n[, k]): predicted class codes, decision values (``roc_auc``) or predictions.
    ``truth``: class codes (classification) or targets, aligned with ``outputs``.
    ``test_folds_missing_class``: how many test folds lack at least one class (small classes; see
    :func:`_folds_missing_class`); such a fold is scored over the classes it holds.
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
    #: the site of each row of X (``embed``, ``layer.<i>``, ``final_norm``), as :func:`layer_rows` named them
    sites: tuple[str, ...] = ()
    #: (L, n_folds) the penalty chosen in each outer fold by a nested-CV ridge probe (None for a fixed penalty)
    penalties: np.ndarray | None = None


def _folds_missing_class(truth: np.ndarray, folds: Sequence[Fold], n_classes: int | None) -> int:
    """How many test folds lack at least one of the ``n_classes`` class codes (0 for regression).

    A class smaller than the number of folds is reported this way, not warned about (scikit-learn's
    ``StratifiedGroupKFold`` warns when a class has fewer *items* than folds, but with groups that count is not
    even the right quantity: a class of 6 items in 2 groups reaches only 2 test folds). :func:`grouped_folds`
    refuses folds whose *training* part lacks a class (no probe could learn it); a test fold without a class is
    scored over the classes it holds, as every permuted labelling is.
    """
    if n_classes is None:
        return 0
    return sum(int(np.unique(truth[te]).size < n_classes) for _, te in folds)


@dataclass(frozen=True)
class LayerRows:
    """The (L, n, d) features of a probe and what each row is: its site, the model's depth, the position."""

    X: np.ndarray
    sites: tuple[str, ...]
    n_layers: int | None
    position: str | None = None


def layer_rows(X_layers: Any, layers: Sequence[LayerName] | str | None = None, *,
               n_layers: int | None = None) -> LayerRows:
    """The rows to probe and the real site of each one, or an error where the labelling would be a guess.

    ``X_layers`` is an :class:`~conceptspace.activations.Activations` (its sites name its rows; this is the safe
    input) or an (L, n, d) array. ``layers`` picks or names rows: site names (``"embed"``, ``"layer.3"``,
    ``"layer@0.5"``, ``"final_norm"``), block indices (ints, negative from the end), fractions of depth (floats
    in [0, 1], :mod:`conceptspace.depth`), ``"all"`` (every block of an Activations), or ``None`` for the
    lexical baseline's row. For an array without ``layers`` the rows are blocks 0..L-1; give ``n_layers`` (the
    model's block count) and a mismatch, e.g. the 32 rows of ``acts.stack()`` (embed, 30 blocks, final_norm),
    is refused instead of silently labelling embed ``layer.0``.
    """
    if isinstance(X_layers, Activations):
        return _activation_rows(X_layers, layers, n_layers)
    X = check_features(X_layers, ndim=3)
    if isinstance(layers, str) or isinstance(layers, (int, float)):
        raise InvalidInputError(f"layers must name every row of X (a list); got {layers!r}")
    if layers is None:
        if n_layers is not None and X.shape[0] != n_layers:
            raise InvalidInputError(
                f"X has {X.shape[0]} rows but the model has {n_layers} blocks, so the default labels (block 0.."
                f"{X.shape[0] - 1}) would be wrong (acts.stack() also holds embed and final_norm): pass the "
                "Activations object itself, or layers= with the site of every row, e.g. ['embed', 'layer.0', ...]"
            )
        return LayerRows(X, tuple(layer_site(i) for i in range(X.shape[0])), n_layers)
    names = list(layers)
    if len(names) != X.shape[0]:
        raise InvalidInputError(
            f"layers names {len(names)} rows but X has {X.shape[0]}: name every row of X, in order (or pass the "
            "Activations object, whose sites name its rows)"
        )
    return LayerRows(X, _distinct([_row_name(x, n_layers) for x in names]), n_layers)


def _row_name(name: LayerName, n_layers: int | None) -> str:
    """The site of one named row of an array: fractions and negative indices need the model's depth."""
    if isinstance(name, float) or (isinstance(name, str) and site_fraction(name) is not None) or (
        isinstance(name, int) and not isinstance(name, bool) and name < 0
    ):
        if n_layers is None:
            raise InvalidInputError(
                f"row {name!r} names a block relative to the model's depth: pass n_layers= (the model's block "
                "count), or the Activations object"
            )
        fraction = site_fraction(name) if isinstance(name, str) else None
        return layer_site(resolve_layer(fraction if fraction is not None else name, n_layers))
    site = row_site(name)
    index = site_layer(site)
    if n_layers is not None and index is not None:
        resolve_layer(index, n_layers)  # refuses a block the model does not have
        return layer_site(index % n_layers)
    return site


def _distinct(sites: Sequence[str]) -> tuple[str, ...]:
    """The sites, refusing a repeat: two rows with one label cannot be told apart in the results."""
    seen = [s for i, s in enumerate(sites) if s in sites[:i]]
    if seen:
        raise InvalidInputError(f"ambiguous labels: {', '.join(dict.fromkeys(seen))} names more than one row of X")
    return tuple(sites)


def _activation_rows(acts: Activations, layers: Sequence[LayerName] | str | None, n_layers: int | None) -> LayerRows:
    """Rows of an Activations object by site; ints, fractions and ``layer@<f>`` resolved against its model."""
    depth = n_layers if n_layers is not None else _model_depth(acts)
    if layers is None:
        sites = tuple(acts.sites)
    elif layers == "all":
        sites = tuple(acts.layer_sites)
    elif isinstance(layers, (str, int, float)):
        raise InvalidInputError(f"layers must be a list of sites, block indices or fractions; got {layers!r}")
    else:
        names = list(layers)
        _refuse_row_numbers(names, acts, depth)
        sites = _distinct([_activation_site(x, depth) for x in names])
    missing = [s for s in sites if s not in acts.arrays]
    if missing:
        raise InvalidInputError(f"site(s) {', '.join(missing)} were not extracted; these Activations hold "
                                f"{', '.join(acts.sites)}: extract them, or choose among these")
    if not sites:
        raise InvalidInputError("no sites to probe: these Activations hold none; name at least one site")
    return LayerRows(acts.stack(list(sites)), sites, depth, acts.position)


def _activation_site(name: LayerName, depth: int | None) -> str:
    if name is None:
        raise InvalidInputError("None names the lexical baseline's row of an array; an Activations row is a site")
    return _row_name(name, depth)


def _refuse_row_numbers(names: Sequence[LayerName], acts: Activations, depth: int | None) -> None:
    """Ints are block indices; a list of row numbers over acts.stack() (embed first) would relabel every row."""
    row_numbers = list(range(len(acts.sites)))
    as_blocks = [layer_site(i) for i in row_numbers]
    if list(names) == row_numbers and list(acts.sites) != as_blocks and depth is not None:
        raise InvalidInputError(
            f"layers={list(names)[:3]}... has one int per stacked row ({len(acts.sites)}: "
            f"{acts.sites[0]}..{acts.sites[-1]}), but ints are block indices (0..{depth - 1}), so embed and "
            "final_norm would be mislabelled: omit layers= to probe every site, or pass site names"
        )


def _model_depth(acts: Activations) -> int | None:
    n = acts.model.get("n_layers") if isinstance(acts.model, Mapping) else None
    return int(n) if isinstance(n, int) and n > 0 else None


def _depth_extra(site: str, n_layers: int | None) -> dict[str, float]:
    """``{"depth": i / (n_layers - 1)}`` for a block's row when the depth is known, else nothing (see
    :mod:`conceptspace.depth`); embed and final_norm are not blocks and carry none."""
    if n_layers is None:
        return {}
    depth = site_depth(site, n_layers)
    return {} if depth is None else {"depth": depth}


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
    layers: Sequence[LayerName] | str | None = None,
    n_layers: int | None = None,
) -> CVResult:
    """Grouped (stratified) k-fold CV of ``probe`` on every layer of X (L, n, d).

    ``X_layers`` may be an :class:`~conceptspace.activations.Activations`; ``layers`` and ``n_layers`` choose
    and name its rows as in :func:`layer_rows`, and ``CVResult.sites`` says which site each score is of.
    Label-linear probes (ridge, binary LDA, mass-mean) are fitted for all layers at once per fold (one batched
    solve per layer); other estimators are cloned and refitted per layer and fold.
    """
    rows = layer_rows(X_layers, layers, n_layers=n_layers)
    X = rows.X
    n_layers, n, _ = X.shape
    task = infer_task(y)
    y_arr = check_labels(y, n, task=task)
    labels = prepare_labels(y_arr, task)
    scoring = check_scoring(scoring or default_scoring(task), task, labels.n_classes)
    if folds is None:
        folds = grouped_folds(y_arr, groups, n_splits=n_splits, seed=seed, task=task)
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
        sites=rows.sites,
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

def _folds_cover_classes(folds: Sequence[Fold], y: Any) -> bool:
    """Whether every training fold holds every class of ``y`` (then the task's folds can be reused)."""
    y_arr = np.asarray(y)
    if infer_task(y_arr) != "classification":
        return True
    classes = np.unique(y_arr)
    return all(np.unique(y_arr[tr]).size == classes.size for tr, _ in folds)
