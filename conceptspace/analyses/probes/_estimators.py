"""Linear probes as scikit-learn estimators.

Why scikit-learn's contract: a probe then works inside ``cross_val_score``, ``Pipeline`` and
``permutation_test_score`` unchanged, and a reviewer can swap in any other estimator for comparison.
Hyper-parameters live in ``__init__`` (so ``get_params``/``clone`` work); fitted state lives in ``*_``
attributes. Every fitted binary probe exposes ``direction_``: the unit vector in activation space that points
from class ``classes_[0]`` towards ``classes_[1]``, which is what geometry and interventions consume.

The ridge, LDA and mass-mean probes are *linear in the labels* once X is fixed: the out-of-fold decision values
are a fixed matrix times the label vector (up to a positive per-fit scale for LDA/mass-mean). They say so
through :meth:`label_linear_spec`, which the exact permutation path in :mod:`conceptspace.stats` uses to
score a thousand label permutations with matrix products instead of a thousand refits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from conceptspace.errors import InvalidInputError
from conceptspace.stats._exact import LabelLinearSpec
from conceptspace.stats._linear import as_tensor, ridge_fit
from conceptspace.validation import check_features, check_labels, infer_task


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise InvalidInputError("the fitted direction is the zero vector: the classes have identical means")
    return v / norm


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
        X = check_features(X)
        if X.shape[1] != self.coef_.shape[-1]:
            raise InvalidInputError(f"X has {X.shape[1]} features but the probe was fitted on {self.coef_.shape[-1]}")
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
        X = check_features(X)
        y = check_labels(y, X.shape[0], task="classification")
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.fit(X, y)
        self.classes_ = model.classes_
        if self.classes_.size == 2:
            self.coef_ = model.coef_[0].copy()
            self.intercept_ = float(model.intercept_[0])
            self.direction_ = _unit(self.coef_)
        else:
            self.coef_ = model.coef_.copy()
            self.intercept_ = model.intercept_.copy()
            self.directions_ = np.stack([_unit(c) for c in self.coef_])
        self.n_features_in_ = X.shape[1]
        return self


class RidgeProbe(_LinearClassifier):
    """Ridge regression on 0/1 (binary) or one-hot (multiclass) targets, read out by threshold/argmax.

    ``alpha`` is relative to the mean eigenvalue of the training scatter (see :mod:`conceptspace.stats._linear`), so
    one value means the same amount of shrinkage at every layer.
    """

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha

    def label_linear_spec(self, n_classes: int | None) -> LabelLinearSpec | None:
        """Ridge predictions are linear in the (one-hot) labels."""
        return LabelLinearSpec(kind="ridge", penalty=float(self.alpha))

    def fit(self, X: Any, y: Any) -> RidgeProbe:
        """Fit on (n, d) features and class labels."""
        if self.alpha <= 0:
            raise InvalidInputError(f"alpha must be > 0; got {self.alpha}")
        X = check_features(X)
        y = check_labels(y, X.shape[0], task="classification")
        self.classes_, codes = _class_codes(y)
        k = self.classes_.size
        targets = codes[:, None].astype(np.float64) if k == 2 else np.eye(k)[codes]
        coef, intercept = ridge_fit(as_tensor(X)[None], as_tensor(targets), float(self.alpha))
        coef_np, intercept_np = coef[0].numpy().T, intercept[0].numpy()
        if k == 2:
            self.coef_ = coef_np[0]
            self.intercept_ = float(intercept_np[0]) - 0.5  # decision > 0  <=>  fitted value > 1/2
            self.direction_ = _unit(self.coef_)
        else:
            self.coef_ = coef_np
            self.intercept_ = intercept_np
            self.directions_ = np.stack([_unit(c) for c in self.coef_])
        self.n_features_in_ = X.shape[1]
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
        X = check_features(X)
        y = check_labels(y, X.shape[0], task="classification")
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
        self.n_features_in_ = d
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

    def fit(self, X: Any, y: Any) -> MassMeanProbe:
        """Fit on (n, d) features and two-class labels."""
        X = check_features(X)
        y = check_labels(y, X.shape[0], task="classification")
        self.classes_, codes = _class_codes(y)
        if self.classes_.size != 2:
            raise InvalidInputError(
                f"MassMeanProbe is binary; y has {self.classes_.size} classes. Use LDAProbe or RidgeProbe"
            )
        if self.covariance_adjusted and self.shrinkage <= 0:
            raise InvalidInputError(f"shrinkage must be > 0; got {self.shrinkage}")
        penalty = float(self.shrinkage) if self.covariance_adjusted else None
        w, self.coef_, self.intercept_ = _fisher_binary(X, codes == 1, penalty)
        self.direction_ = _unit(w)
        self.n_features_in_ = X.shape[1]
        return self


class RidgeRegressionProbe(RegressorMixin, BaseEstimator):
    """Ridge probe for continuous targets (latitude/longitude, year, valence); ``score`` is R^2.

    Use ``scoring="spearman"`` in :mod:`conceptspace.analyses.probes` for a rank-based read-out that ignores the
    (often nonlinear) scale of the target.
    """

    coef_: np.ndarray
    intercept_: np.ndarray | float

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha

    def label_linear_spec(self, n_classes: int | None) -> LabelLinearSpec | None:
        """Ridge predictions are linear in the targets (``n_classes`` is None for regression)."""
        return LabelLinearSpec(kind="ridge", penalty=float(self.alpha))

    def fit(self, X: Any, y: Any) -> RidgeRegressionProbe:
        """Fit on (n, d) features and (n,) or (n, k) float targets."""
        if self.alpha <= 0:
            raise InvalidInputError(f"alpha must be > 0; got {self.alpha}")
        X = check_features(X)
        y = check_labels(y, X.shape[0], task="regression")
        targets = y[:, None] if y.ndim == 1 else y
        coef, intercept = ridge_fit(as_tensor(X)[None], as_tensor(targets), float(self.alpha))
        coef_np, intercept_np = coef[0].numpy().T, intercept[0].numpy()
        if y.ndim == 1:
            self.coef_, self.intercept_ = coef_np[0], float(intercept_np[0])
            self.direction_ = _unit(self.coef_)
        else:
            self.coef_, self.intercept_ = coef_np, intercept_np
            self.directions_ = np.stack([_unit(c) for c in self.coef_])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, (n,) or (n, k)."""
        check_is_fitted(self, "coef_")
        X = check_features(X)
        return X @ self.coef_.T + self.intercept_


class LayerwiseRidgeProbe:
    """Ridge fitted on every layer at once: X is (n_layers, n, d); one batched solve, not one fit per layer.

    Not a scikit-learn estimator (its first axis is layers, which ``cross_val_score`` would split); use
    :func:`conceptspace.analyses.probes.cross_validate_layers` for grouped CV over layers. Classification targets
    are coded 0/1 or one-hot as in :class:`RidgeProbe`; float targets are regressed as in
    :class:`RidgeRegressionProbe`.
    """

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any) -> LayerwiseRidgeProbe:
        """Fit all layers; sets ``coef_`` (L, k, d), ``intercept_`` (L, k) and ``direction_`` (L, d) if k == 1."""
        if self.alpha <= 0:
            raise InvalidInputError(f"alpha must be > 0; got {self.alpha}")
        X = check_features(X, ndim=3)
        self.task_ = infer_task(y)
        y = check_labels(y, X.shape[1], task=self.task_)
        if self.task_ == "classification":
            self.classes_, codes = _class_codes(y)
            k = self.classes_.size
            targets = codes[:, None].astype(np.float64) if k == 2 else np.eye(k)[codes]
        else:
            targets = y[:, None] if y.ndim == 1 else y
        coef, intercept = ridge_fit(as_tensor(X), as_tensor(targets), float(self.alpha))
        self.coef_ = coef.transpose(1, 2).numpy()
        self.intercept_ = intercept.numpy()
        if self.coef_.shape[1] == 1:
            norms = np.linalg.norm(self.coef_[:, 0, :], axis=1, keepdims=True)
            self.direction_ = self.coef_[:, 0, :] / np.where(norms == 0, 1.0, norms)
        self.targets_1d_ = bool(np.asarray(y).ndim == 1)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Fitted values (L, n, k); for binary classification the 0/1 scale (threshold 1/2)."""
        X = check_features(X, ndim=3)
        out = torch.einsum("lnd,lkd->lnk", as_tensor(X), as_tensor(self.coef_)) + as_tensor(self.intercept_)[:, None]
        return out.numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Class labels or targets per layer: (L, n) (or (L, n, k) for multi-output regression)."""
        raw = self.decision_function(X)
        if self.task_ == "regression":
            return raw[..., 0] if self.targets_1d_ else raw
        if raw.shape[2] == 1:
            return self.classes_[(raw[..., 0] > 0.5).astype(np.int64)]
        return self.classes_[np.argmax(raw, axis=2)]
