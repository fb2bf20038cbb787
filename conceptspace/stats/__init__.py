"""Statistics for concept tests, in one import: permutation tests, grouped bootstrap, effect sizes, correction.

Why a layer of its own, below the analyses: every analysis ends in "a statistic, an effect size with a CI, a
p-value", and the correction must run across every test of a run, so the numerics (model-agnostic: arrays in,
results out) live once, here. The work is done in small private modules (one job each); this package
re-exports their public names: ``from conceptspace.stats import permutation_test_layers, ResultSet``.

* :mod:`conceptspace.stats` - group-respecting permutation tests (exact fast path and refit path)
* :mod:`conceptspace.stats._bootstrap` - grouped bootstrap CIs
* :mod:`conceptspace.stats._effects` - score minus chance, selectivity, AUROC, Cohen's d
* :mod:`conceptspace.stats` - ``TestResult`` / ``ResultSet`` with Holm and Benjamini-Hochberg correction
* :mod:`conceptspace.stats._folds` - grouped (stratified) k-fold splits

Null calibration and power curves of the probe test live with the probes (:mod:`conceptspace.analyses.probes`).

Statistical choices are documented in docs/STATISTICS.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from conceptspace.stats._bootstrap import (
    bootstrap_cv_scores,
    group_counts,
    grouped_bootstrap,
    percentile_interval,
    percentile_intervals,
)
from conceptspace.stats._effects import auroc, cohens_d, project, score_minus_chance, selectivity, wilson_interval
from conceptspace.stats._paired import paired_difference, seed_mean_replicates, seed_mixture
from conceptspace.stats._permutation import (
    PermutationResult,
    draw_permutations,
    permutation_p_value,
    permutation_test,
    permutation_test_layers,
)
from conceptspace.stats._results import (
    SPECTRUM_MATCHED,
    TRAINED,
    UNTRAINED,
    Correction,
    PValueFloorWarning,
    ResultSet,
    TestKey,
    TestResult,
    attainable_floor,
    is_sanity_check,
)
from conceptspace.stats._sequential import (
    SequentialNull,
    SequentialPlan,
    exceedances,
    is_settled,
    mc_interval,
    null_extra,
    sequential_null,
)


def correct(results: Iterable[TestResult], method: Correction = "holm", alpha: float = 0.05) -> ResultSet:
    """Adjust p-values across every given result (see :meth:`ResultSet.correct`)."""
    return ResultSet(results).correct(method, alpha)


__all__ = [
    "SPECTRUM_MATCHED",
    "TRAINED",
    "UNTRAINED",
    "Correction",
    "PValueFloorWarning",
    "PermutationResult",
    "ResultSet",
    "SequentialNull",
    "SequentialPlan",
    "TestKey",
    "TestResult",
    "attainable_floor",
    "auroc",
    "bootstrap_cv_scores",
    "cohens_d",
    "correct",
    "draw_permutations",
    "exceedances",
    "group_counts",
    "grouped_bootstrap",
    "is_sanity_check",
    "is_settled",
    "mc_interval",
    "null_extra",
    "paired_difference",
    "percentile_interval",
    "percentile_intervals",
    "permutation_p_value",
    "permutation_test",
    "permutation_test_layers",
    "project",
    "score_minus_chance",
    "seed_mean_replicates",
    "seed_mixture",
    "selectivity",
    "sequential_null",
    "wilson_interval",
]
