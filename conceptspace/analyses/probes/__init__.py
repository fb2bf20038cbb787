"""Linear probes: scikit-learn estimators, grouped cross-validation per layer with controls, null calibration.

Why together: a probe score means something only beside its controls (the control task, the untrained twin, the
lexical baseline) and its permutation null, fitted on the same folds; this subpackage owns that whole protocol.
The estimators follow scikit-learn's contract, so they also work inside ``cross_val_score`` and ``Pipeline``.
"""

from __future__ import annotations

from conceptspace.analyses.probes._calibration import CalibrationResult, calibrate_null, noise_labels, power_curve
from conceptspace.analyses.probes._estimators import (
    LayerwiseRidgeProbe,
    LDAProbe,
    LogisticProbe,
    MassMeanProbe,
    RidgeProbe,
    RidgeRegressionProbe,
)
from conceptspace.analyses.probes._evaluation import (
    CVResult,
    LayerRows,
    control_task_labels,
    cross_validate_layers,
    layer_rows,
    probe_layers,
    probe_with_controls,
    side_by_side,
    transfer_matrix,
)
from conceptspace.analyses.probes._ncv_interval import NestedCVError, nested_cv_standard_error

__all__ = [
    "CVResult",
    "CalibrationResult",
    "LDAProbe",
    "LayerRows",
    "LayerwiseRidgeProbe",
    "LogisticProbe",
    "MassMeanProbe",
    "NestedCVError",
    "RidgeProbe",
    "RidgeRegressionProbe",
    "calibrate_null",
    "control_task_labels",
    "cross_validate_layers",
    "layer_rows",
    "nested_cv_standard_error",
    "noise_labels",
    "power_curve",
    "probe_layers",
    "probe_with_controls",
    "side_by_side",
    "transfer_matrix",
]
