"""Does the permutation test keep its promises on a given activation array? Null calibration and power.

Why a function and not only a test: calibration depends on the data (group structure, anisotropy, layer
correlation), so a researcher can run :func:`calibrate_null` on their own activations. It draws many pure-noise
label sets (labels assigned per group, so the null respects the group structure), runs each through the very
code path the analyses use (:func:`~conceptspace.stats.permutation_test_layers` and
:meth:`~conceptspace.stats.ResultSet.correct`), and reports how often noise is called significant:
* per test, before correction (should be close to, and not above, alpha);
* family-wise after correction across the layers: the fraction of label sets in which *any* layer survives.
:func:`power_curve` does the converse on planted signals of known strength.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from conceptspace.analyses.probes._estimators import RidgeProbe
from conceptspace.errors import InvalidInputError
from conceptspace.site_names import layer_site
from conceptspace.stats._effects import wilson_interval
from conceptspace.stats._exact import OperatorCache
from conceptspace.stats._folds import group_folds
from conceptspace.stats._permutation import Scheme, permutation_test_layers
from conceptspace.stats._results import Correction, ResultSet, TestKey, TestResult
from conceptspace.utils.validation import check_features, check_groups


@dataclass(frozen=True)
class CalibrationResult:
    """p-values (label sets x layers) under pure-noise labels and the error rates they imply."""

    p_values: np.ndarray
    alpha: float
    correction: str
    false_positive_rate: float
    false_positive_ci: tuple[float, float]
    rate_per_layer: np.ndarray
    familywise_rate: float
    familywise_ci: tuple[float, float]
    min_p_value: float
    n_permutations: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the full p-value matrix)."""
        return {
            "alpha": self.alpha,
            "correction": self.correction,
            "n_label_sets": int(self.p_values.shape[0]),
            "n_layers": int(self.p_values.shape[1]),
            "n_permutations": self.n_permutations,
            "false_positive_rate": self.false_positive_rate,
            "false_positive_ci": list(self.false_positive_ci),
            "familywise_rate": self.familywise_rate,
            "familywise_ci": list(self.familywise_ci),
            "min_p_value": self.min_p_value,
        }


def noise_labels(group_codes: np.ndarray, rng: np.random.Generator, n_classes: int = 2) -> np.ndarray:
    """Random balanced labels assigned per group (constant within a group)."""
    n_groups = int(group_codes.max()) + 1
    per_group = rng.permutation(np.arange(n_groups) % n_classes)
    return per_group[group_codes]


def _family_rejects(p_values: np.ndarray, alpha: float, correction: Correction, scoring: str) -> bool:
    """Whether any test of one family survives the correction.

    For Holm this is exactly ``min(p) <= alpha / m`` (Holm's first step; nothing is rejected otherwise), which
    avoids statsmodels' Holm branch calling ``gc.collect()`` once per family (~0.4 s each here). Other methods go
    through :meth:`ResultSet.correct`, the code path of a real analysis; a unit test checks both agree.
    """
    if correction == "holm":
        return bool(np.min(p_values) <= alpha / p_values.size)
    family = ResultSet(
        TestResult(
            key=TestKey(test="calibration", dataset="noise", method="calibration", site=layer_site(layer),
                        control="shuffled"),
            claim=None,
            statistic_name=scoring,
            statistic=np.nan,
            effect_size_name="none",
            effect_size=np.nan,
            ci_low=np.nan,
            ci_high=np.nan,
            p_value=float(pv),
        )
        for layer, pv in enumerate(p_values)
    ).correct(correction, alpha)
    return any(bool(r.significant) for r in family)


def calibrate_null(
    X_layers: Any,
    groups: Sequence[Hashable] | np.ndarray | None,
    n_label_sets: int = 200,
    seed: int = 0,
    *,
    probe: Any = None,
    alpha: float = 0.05,
    n_permutations: int = 999,
    n_splits: int = 5,
    scoring: str | None = None,
    scheme: Scheme = "auto",
    correction: Correction = "holm",
    n_classes: int = 2,
) -> CalibrationResult:
    """Rejection rates of the permutation test on X (L, n, d) under ``n_label_sets`` pure-noise label sets.

    Every label set gets its own permutations (seeded from ``seed``); the grouped folds are label-free and
    shared by all label sets, so the per-fold solves are computed once (an :class:`OperatorCache`). The smallest
    p is 1/(B+1), so ``n_permutations`` must reach L/alpha for correction across L layers to be possible.
    Label sets are independent, so the family-wise rate's Wilson CI is exact in its sample size; the
    per-test rate pools correlated layers, so its CI is optimistic.
    """
    X = check_features(X_layers, ndim=3)
    codes = check_groups(groups, X.shape[1])
    probe = RidgeProbe() if probe is None else probe
    if n_permutations + 1 < X.shape[0] / alpha:
        raise InvalidInputError(
            f"with {n_permutations} permutations the smallest p is {1 / (n_permutations + 1):.4f}, above "
            f"alpha/L = {alpha / X.shape[0]:.4f}: no layer could ever survive correction. Use at least "
            f"{int(np.ceil(X.shape[0] / alpha))} permutations"
        )
    folds = group_folds(codes, n_splits=n_splits, seed=seed)
    spec = probe.label_linear_spec(n_classes) if hasattr(probe, "label_linear_spec") else None
    cache = OperatorCache(X, folds, spec.penalty) if spec is not None and spec.kind == "ridge" else None
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=(n_label_sets, 2))
    p = np.empty((n_label_sets, X.shape[0]))
    familywise = 0
    for s, (label_seed, test_seed) in enumerate(seeds):
        y = noise_labels(codes, np.random.default_rng(int(label_seed)), n_classes)
        res = permutation_test_layers(
            probe,
            X,
            y,
            groups,
            n_permutations=n_permutations,
            scoring=scoring,
            scheme=scheme,
            seed=int(test_seed),
            folds=folds,
            operator_cache=cache,
        )
        p[s] = res.p_value
        familywise += _family_rejects(res.p_value, alpha, correction, res.scoring)
    rejections = p <= alpha
    fp = int(rejections.sum())
    return CalibrationResult(
        p_values=p,
        alpha=alpha,
        correction=correction,
        false_positive_rate=fp / p.size,
        false_positive_ci=wilson_interval(fp, p.size),
        rate_per_layer=rejections.mean(axis=0),
        familywise_rate=familywise / n_label_sets,
        familywise_ci=wilson_interval(familywise, n_label_sets),
        min_p_value=float(p.min()),
        n_permutations=n_permutations,
    )


def power_curve(
    make_data: Callable[[float, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    strengths: Sequence[float],
    *,
    n_datasets: int = 50,
    seed: int = 0,
    probe: Any = None,
    alpha: float = 0.05,
    n_permutations: int = 200,
    n_splits: int = 5,
    scoring: str | None = None,
) -> pd.DataFrame:
    """Detection rate at each planted strength: fraction of datasets whose (single-layer) p <= alpha.

    ``make_data(strength, seed) -> (X (n, d) or (1, n, d), y, groups)``. Returns one row per strength with
    the rate, its Wilson CI and the median observed score.
    """
    probe = RidgeProbe() if probe is None else probe
    rows = []
    for k, strength in enumerate(strengths):
        hits = 0
        scores = []
        for i in range(n_datasets):
            data_seed = seed * 1_000_003 + k * 10_007 + i
            X, y, g = make_data(float(strength), data_seed)
            X3 = X if np.ndim(X) == 3 else np.asarray(X)[None]
            res = permutation_test_layers(
                probe, X3, y, g, n_permutations=n_permutations, n_splits=n_splits, scoring=scoring, seed=data_seed
            )
            hits += int(res.p_value[0] <= alpha)
            scores.append(float(res.statistic[0]))
        lo, hi = wilson_interval(hits, n_datasets)
        rows.append(
            {
                "strength": float(strength),
                "power": hits / n_datasets,
                "ci_low": lo,
                "ci_high": hi,
                "median_score": float(np.median(scores)),
                "n_datasets": n_datasets,
            }
        )
    return pd.DataFrame(rows)
