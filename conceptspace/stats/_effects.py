"""Effect sizes that go next to every p-value.

Why: with thousands of items a probe 0.6 points above chance is "significant" and meaningless. A reviewer
wants how far above chance (score minus chance), how much is the representation rather than the probe's own
capacity (selectivity: task score minus control-task score, Hewitt & Liang 2019), and, for a direction,
how well it separates the classes (AUROC and Cohen's d of the projections onto it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from conceptspace.errors import InvalidInputError
from conceptspace.stats._scoring import chance_level
from conceptspace.utils.validation import check_features


def score_minus_chance(score: float | np.ndarray, scoring: str, n_classes: int | None) -> float | np.ndarray:
    """Score above what an uninformed probe gets (see :func:`conceptspace.stats._scoring.chance_level`)."""
    return score - chance_level(scoring, n_classes)


def selectivity(task_score: float | np.ndarray, control_score: float | np.ndarray) -> float | np.ndarray:
    """Task score minus control-task score: the part of the score the probe could not get by memorising."""
    return task_score - control_score


def project(X: Any, direction: Any) -> np.ndarray:
    """Scalar projection of every row of X (n, d) on a direction (normalised here)."""
    X = check_features(X)
    v = np.asarray(direction, dtype=np.float64)
    if v.shape != (X.shape[1],):
        raise InvalidInputError(f"direction has shape {v.shape}; expected ({X.shape[1]},)")
    norm = np.linalg.norm(v)
    if norm == 0:
        raise InvalidInputError("direction is the zero vector")
    return X @ (v / norm)


def _binary(y: Any, values: np.ndarray) -> np.ndarray:
    y_arr = np.asarray(y)
    if y_arr.shape[0] != values.shape[0]:
        raise InvalidInputError(f"y has {y_arr.shape[0]} entries but there are {values.shape[0]} projections")
    classes = np.unique(y_arr)
    if classes.size != 2:
        raise InvalidInputError(f"needs two classes; y has {classes.size}")
    return y_arr == classes[1]


def auroc(y: Any, scores: Any) -> float:
    """Probability that a random ``classes_[1]`` item scores above a random ``classes_[0]`` item."""
    s = np.asarray(scores, dtype=np.float64)
    return float(roc_auc_score(_binary(y, s), s))


def cohens_d(projections: Any, y: Any) -> float:
    """Standardised mean difference (class 1 minus class 0) with the pooled within-class SD."""
    p = np.asarray(projections, dtype=np.float64)
    pos = _binary(y, p)
    a, b = p[pos], p[~pos]
    if a.size < 2 or b.size < 2:
        raise InvalidInputError("Cohen's d needs at least two items per class")
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    if pooled == 0:
        raise InvalidInputError("projections have zero within-class variance; Cohen's d is undefined")
    return float((a.mean() - b.mean()) / np.sqrt(pooled))


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (good near 0, unlike the normal approximation)."""
    if trials <= 0:
        raise InvalidInputError("trials must be positive")
    z = float(norm.ppf(0.5 + level / 2))
    phat = successes / trials
    denom = 1 + z**2 / trials
    centre = (phat + z**2 / (2 * trials)) / denom
    half = z * np.sqrt(phat * (1 - phat) / trials + z**2 / (4 * trials**2)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
