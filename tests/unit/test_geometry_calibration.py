"""Issue 13 for the geometry kinds: the CI measures what the p-value tests, on data whose truth is known.

Pure noise: the 95% CI of ``statistic - null mean`` covers 0 in 93-97% of data sets and p < 0.05 in 3-7%.
Planted signal: significant, with a CI covering the planted effect. The long versions (hundreds of data sets)
are in the calibration tier (tests/conftest.py); the default tier keeps small versions with looser bounds that
the old intervals fail (a plain grouped bootstrap covered 0 in 100 of 100 noise sets: too wide under the null).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from conceptspace.analyses.geometry._analogies import analogy_tests, questions_from_pairs
from conceptspace.analyses.geometry._clustering import clustering_tests
from conceptspace.analyses.geometry._relations import relation_consistency_tests
from conceptspace.analyses.geometry._similarity import category_similarity, rsa_tests
from conceptspace.stats import SequentialPlan, TestResult


# ------------------------------------------------------------------------------------------- data sets
def _relation(seed: int, planted: bool, n: int = 12, d: int = 30) -> TestResult:
    """b = a + offset + noise (the pairing is encoded) or b unrelated to a (noise)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, d))
    offset = np.zeros(d)
    offset[0] = 0.25 * np.sqrt(2 * d)
    B = A + offset + 1.5 * rng.normal(size=(n, d)) if planted else rng.normal(size=(n, d))
    return relation_consistency_tests(A, B, ["r"] * n, n_permutations=199, n_bootstrap=200, seed=seed)[0]


def _clustering(seed: int, planted: bool, n_per: int = 15, k: int = 4, d: int = 20) -> TestResult:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per)
    X = rng.normal(size=(k * n_per, d)) + (0.8 * rng.normal(size=(k, d)))[labels] * planted
    return clustering_tests(X, labels, methods=("kmeans",), n_permutations=199, n_bootstrap=200, seed=seed)[0]


def _rsa(seed: int, planted: bool, n_per: int = 5, k: int = 5, d: int = 8) -> TestResult:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per)
    X = rng.normal(size=(k * n_per, d)) + (1.0 * rng.normal(size=(k, d)))[labels] * planted
    return rsa_tests(X, category_similarity(labels), n_permutations=199, n_bootstrap=100, seed=seed)[0]


def _analogy(seed: int, planted: bool, n_pairs: int = 20, d: int = 20) -> TestResult:
    """Noise: 40 random words; planted: b = a + a shared offset + noise, so offsets solve what only-b cannot."""
    rng = np.random.default_rng(50 + seed)
    A = rng.normal(size=(n_pairs, d))
    B = A + 2.0 * rng.normal(size=d) + 0.6 * rng.normal(size=(n_pairs, d)) if planted else rng.normal(
        size=(n_pairs, d))
    V = np.concatenate([A, B])
    words = [f"a{i}" for i in range(n_pairs)] + [f"b{i}" for i in range(n_pairs)]
    pairs = [(f"a{k}", f"b{k}") for k in range(n_pairs)]
    quads = [(i, j) for i in range(n_pairs) for j in range(n_pairs) if i != j]
    q = questions_from_pairs(pairs, ["r"] * n_pairs, words, quads)
    return analogy_tests(V, q, methods=("3cosadd",), n_permutations=199, n_bootstrap=200, seed=seed)[0]


CASES: dict[str, Callable[[int, bool], TestResult]] = {
    "relations": _relation, "clustering": _clustering, "similarity": _rsa, "analogies": _analogy,
}


def _noise(case: Callable[[int, bool], TestResult], n: int) -> tuple[float, float, float]:
    """Coverage of 0, rate of p < 0.05, and the median CI width in units of the null's 95% span."""
    results = [case(s, False) for s in range(n)]
    covered = np.mean([r.ci_low <= 0.0 <= r.ci_high for r in results])
    significant = np.mean([r.p_value < 0.05 for r in results])
    sd = [r.extra.get("repaired_null_sd", r.extra["null_sd"]) for r in results]
    width = np.median([(r.ci_high - r.ci_low) / (2 * 1.96 * s) for r, s in zip(results, sd, strict=True)])
    return float(covered), float(significant), float(width)


# ------------------------------------------------------------------------------------ default tier
@pytest.mark.parametrize(("kind", "n"), [("relations", 30), ("analogies", 20), ("clustering", 20)])
def test_noise_ci_is_as_wide_as_the_null_and_p_is_rarely_small(kind: str, n: int) -> None:
    """On noise the interval must be the null's width (the plain bootstrap's was ~1.7x: it covered 0 always)."""
    covered, significant, width = _noise(CASES[kind], n)
    assert covered >= 0.85, covered
    assert significant <= 0.15, significant
    assert 0.75 <= width <= 1.3, width


@pytest.mark.parametrize("kind", sorted(CASES))
def test_planted_signal_is_significant_with_a_ci_that_contains_its_effect(kind: str) -> None:
    r = CASES[kind](0, True)
    assert r.p_value < 0.01 and r.ci_low > 0.0, (r.p_value, r.ci_low)
    assert r.ci_low <= r.effect_size <= r.ci_high
    assert r.extra["null_sd"] is not None and r.extra["n_permutations"] == 199


def test_planted_relation_ci_covers_the_mean_effect_over_data_sets() -> None:
    """The planted value: the effect averaged over 100 independent data sets of the same design."""
    truth = np.mean([_relation(1000 + s, True).effect_size for s in range(100)])
    hits = [(lambda r: r.ci_low <= truth <= r.ci_high)(_relation(s, True)) for s in range(20)]
    assert np.mean(hits) >= 0.7  # calibration tier: the rate itself


def test_sequential_draws_go_past_the_start_only_when_the_decision_needs_it() -> None:
    """A strong planted relation against a strict threshold draws until the Monte Carlo interval clears it; a
    null one stops at the first batch."""
    plan = SequentialPlan(start=99, maximum=6400, thresholds=(0.05 / 20,))
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 20))
    strong = relation_consistency_tests(A, A + 3.0 + 0.2 * rng.normal(size=A.shape), ["r"] * 12, plan=plan,
                                        n_bootstrap=50)[0]
    assert strong.extra["n_permutations"] > 99 and strong.extra["settled"]
    assert strong.extra["p_mc_high"] < 0.05 / 20 and strong.p_value == pytest.approx(1 / (1 + 3168))
    noise = relation_consistency_tests(A, rng.normal(size=A.shape), ["r"] * 12, plan=plan, n_bootstrap=50)[0]
    assert noise.extra["n_permutations"] == 99 and noise.extra["settled"]


# -------------------------------------------------------------------------------- calibration tier
@pytest.mark.parametrize(("kind", "n"), [("relations", 400), ("clustering", 400), ("analogies", 300),
                                         ("similarity", 300)])
def test_calibration_noise_ci_covers_zero_93_to_97_percent_and_p_is_exact(kind: str, n: int) -> None:
    covered, significant, _ = _noise(CASES[kind], n)
    assert 0.93 <= covered <= 0.97, covered
    assert 0.03 <= significant <= 0.07, significant
