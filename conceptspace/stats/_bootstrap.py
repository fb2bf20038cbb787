"""Grouped bootstrap confidence intervals: resample groups, not rows.

Why groups: rows of one group (one entity, template or source sentence) are correlated, so resampling rows
pretends there is more independent evidence than there is and gives intervals that are too narrow. Drawing
whole groups with replacement keeps the dependence inside each draw.

For cross-validated probe scores the interval is over the *evaluation* sample: the out-of-fold outputs are
fixed and every resampled item keeps its fold, so a replicate's score is the same fold-mean statistic as the
point estimate (the identity resample reproduces it exactly). It does not include refitting variability, which
the permutation test (not the CI) accounts for. Replicates of two statistics drawn with the same ``seed`` and
``groups`` use identical resamples, so their differences (e.g. selectivity = task - control) form a paired
bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np

from conceptspace.errors import InvalidInputError
from conceptspace.stats._scoring import score_one
from conceptspace.utils.deprecation import renamed_keywords
from conceptspace.utils.validation import check_groups


@renamed_keywords(n_boot="n_bootstrap")
def group_counts(groups: Sequence[Hashable] | np.ndarray | None, n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) multiplicity of each row: how often its group was drawn (G draws with replacement)."""
    codes = check_groups(groups, n)
    n_groups = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_bootstrap, n_groups))
    per_group = np.zeros((n_bootstrap, n_groups), dtype=np.float64)
    np.add.at(per_group, (np.arange(n_bootstrap)[:, None], draws), 1.0)
    return per_group[:, codes]


@renamed_keywords(n_boot="n_bootstrap")
def grouped_bootstrap(
    statistic: Callable[[np.ndarray], float],
    groups: Sequence[Hashable] | np.ndarray | None,
    n: int,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap distribution of ``statistic(row_indices)`` with groups resampled with replacement.

    ``row_indices`` lists each row of a drawn group once per draw (so its length varies between replicates).
    """
    counts = group_counts(groups, n, n_bootstrap, seed).astype(np.int64)
    rows = np.arange(n)
    return np.array([statistic(np.repeat(rows, c)) for c in counts])


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates along the last axis (NaN replicates ignored)."""
    if not 0.0 < level < 1.0:
        raise InvalidInputError(f"level must be in (0, 1); got {level}")
    tail = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(replicates, [tail, 1.0 - tail], axis=-1)
    return float(lo), float(hi)


def percentile_intervals(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`percentile_interval` over leading axes."""
    tail = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(replicates, [tail, 1.0 - tail], axis=-1)
    return lo, hi


@renamed_keywords(n_boot="n_bootstrap")
def bootstrap_cv_scores(
    scoring: str,
    truth: np.ndarray,
    outputs: np.ndarray,
    fold_id: np.ndarray,
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    n_classes: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Replicates (L, n_bootstrap) of the fold-mean CV score from fixed out-of-fold outputs.

    truth: (n,) class codes or (n,) / (n, k) targets. outputs: (L, n[, k]) per-layer out-of-fold predicted
    codes, decision values (``roc_auc``) or predictions (regression). Accuracy, balanced accuracy and R^2 use
    multiplicity weights (fast); AUROC and Spearman resample explicitly (slower, one metric call per replicate).
    """
    n = truth.shape[0]
    weights = group_counts(groups, n, n_bootstrap, seed)
    n_folds = int(fold_id.max()) + 1
    masks = [fold_id == f for f in range(n_folds)]
    per_fold = np.full((n_folds, n_bootstrap, outputs.shape[0]), np.nan)
    if scoring in ("accuracy", "balanced_accuracy"):
        correct = (outputs == truth[None, :]).astype(np.float64)  # (L, n)
        for f, m in enumerate(masks):
            w = weights * m
            if scoring == "accuracy":
                per_fold[f] = _ratio(w @ correct.T, w.sum(axis=1)[:, None])
            else:
                assert n_classes is not None
                recalls = []
                for k in range(n_classes):
                    wk = w * (truth == k)
                    recalls.append(_ratio(wk @ correct.T, wk.sum(axis=1)[:, None]))
                per_fold[f] = _mean_of_present(np.stack(recalls)) if recalls else np.nan
    elif scoring == "r2":
        y = truth.reshape(n, -1)
        pred = outputs.reshape(outputs.shape[0], n, -1)
        for f, m in enumerate(masks):
            w = weights * m
            wsum = w.sum(axis=1)
            r2_out = []
            for j in range(y.shape[1]):
                sres = w @ ((pred[:, :, j] - y[None, :, j]) ** 2).T  # (B, L)
                ybar = _ratio(w @ y[:, j], wsum)
                stot = w @ (y[:, j] ** 2) - wsum * ybar**2
                r2_out.append(1.0 - _ratio(sres, stot[:, None]))
            per_fold[f] = np.mean(np.stack(r2_out), axis=0)
    else:
        counts = weights.astype(np.int64)
        rows = np.arange(n)
        for b in range(n_bootstrap):
            idx = np.repeat(rows, counts[b])
            for f in range(n_folds):
                sel = idx[fold_id[idx] == f]
                if sel.size == 0 or (scoring == "roc_auc" and np.unique(truth[sel]).size < 2):
                    continue
                for layer in range(outputs.shape[0]):
                    per_fold[f, b, layer] = score_one(scoring, truth[sel], outputs[layer][sel])
    return _mean_of_present(per_fold).T


def _mean_of_present(values: np.ndarray) -> np.ndarray:
    """Mean over the first axis of the non-NaN entries, NaN where there are none.

    ``np.nanmean`` computes the same sum / count but warns "Mean of empty slice" for every all-NaN column, and
    all-NaN columns are expected here: a bootstrap replicate can draw no item of a fold, or of a class within
    a fold, and that replicate's fold score or recall is then undefined (NaN), not an error.
    """
    present = ~np.isnan(values)
    return _ratio(np.where(present, values, 0.0).sum(axis=0), present.sum(axis=0))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
