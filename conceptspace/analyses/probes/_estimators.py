"""Linear probes as scikit-learn estimators.

Why scikit-learn's contract: a probe then works inside ``cross_val_score``, ``Pipeline`` and
``permutation_test_score`` unchanged, and a reviewer can swap in any other estimator for comparison.
Hyper-parameters live in ``__init__`` (so ``get_params``/``clone`` work); fitted state lives in ``*_``
attributes. Every fitted binary probe exposes ``direction_``: the unit vector in activation space that points
from class ``classes_[0]`` towards ``classes_[1]``, which is what geometry and interventions consume.

The ridge, LDA and mass-mean probes are *linear in the labels* once X is fixed: the out-of-fold decision values
are a fixed matrix times the label vector (up to a positive per-fit scale for LDA/mass-mean). They say so
through :meth:`label_linear_spec`, which the exact permutation path in :mod:`conceptspace.stats._permutation` uses to
score a thousand label permutations with matrix products instead of a thousand refits.

Input checks go through scikit-learn's ``validate_data`` first (so sparse, complex, object, 1-D, empty and
wrong-width inputs get scikit-learn's messages, feature names and ``n_features_in_`` are tracked, and every
probe passes ``sklearn.utils.estimator_checks.check_estimator``), then through the toolkit's own checks
(non-finite values, a single class), which say what to fix. scikit-learn's ``ValueError`` is re-raised as
:class:`~conceptspace.errors.InvalidInputError` (a ``ValueError``) with the same message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.special
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from conceptspace.errors import InvalidInputError
from conceptspace.stats._exact import LabelLinearSpec
from conceptspace.stats._linear import as_tensor, ridge_fit
from conceptspace.utils.deprecation import renamed_keywords
from conceptspace.utils.validation import check_features, check_labels, infer_task

__all__ = [
    "LDAProbe",
    "LayerwiseRidgeProbe",
    "LogisticProbe",
    "MassMeanProbe",
    "RidgeProbe",
    "RidgeRegressionProbe",
]


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise InvalidInputError("the fitted direction is the zero vector: the classes have identical means")
    return v / norm


def _features(estimator: BaseEstimator, X: Any, *, reset: bool, min_samples: int = 1) -> np.ndarray:
    """X (n, d) as float64 via ``validate_data`` (``reset`` in fit, not in predict), then finite-checked."""
    try:
        arr = validate_data(
            estimator, X, reset=reset, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=min_samples
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    return check_features(arr)


def _features_and_targets(estimator: BaseEstimator, X: Any, y: Any, *, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for ``fit``: scikit-learn's checks (at least two samples; y 1-D for classifiers), then ours."""
    regression = task == "regression"
    try:
        X_arr, y_arr = validate_data(
            estimator,
            X,
            y,
            dtype=np.float64,
            ensure_all_finite=False,
            ensure_min_samples=2,
            multi_output=regression,
            y_numeric=regression,
        )
        if not regression:
            check_classification_targets(y_arr)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    X_arr = check_features(X_arr)
    return X_arr, check_labels(y_arr, X_arr.shape[0], task=task)


def _class_codes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes.astype(np.int64)


class _LinearClassifier(ClassifierMixin, BaseEstimator):
    """Shared predict/decision for classifiers with ``coef_`` (d,) or (K, d) and ``intercept_``."""

    coef_: np.ndarray
    intercept_: np.ndarray | float
    classes_: np.ndarray

    def decision_function(self, X: Any) -> np.ndarray:
        """Binary: a score whose sign picks ``classes_[1]``; multiclass: one column per class."""
        check_is_fitted(self, "coef_")
        X = _features(self, X, reset=False)
        return X @ self.coef_.T + self.intercept_

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (values from ``classes_``)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]


class LogisticProbe(_LinearClassifier):
    """L2-regularised logistic regression (scikit-learn's ``LogisticRegression`` underneath).

    The usual probe of the probing literature; no closed form, so permutation tests refit it.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LogisticProbe:
        """Fit on (n, d) features and class labels."""
        X, y = _features_and_targets(self, X, y, task="classification")
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.fit(X, y)
        self.n_iter_ = model.n_iter_
        self.classes_ = model.classes_
        if self.classes_.size == 2:
            self.coef_ = model.coef_[0].copy()
            self.intercept_ = float(model.intercept_[0])
            self.direction_ = _unit(self.coef_)
        else:
            self.coef_ = model.coef_.copy()
            self.intercept_ = model.intercept_.copy()
            self.directions_ = np.stack([_unit(c) for c in self.coef_])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, K), columns in ``classes_`` order; equal to ``LogisticRegression``'s.

        Binary: the logistic sigmoid of the decision value; multiclass: the softmax of the K decision values
        (scikit-learn's multinomial model).
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = scipy.special.expit(scores)
            return np.column_stack([1.0 - positive, positive])
        return scipy.special.softmax(scores, axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed stably from the decision values."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([scipy.special.log_expit(-scores), scipy.special.log_expit(scores)])
        return scipy.special.log_softmax(scores, axis=1)


class RidgeProbe(_LinearClassifier):
    """Ridge regression on 0/1 (binary) or one-hot (multiclass) targets, read out by threshold/argmax.

    ``penalty`` (the ridge strength) is relative to the mean eigenvalue of the training scatter (see
    ``conceptspace.stats._linear``), so one value means the same amount of shrinkage at every layer.
    """

    @renamed_keywords(alpha="penalty")
    def __init__(self, penalty: float = 0.1) -> None:
        self.penalty = penalty

    def label_linear_spec(self, n_classes: int | None) -> LabelLinearSpec | None:
        """Ridge predictions are linear in the (one-hot) labels."""
        return LabelLinearSpec(kind="ridge", penalty=float(self.penalty))

    def fit(self, X: Any, y: Any) -> RidgeProbe:
        """Fit on (n, d) features and class labels."""
        if self.penalty <= 0:
            raise InvalidInputError(f"penalty must be > 0; got {self.penalty}")
        X, y = _features_and_targets(self, X, y, task="classification")
        self.classes_, codes = _class_codes(y)
        k = self.classes_.size
        targets = codes[:, None].astype(np.float64) if k == 2 else np.eye(k)[codes]
        coef, intercept = ridge_fit(as_tensor(X)[None], as_tensor(targets), float(self.penalty))
        coef_np, intercept_np = coef[0].numpy().T, intercept[0].numpy()
        if k == 2:
            self.coef_ = coef_np[0]
            self.intercept_ = float(intercept_np[0]) - 0.5  # decision > 0  <=>  fitted value > 1/2
            self.direction_ = _unit(self.coef_)
        else:
            self.coef_ = coef_np
            self.intercept_ = intercept_np
            self.directions_ = np.stack([_unit(c) for c in self.coef_])
        return self


def _fisher_binary(X: np.ndarray, is_pos: np.ndarray, penalty: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Fisher direction plus a 1-D LDA read-out; returns (direction w, coef, intercept).

    ``w = (S_W + r I)^{-1} (mu_1 - mu_0)`` with S_W the pooled within-class scatter and
    ``r = penalty * trace(C_total) / d`` (label-free, see module doc); ``penalty=None`` gives ``w = mu_1 - mu_0``
    (mass-mean). Projections ``s = x . w`` are then classified by 1-D Gaussian LDA with class priors from the
    training counts: predict 1 when ``(s - (m0 + m1)/2) (m1 - m0) / var + log(n1/n0) > 0``. That rule is
    invariant to rescaling w, which is what makes it computable from the label-linear unnormalised direction.
    """
    n, d = X.shape
    pos, neg = X[is_pos], X[~is_pos]
    n1, n0 = pos.shape[0], neg.shape[0]
    mu1, mu0 = pos.mean(axis=0), neg.mean(axis=0)
    delta = mu1 - mu0
    if penalty is None:
        w = delta
    else:
        total = X - X.mean(axis=0)
        ridge = penalty * float(np.einsum("ij,ij->", total, total)) / d
        within = (pos - mu1).T @ (pos - mu1) + (neg - mu0).T @ (neg - mu0)
        w = scipy.linalg.solve(within + max(ridge, 1e-150) * np.eye(d), delta, assume_a="pos")
    s = X @ w
    m1, m0 = float(s[is_pos].mean()), float(s[~is_pos].mean())
    var = (float(((s[is_pos] - m1) ** 2).sum()) + float(((s[~is_pos] - m0) ** 2).sum())) / n
    var = max(var, 1e-300)
    scale = (m1 - m0) / var
    coef = w * scale
    intercept = -0.5 * (m0 + m1) * scale + float(np.log(n1 / n0))
    return w, coef, intercept


class LDAProbe(_LinearClassifier):
    """Linear discriminant analysis with shrinkage towards a scaled identity.

    Binary: the Fisher direction ``(S_W + rI)^{-1}(mu_1 - mu_0)`` and a 1-D LDA threshold on the projections
    (see :func:`_fisher_binary`). Multiclass: Gaussian LDA with the same regularised pooled covariance.
    Not scikit-learn's ``LinearDiscriminantAnalysis``: the penalty is scaled by the *total* scatter so that it
    does not depend on the labels, which makes the binary fit exactly permutable with matrix products.
    """

    def __init__(self, shrinkage: float = 0.1) -> None:
        self.shrinkage = shrinkage

    def label_linear_spec(self, n_classes: int | None) -> LabelLinearSpec | None:
        """Binary LDA's direction is a positive multiple of a label-linear vector (Sherman-Morrison)."""
        if n_classes != 2:
            return None
        return LabelLinearSpec(kind="fisher", penalty=float(self.shrinkage))

    def fit(self, X: Any, y: Any) -> LDAProbe:
        """Fit on (n, d) features and class labels."""
        if self.shrinkage <= 0:
            raise InvalidInputError(
                f"shrinkage must be > 0 (the within-class scatter may be singular); got {self.shrinkage}"
            )
        X, y = _features_and_targets(self, X, y, task="classification")
        self.classes_, codes = _class_codes(y)
        n, d = X.shape
        if self.classes_.size == 2:
            w, self.coef_, self.intercept_ = _fisher_binary(X, codes == 1, float(self.shrinkage))
            self.direction_ = _unit(w)
        else:
            total = X - X.mean(axis=0)
            ridge = float(self.shrinkage) * float(np.einsum("ij,ij->", total, total)) / d
            means = np.stack([X[codes == k].mean(axis=0) for k in range(self.classes_.size)])
            resid = X - means[codes]
            cov = (resid.T @ resid + max(ridge, 1e-150) * np.eye(d)) / n
            sol = scipy.linalg.solve(cov, means.T, assume_a="pos").T  # (K, d)
            priors = np.bincount(codes) / n
            self.coef_ = sol
            self.intercept_ = -0.5 * np.einsum("kd,kd->k", means, sol) + np.log(priors)
            centred = scipy.linalg.solve(cov, (means - X.mean(axis=0)).T, assume_a="pos").T
            self.directions_ = np.stack([_unit(c) for c in centred])
        return self


class MassMeanProbe(_LinearClassifier):
    """Difference-of-means probe (Marks & Tegmark's mass-mean probe); binary only.

    ``covariance_adjusted=False``: direction ``mu_1 - mu_0``. ``True``: the direction is multiplied by the
    inverse (shrunk) within-class covariance, which Marks & Tegmark use for in-distribution classification;
    that equals the binary :class:`LDAProbe` direction. Both read out with the same 1-D LDA threshold.
    The unadjusted direction is the one to steer with: it is not bent by the covariance of the data.
    """

    def __init__(self, covariance_adjusted: bool = False, shrinkage: float = 0.1) -> None:
        self.covariance_adjusted = covariance_adjusted
        self.shrinkage = shrinkage

    def label_linear_spec(self, n_classes: int | None) -> LabelLinearSpec | None:
        """The direction is a positive multiple of a label-linear vector."""
        if n_classes != 2:
            return None
        return LabelLinearSpec(kind="fisher", penalty=float(self.shrinkage) if self.covariance_adjusted else None)

    def __sklearn_tags__(self) -> Tags:
        """Binary only: scikit-learn's conformance checks then skip the multiclass ones."""
        tags = super().__sklearn_tags__()
        assert tags.classifier_tags is not None
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: Any, y: Any) -> MassMeanProbe:
        """Fit on (n, d) features and two-class labels."""
        X, y = _features_and_targets(self, X, y, task="classification")
        self.classes_, codes = _class_codes(y)
        if self.classes_.size != 2:
            raise InvalidInputError(
                f"Only binary classification is supported. MassMeanProbe is binary; y has {self.classes_.size} "
                "classes. Use LDAProbe or RidgeProbe for more"
            )
        if self.covariance_adjusted and self.shrinkage <= 0:
            raise InvalidInputError(f"shrinkage must be > 0; got {self.shrinkage}")
        penalty = float(self.shrinkage) if self.covariance_adjusted else None
        w, self.coef_, self.intercept_ = _fisher_binary(X, codes == 1, penalty)
        self.direction_ = _unit(w)
        return self


class RidgeRegressionProbe(RegressorMixin, BaseEstimator):
    """Ridge probe for continuous targets (latitude/longitude, year, valence); ``score`` is R^2.

    Use ``scoring="spearman"`` in :mod:`conceptspace.analyses.probes` for a rank-based read-out that ignores the
    (often nonlinear) scale of the target.
    """

    coef_: np.ndarray
    intercept_: np.ndarray | float

    @renamed_keywords(alpha="penalty")
    def __init__(self, penalty: float = 0.1) -> None:
        self.penalty = penalty

    def __sklearn_tags__(self) -> Tags:
        """Multi-output regression: y may be (n, k)."""
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def label_linear_spec(self, n_classes: int | None) -> LabelLinearSpec | None:
        """Ridge predictions are linear in the targets (``n_classes`` is None for regression)."""
        return LabelLinearSpec(kind="ridge", penalty=float(self.penalty))

    def fit(self, X: Any, y: Any) -> RidgeRegressionProbe:
        """Fit on (n, d) features and (n,) or (n, k) float targets."""
        if self.penalty <= 0:
            raise InvalidInputError(f"penalty must be > 0; got {self.penalty}")
        X, y = _features_and_targets(self, X, y, task="regression")
        targets = y[:, None] if y.ndim == 1 else y
        coef, intercept = ridge_fit(as_tensor(X)[None], as_tensor(targets), float(self.penalty))
        coef_np, intercept_np = coef[0].numpy().T, intercept[0].numpy()
        if y.ndim == 1:
            self.coef_, self.intercept_ = coef_np[0], float(intercept_np[0])
            self.direction_ = _unit(self.coef_)
        else:
            self.coef_, self.intercept_ = coef_np, intercept_np
            self.directions_ = np.stack([_unit(c) for c in self.coef_])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, (n,) or (n, k)."""
        check_is_fitted(self, "coef_")
        X = _features(self, X, reset=False)
        return X @ self.coef_.T + self.intercept_


class LayerwiseRidgeProbe(BaseEstimator):
    """Ridge fitted on every layer at once: X is (n_layers, n, d); one batched solve, not one fit per layer.

    A 2-D X (n, d) is a single layer, and then the probe is an ordinary scikit-learn estimator: predictions have
    no layer axis, which is the form scikit-learn's conformance checks exercise. With 3-D X do not use
    ``cross_val_score`` (it would split the layer axis); use :func:`conceptspace.analyses.probes.cross_validate_layers`
    for grouped CV over layers. Classification targets (anything but floats) are coded 0/1 or one-hot as in
    :class:`RidgeProbe`; float targets are regressed as in :class:`RidgeRegressionProbe`.
    """

    @renamed_keywords(alpha="penalty")
    def __init__(self, penalty: float = 0.1) -> None:
        self.penalty = penalty

    def __sklearn_tags__(self) -> Tags:
        """3-D input (layers first) besides 2-D; y required; float y may be (n, k)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        return tags

    def _layers(self, X: Any, *, reset: bool) -> np.ndarray:
        """X as (L, n, d) float64: 2-D through ``validate_data``; 3-D checked here (``n_features_in_`` = d).

        Fitting (``reset``) needs at least two samples (scikit-learn's message for 2-D X).
        """
        if np.ndim(X) != 3:
            return _features(self, X, reset=reset, min_samples=2 if reset else 1)[None]
        try:
            arr = check_array(X, allow_nd=True, dtype=np.float64, ensure_all_finite=False, input_name="X")
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
        arr = check_features(arr, ndim=3)
        if reset and arr.shape[1] < 2:
            raise InvalidInputError(f"fitting needs at least 2 samples per layer; got n_samples={arr.shape[1]}")
        if reset:
            self.n_features_in_ = arr.shape[2]
        elif arr.shape[2] != self.n_features_in_ or arr.shape[0] != self.coef_.shape[0]:
            raise InvalidInputError(
                f"X has {arr.shape[0]} layers of {arr.shape[2]} features, but {type(self).__name__} was fitted on "
                f"{self.coef_.shape[0]} layers of {self.n_features_in_}"
            )
        return arr

    def fit(self, X: Any, y: Any) -> LayerwiseRidgeProbe:
        """Fit all layers; sets ``coef_`` (L, k, d), ``intercept_`` (L, k) and ``direction_`` (L, d) if k == 1."""
        if self.penalty <= 0:
            raise InvalidInputError(f"penalty must be > 0; got {self.penalty}")
        if y is None:
            raise InvalidInputError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        self.layered_ = bool(np.ndim(X) == 3)
        X = self._layers(X, reset=True)
        self.task_ = infer_task(y)
        y = check_labels(y, X.shape[1], task=self.task_)
        if self.task_ == "classification":
            self.classes_, codes = _class_codes(y)
            k = self.classes_.size
            targets = codes[:, None].astype(np.float64) if k == 2 else np.eye(k)[codes]
        else:
            targets = y[:, None] if y.ndim == 1 else y
        coef, intercept = ridge_fit(as_tensor(X), as_tensor(targets), float(self.penalty))
        self.coef_ = coef.transpose(1, 2).numpy()
        self.intercept_ = intercept.numpy()
        if self.coef_.shape[1] == 1:
            norms = np.linalg.norm(self.coef_[:, 0, :], axis=1, keepdims=True)
            self.direction_ = self.coef_[:, 0, :] / np.where(norms == 0, 1.0, norms)
        self.targets_1d_ = bool(np.asarray(y).ndim == 1)
        return self

    def _checked_layers(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        if bool(np.ndim(X) == 3) != self.layered_:
            fitted = "(n_layers, n, d)" if self.layered_ else "(n, d)"
            raise InvalidInputError(f"{type(self).__name__} was fitted on X of shape {fitted}; pass X of that form")
        return self._layers(X, reset=False)

    def decision_function(self, X: Any) -> np.ndarray:
        """Fitted values (L, n, k), or (n, k) for 2-D X; for binary classification the 0/1 scale (threshold 1/2)."""
        layers = self._checked_layers(X)
        out = torch.einsum("lnd,lkd->lnk", as_tensor(layers), as_tensor(self.coef_))
        raw = (out + as_tensor(self.intercept_)[:, None]).numpy()
        return raw if self.layered_ else raw[0]

    def predict(self, X: Any) -> np.ndarray:
        """Class labels or targets per layer: (L, n) (or (L, n, k) for multi-output regression); no L for 2-D X."""
        raw = self.decision_function(X)
        if not self.layered_:
            raw = raw[None]
        if self.task_ == "regression":
            out = raw[..., 0] if self.targets_1d_ else raw
        elif raw.shape[2] == 1:
            out = self.classes_[(raw[..., 0] > 0.5).astype(np.int64)]
        else:
            out = self.classes_[np.argmax(raw, axis=2)]
        return out if self.layered_ else out[0]
