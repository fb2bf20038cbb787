"""Probe scores: one scalar per fold, computed either one fit at a time or for many label sets at once.

Two implementations on purpose. :func:`score_one` calls scikit-learn's metrics (balanced accuracy of class
codes by a bit-identical copy of its arithmetic without the input checks) and is what the refitting
permutation path and plain cross-validation use; :func:`score_batch` computes the same metrics vectorised over
B label permutations for the exact fast path. The unit tests check the two agree, so the fast path inherits
scikit-learn's definitions rather than restating them.

Classification scorings: ``accuracy``, ``balanced_accuracy`` (the default: chance is 1/K whatever the class
balance, which matters because group-level permutations change the row-level balance), ``roc_auc`` (binary).
Regression scorings: ``r2`` (uniform average over outputs), ``spearman`` (mean over outputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, r2_score, roc_auc_score

from conceptspace.errors import InvalidInputError

CLASSIFICATION_SCORINGS = ("balanced_accuracy", "accuracy", "roc_auc")
REGRESSION_SCORINGS = ("r2", "spearman")


def default_scoring(task: str) -> str:
    """``balanced_accuracy`` for classification, ``r2`` for regression."""
    return "balanced_accuracy" if task == "classification" else "r2"


def check_scoring(scoring: str, task: str, n_classes: int | None) -> str:
    """Reject a scoring that does not fit the task, saying which ones do."""
    allowed = CLASSIFICATION_SCORINGS if task == "classification" else REGRESSION_SCORINGS
    if scoring not in allowed:
        raise InvalidInputError(f"scoring {scoring!r} does not apply to {task}; use one of {allowed}")
    if scoring == "roc_auc" and n_classes != 2:
        raise InvalidInputError(f"roc_auc needs two classes; y has {n_classes}. Use balanced_accuracy")
    return scoring


def needs_decision(scoring: str) -> bool:
    """Whether the scoring ranks continuous decision values instead of hard predictions."""
    return scoring == "roc_auc"


def chance_level(scoring: str, n_classes: int | None) -> float:
    """The score a probe with no information gets in expectation (balanced accuracy: 1/K; AUROC: 1/2).

    For plain accuracy this is 1/K too, which is only right for balanced classes; prefer balanced accuracy.
    """
    if scoring in ("balanced_accuracy", "accuracy"):
        return 1.0 / float(n_classes or 2)
    if scoring == "roc_auc":
        return 0.5
    return 0.0


def spearman_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Spearman correlation (mean over outputs for multi-output targets)."""
    yt = y_true.reshape(len(y_true), -1)
    yp = y_pred.reshape(len(y_pred), -1)
    return float(np.mean([scipy.stats.spearmanr(yt[:, j], yp[:, j]).statistic for j in range(yt.shape[1])]))


def _integer_codes(values: Any) -> bool:
    """A 1-D numeric array of whole numbers (class codes, possibly stored as floats), nothing else."""
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in "iuf":
        return False
    return values.dtype.kind != "f" or bool(np.all(values == np.floor(values)))


def _balanced_accuracy_of_codes(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's ``balanced_accuracy_score`` for class codes, bit for bit, without its input checks.

    The same arithmetic in the same order (each class's correct count over its true count, as integers divided
    once, then ``numpy.mean`` over the classes present in ``y_true``, sorted); a class only predicted is left
    out, as there. Scoring is called per fold thousands of times in a run (the nested-CV interval), and the
    checks cost ~50x the arithmetic. ``tests/unit/test_sklearn_equivalents.py`` pins the equality.
    """
    labels = np.union1d(y_true, y_pred)
    true_idx = np.searchsorted(labels, y_true)
    hits = true_idx[true_idx == np.searchsorted(labels, y_pred)]
    per_true = np.bincount(true_idx, minlength=labels.size)
    present = per_true > 0
    return float(np.mean(np.bincount(hits, minlength=labels.size)[present] / per_true[present]))


def score_one(scoring: str, y_true: Any, output: Any) -> float:
    """Score one fold: ``output`` is predictions, or decision values for ``roc_auc``."""
    if scoring == "accuracy":
        return float(accuracy_score(y_true, output))
    if scoring == "balanced_accuracy":
        if _integer_codes(y_true) and _integer_codes(output):
            return _balanced_accuracy_of_codes(np.asarray(y_true), np.asarray(output))
        return float(balanced_accuracy_score(y_true, output))
    if scoring == "roc_auc":
        return float(roc_auc_score(y_true, output))
    if scoring == "r2":
        return float(r2_score(y_true, output))
    if scoring == "spearman":
        return spearman_score(np.asarray(y_true), np.asarray(output))
    raise InvalidInputError(f"unknown scoring {scoring!r}")


def _ranks(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Average ranks (1-based) along ``dim`` of a float tensor, ties shared as in scipy's rankdata."""
    ranked = scipy.stats.rankdata(x.numpy(), axis=dim, method="average")
    return torch.from_numpy(np.ascontiguousarray(ranked))


def score_batch_classes(scoring: str, codes: torch.Tensor, output: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Scores for many label sets at once.

    codes: (..., n, B) integer class codes of the true (permuted) labels. output: (..., n, B) predicted codes,
    or decision values (positive class) for ``roc_auc``. Returns (..., B).
    """
    if scoring == "accuracy":
        return (codes == output).to(torch.float64).mean(dim=-2)
    if scoring == "balanced_accuracy":
        recalls = []
        present = []
        for k in range(n_classes):
            is_k = codes == k
            count = is_k.sum(dim=-2).to(torch.float64)
            hits = (is_k & (output == k)).sum(dim=-2).to(torch.float64)
            recalls.append(torch.where(count > 0, hits / count.clamp(min=1), torch.zeros((), dtype=torch.float64)))
            present.append(count > 0)
        rec = torch.stack(recalls)
        pres = torch.stack(present)
        return rec.sum(dim=0) / pres.sum(dim=0).to(torch.float64)
    if scoring == "roc_auc":
        ranks = _ranks(output, -2)
        pos = codes == 1
        n1 = pos.sum(dim=-2).to(torch.float64)
        n0 = codes.shape[-2] - n1
        rank_sum = (ranks * pos).sum(dim=-2)
        return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)
    raise InvalidInputError(f"unknown classification scoring {scoring!r}")


def score_batch_targets(scoring: str, y: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Regression scores for many target sets: y, pred (..., n, B, k) -> (..., B)."""
    if scoring == "r2":
        resid = ((y - pred) ** 2).sum(dim=-3)
        total = ((y - y.mean(dim=-3, keepdim=True)) ** 2).sum(dim=-3)
        # scikit-learn: a constant true target scores 1 if predicted exactly, else 0 (force_finite).
        r2 = torch.where(total > 0, 1 - resid / torch.where(total > 0, total, 1.0), (resid == 0).to(torch.float64))
        return r2.mean(dim=-1)
    if scoring == "spearman":
        ry, rp = _ranks(y, -3), _ranks(pred, -3)
        ry = ry - ry.mean(dim=-3, keepdim=True)
        rp = rp - rp.mean(dim=-3, keepdim=True)
        corr = (ry * rp).sum(dim=-3) / torch.sqrt((ry**2).sum(dim=-3) * (rp**2).sum(dim=-3))
        return corr.mean(dim=-1)
    raise InvalidInputError(f"unknown regression scoring {scoring!r}")
