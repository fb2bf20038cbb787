"""Synthetic activations with the structure that breaks naive statistics, for calibration and power.

Why these ingredients: a statistic that is calibrated on i.i.d. isotropic Gaussians can still fail on real
residual streams. The generator therefore has
* an anisotropic spectrum (power-law eigenvalues in a random basis) plus a few "massive" outlier dimensions;
* group structure: items of a group share a random offset (one entity, template or source sentence), so rows
  are not independent and row-level resampling or permutation would be too liberal;
* correlated layers (an AR(1) walk along depth, like a residual stream) whose norm grows with depth, so one
  absolute ridge penalty would not fit every layer;
* optional planted signal: class means differ by ``signal`` standard deviations (Cohen's d) along one unit
  direction, in chosen layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conceptspace.errors import InvalidInputError


@dataclass(frozen=True)
class SyntheticData:
    """X (L, n, d) float32, binary labels y constant within groups, group ids, the planted unit direction."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    direction: np.ndarray


def synthetic_activations(
    *,
    n_groups: int = 150,
    items_per_group: int = 4,
    d: int = 576,
    n_layers: int = 30,
    seed: int = 0,
    signal: float = 0.0,
    signal_layers: Sequence[int] | None = None,
    group_share: float = 0.5,
    spectrum_decay: float = 1.0,
    n_outlier_dims: int = 4,
    layer_correlation: float = 0.9,
) -> SyntheticData:
    """Draw one synthetic activation array (see module doc).

    ``group_share`` is the fraction of noise variance shared within a group; ``signal`` is the class-mean
    difference along the planted direction in units of the total noise SD along it; ``signal_layers`` (default:
    every layer) says where it is planted. Labels are balanced-at-random per group.
    """
    if n_groups < 2 or items_per_group < 1 or d < 2 or n_layers < 1:
        raise InvalidInputError("need n_groups >= 2, items_per_group >= 1, d >= 2, n_layers >= 1")
    if not 0.0 <= group_share < 1.0:
        raise InvalidInputError(f"group_share must be in [0, 1); got {group_share}")
    rng = np.random.default_rng(seed)
    n = n_groups * items_per_group
    groups = np.repeat(np.arange(n_groups), items_per_group)
    y_group = rng.permutation(np.arange(n_groups) % 2)
    y = y_group[groups].astype(np.int64)

    eig = np.arange(1, d + 1, dtype=np.float64) ** (-spectrum_decay)
    eig[rng.choice(d, size=min(n_outlier_dims, d), replace=False)] *= 50.0
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scale = np.sqrt(eig)
    direction = basis[:, int(np.argsort(eig)[d // 2])]  # a direction of median variance
    sd_along = float(np.sqrt(eig[int(np.argsort(eig)[d // 2])]))
    planted = set(range(n_layers) if signal_layers is None else signal_layers)
    if not planted <= set(range(n_layers)):
        raise InvalidInputError(f"signal_layers must be within 0..{n_layers - 1}")

    rho = layer_correlation
    g_noise = rng.standard_normal((n_groups, d))
    i_noise = rng.standard_normal((n, d))
    mean = rng.standard_normal(d) * scale * 3.0
    X = np.empty((n_layers, n, d), dtype=np.float32)
    centred_y = (y - 0.5).astype(np.float64)
    for layer in range(n_layers):
        if layer:
            g_noise = rho * g_noise + np.sqrt(1 - rho**2) * rng.standard_normal((n_groups, d))
            i_noise = rho * i_noise + np.sqrt(1 - rho**2) * rng.standard_normal((n, d))
        latent = np.sqrt(group_share) * g_noise[groups] + np.sqrt(1 - group_share) * i_noise
        acts = (latent * scale) @ basis.T + mean
        if layer in planted and signal:
            acts += np.outer(centred_y * signal * sd_along, direction)
        X[layer] = (acts * (1.0 + layer / 3.0)).astype(np.float32)
    return SyntheticData(X=X, y=y, groups=groups, direction=direction)
