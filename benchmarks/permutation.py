"""Exact fast-path permutation test vs scikit-learn's refitting ``permutation_test_score``.

Workload (the issue's): 2,000 items in 500 groups, 30 layers, d = 576, 1,000 permutations, 5 grouped folds,
ridge probe, balanced accuracy. The fast path runs the whole workload. The refit loop cannot (it extrapolates
to hours), so it is timed on a few permutations of one layer and extrapolated linearly in permutations and
layers; that extrapolation is also checked against a full-size-per-permutation measurement at 200 items.

Run: python benchmarks/permutation.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import permutation_test_score

from conceptspace.analyses.probes._estimators import RidgeProbe
from conceptspace.stats._folds import grouped_folds
from conceptspace.stats._permutation import permutation_test_layers

LAYERS, D, PERMS, FOLDS = 30, 576, 1000, 5


def workload(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anisotropic activations (float32, as extracted) with a weak planted concept, 4 items per group."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 4), 4)
    y = rng.permutation(np.arange(n // 4) % 2)[groups]
    scale = (np.arange(1, D + 1) ** -0.5).astype(np.float32)
    X = rng.standard_normal((LAYERS, n, D), dtype=np.float32) * scale
    X[:, :, 10] += 0.3 * scale[10] * y
    return X, y, groups


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), "?")


def sklearn_refit_per_permutation(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int, repeats: int
) -> list[float]:
    """Seconds per permutation (one layer) of permutation_test_score with an equivalent ridge classifier."""
    folds = grouped_folds(y, groups, n_splits=FOLDS, seed=0)
    centred = X - X.mean(axis=0)
    alpha = 0.1 * float(np.sum(centred.astype(np.float64) ** 2)) / X.shape[1]  # RidgeProbe's relative penalty
    times = timed(
        lambda: permutation_test_score(
            RidgeClassifier(alpha=alpha),
            X,
            y,
            cv=folds,
            n_permutations=k,
            scoring="balanced_accuracy",
            random_state=0,
            n_jobs=1,
        ),
        repeats,
    )
    return [t / (k + 1) for t in times]


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--refit-permutations", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report: dict[str, object] = {
        "date": dt.date.today().isoformat(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "workload": {"layers": LAYERS, "d": D, "permutations": PERMS, "folds": FOLDS},
    }
    for n in (200, 2000):
        X, y, groups = workload(n)
        fast = timed(
            lambda X=X, y=y, groups=groups: permutation_test_layers(
                RidgeProbe(), X, y, groups, n_permutations=PERMS, n_splits=FOLDS, seed=0, method="exact"
            ),
            args.repeats,
        )
        per_perm = sklearn_refit_per_permutation(X[0], y, groups, args.refit_permutations, args.repeats)
        refit_total = [t * (PERMS + 1) * LAYERS for t in per_perm]
        row = {
            "fast_exact": summary(fast),
            "sklearn_refit_per_permutation_per_layer": summary(per_perm),
            "sklearn_refit_extrapolated": summary(refit_total),
            "ratio_refit_over_fast_median": statistics.median(refit_total) / statistics.median(fast),
        }
        report[f"n={n}"] = row
        print(
            f"n={n}: fast median {row['fast_exact']['median_s']:.1f}s "
            f"(min {min(fast):.1f}, max {max(fast):.1f}); refit extrapolated "
            f"{statistics.median(refit_total) / 3600:.2f} h; ratio {row['ratio_refit_over_fast_median']:.0f}x",
            flush=True,
        )
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
