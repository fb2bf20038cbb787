"""Closed-form linear fits batched over layers, in torch float64.

Why one module for this: the ridge probe, the LDA and mass-mean probes and the exact permutation path all need
the same three steps (centre the training rows, form the scatter matrix, solve against a penalised scatter),
and all of them must run on every layer at once (one batched Cholesky per fold, not one Python fit per layer).
Keeping the arithmetic in one place is also what lets the fast permutation path agree with the refitting path
to float tolerance.

Penalties are *relative*: ``penalty * trace(C) / d`` where ``C`` is the centred scatter of the training rows.
Residual-stream norms grow by orders of magnitude from the first to the last layer, so an absolute ridge
``alpha`` would regularise early layers hard and late layers not at all. The trace depends on X only, never on
the labels, which keeps every fit linear in the labels (the property the exact permutation path relies on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64


def as_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float64 CPU tensor view of ``a`` (no copy when it already is one)."""
    if isinstance(a, torch.Tensor):
        return a.to(dtype=DTYPE)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


@dataclass(frozen=True)
class CenteredScatter:
    """Training rows of every layer, centred, with their scatter and a penalised Cholesky factor.

    ``chol`` is ``None`` for an unpenalised identity metric (mass-mean), where solving is a no-op.
    """

    mean: torch.Tensor  # (L, d)
    centered: torch.Tensor  # (L, n, d)
    scatter: torch.Tensor  # (L, d, d)
    chol: torch.Tensor | None  # (L, d, d) lower factor of scatter + r I

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``(C + r I)^{-1} rhs`` for every layer; rhs is (L, d, k)."""
        if self.chol is None:
            return rhs
        return torch.cholesky_solve(rhs, self.chol)


def centered_scatter(X: torch.Tensor, penalty: float | None) -> CenteredScatter:
    """Centre ``X`` (L, n, d), form ``C = Xc^T Xc`` and factor ``C + penalty * trace(C)/d * I``.

    ``penalty=None`` skips the factorisation (identity metric).
    """
    mean = X.mean(dim=1)
    centered = X - mean[:, None, :]
    scatter = centered.transpose(1, 2) @ centered
    chol = None
    if penalty is not None:
        d = X.shape[2]
        ridge = penalty * torch.diagonal(scatter, dim1=1, dim2=2).sum(dim=1) / d
        # A constant layer (zero trace) still needs a positive diagonal to be factorable.
        ridge = torch.clamp(ridge, min=torch.finfo(DTYPE).tiny ** 0.5)
        eye = torch.eye(d, dtype=DTYPE)
        chol = torch.linalg.cholesky(scatter + ridge[:, None, None] * eye)
    return CenteredScatter(mean=mean, centered=centered, scatter=scatter, chol=chol)


def ridge_fit(X: torch.Tensor, Y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge with an unpenalised intercept on every layer at once.

    X: (L, n, d); Y: (n, k) shared by all layers. Returns coef (L, d, k) and intercept (L, k).
    """
    cs = centered_scatter(X, alpha)
    y_mean = Y.mean(dim=0)
    rhs = cs.centered.transpose(1, 2) @ (Y - y_mean)
    coef = cs.solve(rhs)
    intercept = y_mean[None, :] - (cs.mean[:, None, :] @ coef)[:, 0, :]
    return coef, intercept
