"""Statistics for concept tests, in one import: permutation tests, grouped bootstrap, effect sizes, correction.

The work is done in small modules (one job each); this module re-exports their public names so analyses and
users can write ``from conceptspace.stats import permutation_test_layers, ResultSet``.

* :mod:`conceptspace.permutation` - group-respecting permutation tests (exact fast path and refit path)
* :mod:`conceptspace.bootstrap` - grouped bootstrap CIs
* :mod:`conceptspace.effects` - score minus chance, selectivity, AUROC, Cohen's d
* :mod:`conceptspace.results` - ``TestResult`` / ``ResultSet`` with Holm and Benjamini-Hochberg correction
* :mod:`conceptspace.calibration` - null calibration and power curves

Statistical choices are documented in docs/STATISTICS.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from conceptspace.bootstrap import (
    bootstrap_cv_scores,
    group_counts,
    grouped_bootstrap,
    percentile_interval,
    percentile_intervals,
)
from conceptspace.calibration import CalibrationResult, calibrate_null, power_curve, wilson_interval
from conceptspace.effects import auroc, cohens_d, project, score_minus_chance, selectivity
from conceptspace.permutation import (
    PermutationResult,
    draw_permutations,
    permutation_p_value,
    permutation_test,
    permutation_test_layers,
)
from conceptspace.results import Correction, ResultSet, TestResult


def correct(results: Iterable[TestResult], method: Correction = "holm", alpha: float = 0.05) -> ResultSet:
    """Adjust p-values across every given result (see :meth:`ResultSet.correct`)."""
    return ResultSet(results).correct(method, alpha)


__all__ = [
    "CalibrationResult",
    "Correction",
    "PermutationResult",
    "ResultSet",
    "TestResult",
    "auroc",
    "bootstrap_cv_scores",
    "calibrate_null",
    "cohens_d",
    "correct",
    "draw_permutations",
    "group_counts",
    "grouped_bootstrap",
    "percentile_interval",
    "percentile_intervals",
    "permutation_p_value",
    "permutation_test",
    "permutation_test_layers",
    "power_curve",
    "project",
    "score_minus_chance",
    "selectivity",
    "wilson_interval",
]
