"""The refit bootstrap's fast forms against their plain forms on random data.

Why: re-selecting the ridge penalty in every bootstrap replicate is C4's main cost, so the weighted ridge now
factorises every penalty in one batched call, solves by two triangular solves, and refits the outer training
part with each replicate's chosen penalty only. These tests hold each fast form to the plain one (one penalty
at a time, a fresh system per penalty, every penalty refitted and the chosen one picked); a wrong ridge, a
mixed-up penalty index or a transposed factor would fail them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptspace.stats._linear import DTYPE
from conceptspace.stats._refit_bootstrap import weighted_ridge_chosen, weighted_ridge_grid

GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _plain_one_penalty(X: torch.Tensor, W: torch.Tensor, T: torch.Tensor, penalty: float) -> torch.Tensor:
    """Weighted ridge with an intercept, one weighting and layer at a time in feature space: (b, L, n, k)."""
    b, (n_layers, n, d) = W.shape[0], X.shape
    out = torch.zeros((b, n_layers, n, T.shape[1]), dtype=DTYPE)
    for i in range(b):
        w = W[i]
        for layer in range(n_layers):
            x = X[layer]
            mu, y_bar = (w @ x) / w.sum(), (w @ T) / w.sum()
            xc, tc = x - mu, T - y_bar
            scatter = xc.T @ (w[:, None] * xc)
            ridge = max(penalty * float(torch.trace(scatter)) / d, torch.finfo(DTYPE).tiny ** 0.5)
            beta = torch.linalg.solve(scatter + ridge * torch.eye(d, dtype=DTYPE), xc.T @ (w[:, None] * tc))
            out[i, layer] = xc @ beta + y_bar
    return out


def _data(seed: int, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    X = torch.from_numpy(rng.standard_normal((2, n, d)))
    X = X - X.mean(dim=1, keepdim=True)
    W = rng.exponential(1.0, size=(3, n))
    W[:, rng.choice(n, n // 4, replace=False)] = 0.0  # rows outside the training part
    T = torch.from_numpy(rng.standard_normal((n, 2)))
    return X, torch.from_numpy(W), T


@pytest.mark.parametrize("row_space", [False, True])
def test_batched_grid_equals_one_penalty_at_a_time(row_space: bool) -> None:
    X, W, T = _data(0, n=24, d=30 if row_space else 8)
    gram = X @ X.transpose(1, 2) if row_space else None
    grid = weighted_ridge_grid(X, W, T, GRID, gram)
    assert grid.shape == (len(GRID), 3, 2, 24, 2)
    for p, penalty in enumerate(GRID):
        torch.testing.assert_close(grid[p], _plain_one_penalty(X, W, T, penalty), atol=1e-9, rtol=0)
    assert not torch.allclose(grid[0], grid[-1], atol=1e-3)  # the penalties do differ


@pytest.mark.parametrize("row_space", [False, True])
def test_chosen_penalty_refit_equals_picking_from_the_whole_grid(row_space: bool) -> None:
    X, W, T = _data(1, n=20, d=25 if row_space else 6)
    gram = X @ X.transpose(1, 2) if row_space else None
    chosen = np.array([[0, 4], [2, 1], [3, 3]])  # (b, L) grid indices
    got = weighted_ridge_chosen(X, W, T, GRID, chosen, gram)
    grid = weighted_ridge_grid(X, W, T, GRID, gram)
    want = torch.stack([torch.stack([grid[chosen[i, j], i, j] for j in range(2)]) for i in range(3)])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_refit_bootstrap_runs_on_one_torch_thread_and_restores_the_callers_count(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import conceptspace.stats._refit_bootstrap as module
    from conceptspace.analyses.probes._estimators import RidgeRegressionProbe

    seen: list[int] = []
    plain = module.weighted_ridge_predict

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return plain(*args, **kwargs)

    monkeypatch.setattr(module, "weighted_ridge_predict", spy)
    rng = np.random.default_rng(2)
    X, y, groups = rng.standard_normal((1, 24, 5)), rng.standard_normal(24), np.repeat(np.arange(12), 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        module.refit_bootstrap(RidgeRegressionProbe(penalty=1.0), X, y, groups, observed=np.zeros(1), scoring="r2",
                               task="regression", n_splits=3, n_bootstrap=4, seed=0)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
