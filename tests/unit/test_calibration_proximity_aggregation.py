"""Calibration tier for P5 and A6: the default-tier checks at several sizes, with thousands of data sets.

With 2000 data sets the binomial SD of a 95% coverage rate is 0.5 points and of a 5% false-positive rate 0.5
points, so the 93-97% and 3-7% bands are about four SDs wide on each side: a pass is not luck of the seed.
"""

from __future__ import annotations

import pytest

from tests.unit.test_aggregation import calibration as a6_calibration
from tests.unit.test_proximity_stats import _calibration as p5_calibration


@pytest.mark.parametrize("n", [12, 30, 80])
def test_p5_paired_context_effect(n):
    rates = p5_calibration(n, 2000, seed=100 + n)
    assert 0.93 <= rates["cover0"] <= 0.97, rates
    assert 0.03 <= rates["false_positive"] <= 0.07, rates
    assert 0.93 <= rates["cover_truth"] <= 0.97, rates


@pytest.mark.parametrize("n", [16, 30, 60])
def test_a6_order_vs_content(n):
    rates = a6_calibration(n, 2000, seed=200 + n)
    assert 0.93 <= rates["cover0"] <= 0.97, rates
    assert 0.03 <= rates["false_positive"] <= 0.07, rates
    assert 0.93 <= rates["cover_truth"] <= 0.97, rates
