"""Variants of the nested-CV interval on the planted classes of the coverage test (docs/STATISTICS.md's table).

A standalone numpy re-implementation (plain ridge at penalty 0.1, per-group accuracy, equal classes), fast
enough for 1,000 data sets per size, so that centring and clipping choices are compared on the same draws:

    python benchmarks/ncv_interval_variants.py GROUPS DATA_SETS REPEATS   # e.g. 100 1000 50

Prints the Monte Carlo truth and SD of a single CV score and of the repeats' mean, and the coverage of each
variant. The library's own estimator is ``conceptspace.analyses.probes._ncv_interval``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

K = 5
Z = 1.959964


def planted(seed: int, n_groups: int, d: int = 20, delta: float = 1.0, per_group: int = 3) -> tuple[np.ndarray, ...]:
    """Two Gaussian classes ``delta`` SDs apart on one axis; a group's items share half their variance."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_groups) % 2)
    shared = rng.standard_normal((n_groups, 1, d))
    X = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal((n_groups, per_group, d))
    X[:, :, 0] += delta * (labels[:, None] - 0.5)
    return X, labels


def deal(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stratified fold of each group."""
    fold = np.empty(labels.size, int)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = (np.arange(idx.size) + rng.integers(K)) % K
    return fold


def group_accuracy(X: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per test group: accuracy of a ridge fitted on the training groups' items."""
    per = X.shape[1]
    Xtr = X[train].reshape(-1, X.shape[2])
    ytr = np.repeat(labels[train], per).astype(float)
    mean = Xtr.mean(0)
    centred = Xtr - mean
    scatter = centred.T @ centred
    ridge = 0.1 * np.trace(scatter) / scatter.shape[0]
    w = np.linalg.solve(scatter + ridge * np.eye(scatter.shape[0]), centred.T @ (ytr - ytr.mean()))
    predicted = (X[test] - mean) @ w + ytr.mean() > 0.5
    return (predicted == labels[test][:, None]).mean(1)


def cv_score(X: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> float:
    acc = np.empty(labels.size)
    for k in range(K):
        acc[fold == k] = group_accuracy(X, labels, fold != k, fold == k)
    return float(acc.mean())


def fold_variance(units: np.ndarray, strata: np.ndarray | None) -> float:
    """``b_k``: the variance of a fold's mean unit; with ``strata`` (each group's class), pooled within them, as the
    library computes it (the stratified dealing fixes a fold's class shares)."""
    if strata is None:
        return float(units.var(ddof=1) / units.size)
    present = np.unique(strata)
    squares = sum(((units[strata == s] - units[strata == s].mean()) ** 2).sum() for s in present)
    return float(squares / (units.size - present.size) / units.size)


def nested_cv(X: np.ndarray, labels: np.ndarray, rng: np.random.Generator, repeats: int,
              units: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
              stratified: bool = True) -> dict[str, float]:
    """The estimator's pieces for one data set: centre, first CV score, raw inflation, naive SE, dealing var.

    ``units(train, test)`` scores the test groups of a fit on the training groups (default: the ridge's per-group
    accuracy on ``X``, ``labels``); ``ncv_paired_variants.py`` passes a task-minus-control difference.
    ``stratified``: ``b_k`` pooled within classes (the library's), else the plain variance (the paper's)."""
    if units is None:
        def units(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return group_accuracy(X, labels, train, test)
    n_groups = labels.size
    pivots, pooled, outer = [], [], []
    for _ in range(repeats):
        fold = deal(labels, rng)
        held: dict[tuple[int, int], np.ndarray] = {}
        for f1 in range(K):
            for f2 in range(f1 + 1, K):
                test = (fold == f1) | (fold == f2)
                acc = units(~test, test)
                held[f1, f2], held[f2, f1] = acc[fold[test] == f1], acc[fold[test] == f2]
                pooled += [held[f1, f2], held[f2, f1]]
        scores = np.empty(n_groups)
        for f1 in range(K):
            test = fold == f1
            e_out = units(~test, test)
            scores[test] = e_out
            inner = np.concatenate([held[f2, f1] for f2 in range(K) if f2 != f1])
            pivots.append((inner.mean() - e_out.mean(), fold_variance(e_out, labels[test] if stratified else None)))
        outer.append(scores.mean())
    pv, all_inner = np.array(pivots), np.concatenate(pooled)
    sd = all_inner.std(ddof=1)
    naive_sub = sd / np.sqrt(n_groups * (K - 1) // K)
    raw = np.sqrt(max(0.0, float(np.mean(pv[:, 0] ** 2 - pv[:, 1])))) / naive_sub
    return {"centre": float(np.mean(outer)), "single": outer[0], "raw": raw, "naive": sd / np.sqrt(n_groups),
            "dealing_var": float(np.var(outer, ddof=1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", type=int)
    parser.add_argument("data_sets", type=int)
    parser.add_argument("repeats", type=int, nargs="?", default=50)
    parser.add_argument("--plain-b", action="store_true", help="the paper's b_k (plain variance of the fold)")
    args = parser.parse_args()
    start = time.time()
    truth_scores = np.array([cv_score(*planted(10**6 + i, args.groups),
                                      deal(planted(10**6 + i, args.groups)[1], np.random.default_rng(i)))
                             for i in range(2000)])
    truth, truth_sd = truth_scores.mean(), truth_scores.std(ddof=1)
    runs = [nested_cv(*planted(i, args.groups), np.random.default_rng([i, 7]), args.repeats,
                      stratified=not args.plain_b) for i in range(args.data_sets)]
    centre, single = np.array([r["centre"] for r in runs]), np.array([r["single"] for r in runs])
    raw, naive = np.array([r["raw"] for r in runs]), np.array([r["naive"] for r in runs])
    clipped_at_one = naive * np.clip(raw, 1.0, np.sqrt(K))
    used = naive * np.clip(raw, 1 / np.sqrt(K), np.sqrt(K))
    of_mean = np.sqrt(np.maximum(clipped_at_one**2 - np.array([r["dealing_var"] for r in runs])
                                 * (1 - 1 / args.repeats), 0.0))

    def coverage(point: np.ndarray, se: np.ndarray) -> float:
        return float(np.mean(np.abs(point - truth) <= Z * se))

    print(f"{args.groups} groups, {args.data_sets} data sets, {args.repeats} repeats, b_k "
          f"{'plain' if args.plain_b else 'stratified'} ({time.time() - start:.0f} s)")
    print(f"truth {truth:.4f}; Monte Carlo SD: single CV {truth_sd:.4f}, repeats' mean {centre.std(ddof=1):.4f}")
    rows = [("centre = repeats' mean, inflation in [1/sqrt(K), sqrt(K)] (used)", centre, used),
            ("centre = repeats' mean, inflation clipped below at 1", centre, clipped_at_one),
            ("single CV score, clipped at 1", single, clipped_at_one),
            ("single CV score, not clipped", single, used),
            ("repeats' mean, SE of that mean", centre, of_mean)]
    for name, point, se in rows:
        print(f"  {name}: coverage {coverage(point, se):.3f}, SE {se.mean():.4f} "
              f"({se.mean() / truth_sd:.2f}x the single score's SD), SD of the SE {se.std():.4f}")


if __name__ == "__main__":
    main()
