"""Matched replicates (geometry._nulls): ties between resamples that drew the same items stay ties.

Why: several twin seeds' replicates are averaged replicate by replicate, so which of two tied replicates gets
which deviation changes a control's interval. A statistic computed by another float route (1e-16 apart) must
give the same replicates, in both branches (the bootstrap's deviations and the null's)."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses.geometry._nulls import matched_replicates


@pytest.mark.parametrize("null_sd", [0.01, 1.0])  # narrower than the bootstrap, then wider (the null's deviations)
def test_float_noise_does_not_reorder_tied_replicates(null_sd: float) -> None:
    rng = np.random.default_rng(0)
    boot = rng.choice([0.10, 0.20, 0.25, 0.40], size=300)  # few distinct resample statistics: many exact ties
    noisy = boot * (1.0 + rng.choice([-1.0, 0.0, 1.0], size=boot.size) * np.finfo(float).eps)
    assert not np.array_equal(boot, noisy)
    null = rng.normal(0.2, null_sd, size=999)
    exact = matched_replicates(0.05, boot, None, null)
    rounded = matched_replicates(0.05, noisy, None, null)
    np.testing.assert_allclose(rounded, exact, rtol=0, atol=1e-12)


def test_distinct_values_keep_their_order() -> None:
    rng = np.random.default_rng(1)
    boot = rng.normal(size=200)
    out = matched_replicates(0.3, boot, None, rng.normal(0, 0.1, size=500))
    assert np.array_equal(np.argsort(out), np.argsort(boot))  # the replicates stay paired, in the same direction
