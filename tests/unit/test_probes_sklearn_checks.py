"""Every estimator exported by conceptspace.analyses.probes._estimators passes scikit-learn's own conformance checks.

Where a check does not apply, the estimator declares it through ``__sklearn_tags__`` (MassMeanProbe is
binary-only; RidgeRegressionProbe is multi-output; LayerwiseRidgeProbe also takes 3-D input), so no check is
listed as an expected failure.
"""

from __future__ import annotations

import inspect

from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

from conceptspace.analyses.probes import _estimators as probes
from conceptspace.analyses.probes._estimators import (
    LayerwiseRidgeProbe,
    LDAProbe,
    LogisticProbe,
    MassMeanProbe,
    RidgeProbe,
    RidgeRegressionProbe,
)

ESTIMATORS = [
    LogisticProbe(),
    RidgeProbe(),
    LDAProbe(),
    MassMeanProbe(),
    MassMeanProbe(covariance_adjusted=True),
    RidgeRegressionProbe(),
    LayerwiseRidgeProbe(),
]


def test_every_exported_estimator_is_checked() -> None:
    exported = {
        name
        for name in probes.__all__
        if inspect.isclass(getattr(probes, name)) and issubclass(getattr(probes, name), BaseEstimator)
    }
    assert exported == {type(e).__name__ for e in ESTIMATORS}


def test_binary_only_is_declared_not_discovered() -> None:
    tags = MassMeanProbe().__sklearn_tags__()
    assert tags.classifier_tags is not None and tags.classifier_tags.multi_class is False
    assert RidgeProbe().__sklearn_tags__().classifier_tags.multi_class is True  # type: ignore[union-attr]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)
