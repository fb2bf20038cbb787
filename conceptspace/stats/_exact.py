"""Out-of-fold outputs of label-linear probes for many label sets at once (the exact fast path).

Why this is exact, not an approximation. With the features and the folds fixed, a ridge fit's out-of-fold
predictions are ``mean(y_tr) + Xte_c (C + rI)^{-1} Xtr_c^T y_tr``: a fixed matrix times the labels, so B label
permutations cost one ``(d x n_tr) @ (n_tr x B)`` product and one triangular solve per fold and layer instead
of B refits. The binary Fisher probes (LDA, mass-mean) use the *total* scatter C, which does not depend on the
labels; by Sherman-Morrison ``(C + rI)^{-1} delta`` is a positive multiple of ``(S_W + rI)^{-1} delta``, and
their 1-D LDA read-out only needs ``u.v`` and ``v' C v`` (u = Xc' y, v = (C + rI)^{-1} u), both cheap per column.
The refitting path (``conceptspace.stats``) fits the probes themselves, so agreement between the two is a
real check of this algebra, tested in ``tests/unit/test_stats_permutation.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from conceptspace.stats._folds import Fold
from conceptspace.stats._linear import DTYPE, as_tensor, centered_scatter

# Upper bound on the elements of one (layers x d x columns) block; ~80 MB in float64.
_BLOCK_ELEMENTS = 10_000_000


@dataclass(frozen=True)
class LabelLinearSpec:
    """How a probe's fit depends linearly on its labels (consumed by the exact permutation path).

    ``kind="ridge"``: predictions are ``mean(y_train) + Xte_c (C + rI)^{-1} Xtr_c^T y_train``.
    ``kind="fisher"``: the projection direction is a positive multiple of ``(C + rI)^{-1} Xtr_c^T y`` (or of
    ``Xtr_c^T y`` when ``penalty`` is None), followed by a one-dimensional LDA threshold (binary only).
    """

    kind: Literal["ridge", "fisher"]
    penalty: float | None


@dataclass(frozen=True)
class Labels:
    """Labels prepared for the engine: class codes (classification) or float targets (regression)."""

    task: str
    codes: np.ndarray | None  # (n,) int codes in 0..K-1
    n_classes: int | None
    targets: np.ndarray | None  # (n, k) floats

    @property
    def width(self) -> int:
        """Columns per label set in the linear solve (1 for binary, K one-hot, k outputs)."""
        if self.task == "regression":
            assert self.targets is not None
            return self.targets.shape[1]
        assert self.n_classes is not None
        return 1 if self.n_classes == 2 else self.n_classes


@dataclass(frozen=True)
class Block:
    """One piece of engine output: layers ``layers``, permutations ``perms``, test rows of fold ``fold``.

    ``output`` is (l, n_te, b) predicted codes or decision values (classification) or (l, n_te, b, k)
    predictions (regression); ``truth`` is (n_te, b) codes or (n_te, b, k) targets.
    """

    layers: slice
    perms: slice
    fold: int
    test_idx: np.ndarray
    output: torch.Tensor
    truth: torch.Tensor


def _train_targets(labels: Labels, perm_rows: np.ndarray) -> torch.Tensor:
    """Targets (n_rows, b, width) for the permuted label sets ``perm_rows`` (b, n_rows) of row indices."""
    if labels.task == "regression":
        assert labels.targets is not None
        return torch.from_numpy(np.ascontiguousarray(labels.targets[perm_rows.T]))
    assert labels.codes is not None and labels.n_classes is not None
    codes = torch.from_numpy(labels.codes[perm_rows.T])
    if labels.n_classes == 2:
        return (codes == 1).to(DTYPE)[..., None]
    return torch.nn.functional.one_hot(codes, labels.n_classes).to(DTYPE)


class OperatorCache:
    """Label-free ridge operators ``Xte_c (C + rI)^{-1} Xtr_c^T`` per fold, kept for reuse across label sets.

    Why: when many label sets are tested on the same activations and folds (null calibration, power curves,
    several concepts on one dataset), the solve is the expensive part and does not depend on the labels. Bind
    one cache to one (X, folds, penalty); the engine refuses it for anything else.
    """

    def __init__(self, X_layers: np.ndarray | torch.Tensor, folds: list[Fold], penalty: float) -> None:
        self.X = as_tensor(X_layers)
        self.folds = [(np.asarray(tr).copy(), np.asarray(te).copy()) for tr, te in folds]
        self.penalty = penalty
        self._ops: dict[tuple[int, int], torch.Tensor] = {}

    def matches(self, X: torch.Tensor, folds: list[Fold], penalty: float | None) -> bool:
        """Whether this cache was built for exactly these activations, folds and penalty."""
        same_x = X.data_ptr() == self.X.data_ptr() and X.shape == self.X.shape
        same_folds = len(folds) == len(self.folds) and all(
            np.array_equal(a, c) and np.array_equal(b, e) for (a, b), (c, e) in zip(folds, self.folds, strict=True)
        )
        return same_x and same_folds and penalty == self.penalty


def _ridge_operator(X: torch.Tensor, tr: np.ndarray, te: np.ndarray, penalty: float | None) -> torch.Tensor:
    """(l, n_te, n_tr) map from centred training targets to centred test predictions."""
    cs = centered_scatter(X[:, tr], penalty)
    xte = X[:, te] - cs.mean[:, None, :]
    return xte @ cs.solve(cs.centered.transpose(1, 2))


def iter_outputs(
    spec: LabelLinearSpec,
    X_layers: np.ndarray | torch.Tensor,
    labels: Labels,
    folds: list[Fold],
    perm_idx: np.ndarray,
    *,
    decision: bool,
    cache: OperatorCache | None = None,
) -> Iterator[Block]:
    """Yield out-of-fold outputs for every fold, layer and label set ``labels[perm_idx[b]]``.

    decision=True yields continuous decision values (binary classification, e.g. for AUROC) instead of
    predicted codes. Ridge goes through the (n_te x n_tr) operator (optionally cached); the Fisher probes work
    in d-space because their read-out needs ``u.v`` and ``v' C v`` per label set.
    """
    X = as_tensor(X_layers)
    n_layers, _, d = X.shape
    width = labels.width
    n_perm = perm_idx.shape[0]
    if cache is not None and not (spec.kind == "ridge" and cache.matches(X, folds, spec.penalty)):
        raise ValueError("OperatorCache was built for other activations, folds or penalty")
    for f, (tr, te) in enumerate(folds):
        n_tr, n_te = len(tr), len(te)
        per_layer = max(d * n_tr, n_te * n_tr) if spec.kind == "ridge" else d * (n_tr + d)
        layer_chunk = max(1, min(n_layers, _BLOCK_ELEMENTS // per_layer))
        for l0 in range(0, n_layers, layer_chunk):
            lsl = slice(l0, min(n_layers, l0 + layer_chunk))
            n_l = lsl.stop - lsl.start
            cols_per_perm = width * (n_te + (0 if spec.kind == "ridge" else 2 * d))
            perm_chunk = max(1, min(n_perm, _BLOCK_ELEMENTS // (n_l * cols_per_perm)))
            if spec.kind == "ridge":
                op = cache._ops.get((f, l0)) if cache is not None else None
                if op is None:
                    op = _ridge_operator(X[lsl], tr, te, spec.penalty)
                    if cache is not None:
                        cache._ops[(f, l0)] = op
                for p0 in range(0, n_perm, perm_chunk):
                    psl = slice(p0, min(n_perm, p0 + perm_chunk))
                    rows = perm_idx[psl]
                    t_tr = _train_targets(labels, rows[:, tr])
                    b = t_tr.shape[1]
                    s_te = op @ (t_tr - t_tr.mean(dim=0)).reshape(n_tr, b * width)
                    output = _read_out(spec, labels, None, None, None, s_te, t_tr, decision)
                    yield Block(
                        layers=lsl, perms=psl, fold=f, test_idx=te, output=output, truth=_truth(labels, rows[:, te])
                    )
                continue
            cs = centered_scatter(X[lsl][:, tr], spec.penalty)
            xte = X[lsl][:, te] - cs.mean[:, None, :]
            for p0 in range(0, n_perm, perm_chunk):
                psl = slice(p0, min(n_perm, p0 + perm_chunk))
                rows = perm_idx[psl]
                t_tr = _train_targets(labels, rows[:, tr])  # (n_tr, b, w)
                b = t_tr.shape[1]
                u = cs.centered.transpose(1, 2) @ t_tr.reshape(n_tr, b * width)  # (l, d, b*w)
                v = cs.solve(u)
                s_te = xte @ v  # (l, n_te, b*w)
                output = _read_out(spec, labels, cs.scatter, u, v, s_te, t_tr, decision)
                yield Block(
                    layers=lsl, perms=psl, fold=f, test_idx=te, output=output, truth=_truth(labels, rows[:, te])
                )


def _truth(labels: Labels, rows: np.ndarray) -> torch.Tensor:
    if labels.task == "regression":
        assert labels.targets is not None
        return torch.from_numpy(np.ascontiguousarray(labels.targets[rows.T]))
    assert labels.codes is not None
    return torch.from_numpy(np.ascontiguousarray(labels.codes[rows.T]))


def _read_out(
    spec: LabelLinearSpec,
    labels: Labels,
    scatter: torch.Tensor | None,
    u: torch.Tensor | None,
    v: torch.Tensor | None,
    s_te: torch.Tensor,
    t_tr: torch.Tensor,
    decision: bool,
) -> torch.Tensor:
    """Turn label-linear projections into the probe's outputs (the only label-nonlinear step)."""
    n_tr, b, width = t_tr.shape
    n_layers, n_te = s_te.shape[0], s_te.shape[1]
    if spec.kind == "ridge":
        pred = s_te.reshape(n_layers, n_te, b, width) + t_tr.mean(dim=0)
        if labels.task == "regression":
            return pred
        if width == 1:
            return pred[..., 0] - 0.5 if decision else (pred[..., 0] > 0.5).to(torch.int64)
        return pred.argmax(dim=-1)
    # Fisher read-out: 1-D LDA on projections; everything below is per column (label set).
    assert scatter is not None and u is not None and v is not None
    uv = (u * v).sum(dim=1)  # (l, b) = sum_i y_i s_i, training projections are centred
    quad = (v * (scatter @ v)).sum(dim=1)  # (l, b) = sum_i s_i^2
    n1 = t_tr[..., 0].sum(dim=0)
    n0 = n_tr - n1
    m1, m0 = uv / n1, -uv / n0
    var = torch.clamp((quad - n1 * m1**2 - n0 * m0**2) / n_tr, min=1e-300)
    dec = (s_te - (0.5 * (m0 + m1))[:, None, :]) * ((m1 - m0) / var)[:, None, :] + torch.log(n1 / n0)
    return dec if decision else (dec > 0).to(torch.int64)
