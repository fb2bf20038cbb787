"""Candidate intervals for a regression probe's R^2 effect against known truth (docs/STATISTICS.md, "Still wide").

The reported interval of an R^2 effect was the refit bootstrap's, which errs wide (it is now the signal world's
where the targets suit it: ``benchmarks/r2_signal_world.py``). This script measures, on the same data sets, that
interval and five alternatives built from the permutation null and the bootstrap run on
permuted targets, through the library's own probes (``RidgeRegressionProbe`` at its default penalty, or the
nested-penalty probe that ``c4_latitude`` runs):

* ``null``: the permutation test inverted under a location shift, ``[effect - q97.5, effect - q2.5]`` of the
  centred null draws (exact on pure noise by exchangeability);
* ``null x max(1, k)``: the same widened by ``k`` = the bootstrap SD on the real targets over its mean on M
  permuted target sets, where the bootstrap says the real labels spread more than permuted ones;
* ``null + excess``: the null quantiles scaled by ``1 + max(0, boot SD - permuted boot SD) / null SD``;
* ``bootstrap / c``: the bootstrap's deviations divided by ``c`` = its SD on permuted targets over the null SD
  (the over-statement measured where the truth is known), as a basic and as a normal interval.

    python benchmarks/r2_interval_variants.py collect GROUPS DATA_SETS SLOPE {plain,nested} {gaussian,t3} OUT.npy
    python benchmarks/r2_interval_variants.py summary OUT.npy [...]

``SLOPE`` 0 is pure noise (truth: effect 0); otherwise the truth is the expected CV R^2 over 300 independent
data sets minus the data set's own null mean. Targets are standard normal or Student t with 3 degrees of freedom
(heavy tails), one per group of 3 items, written ``SLOPE`` times into one of 20 Gaussian axes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from conceptspace.analyses.probes import RidgeRegressionProbe
from conceptspace.analyses.probes._cv import cross_validate_layers
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.analyses.probes._nested import (
    NestedRidgeRegressionProbe,
    check_grid,
    nested_cross_validate,
    nested_null_draws,
)
from conceptspace.stats._permutation import draw_permutations, null_draws
from conceptspace.stats._refit_bootstrap import refit_bootstrap

N_BOOTSTRAP = 200
N_PERMUTATIONS = 199
N_PERMUTED_BOOTSTRAPS = 8
COLUMNS = ("effect", "truth", "boot_low", "boot_high", "null_sd", "null_q025", "null_q975", "boot_sd", "boot_q025",
           "boot_q975", "permuted_boot_sd", "p")


def data(seed: int, n_groups: int, slope: float, tails: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (1, n, 20), a target per group repeated over its 3 items, and the groups."""
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(n_groups)
    groups = np.repeat(np.arange(n_groups), 3)
    shared = rng.standard_normal((n_groups, 20))[groups]
    X = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal((groups.size, 20))
    if tails == "t3":
        target = np.random.default_rng([seed, 5]).standard_t(3, n_groups)
    X[:, 0] += slope * target[groups]
    return X[None], target[groups], groups


def make(kind: str) -> Any:
    return NestedRidgeRegressionProbe() if kind == "nested" else RidgeRegressionProbe()


def bootstrap_sd_and_deviations(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                                seed: int) -> np.ndarray:
    """The refit bootstrap's re-centred deviations (B,), as a run computes them for this probe."""
    probe, selection = make(kind), {}
    if kind == "nested":
        grid = check_grid(probe.penalties, probe.inner_splits)
        probe, selection = probe.base(grid[0]), {"penalties": grid, "inner_splits": probe.inner_splits}
    boot = refit_bootstrap(probe, X, y, groups, observed=np.zeros(1), scoring="r2", task="regression", n_splits=5,
                           n_bootstrap=N_BOOTSTRAP, seed=seed, **selection)
    return boot.centred[0] - np.nanmean(boot.centred[0])


def collect(n_groups: int, n_sets: int, slope: float, kind: str, tails: str, out: Path) -> None:
    validate = nested_cross_validate if kind == "nested" else cross_validate_layers
    started = time.time()
    truth = 0.0
    if slope:
        truth = float(np.mean([validate(make(kind), *data(10**6 + i, n_groups, slope, tails), seed=10**6 + i).scores[0]
                               for i in range(300)]))
    rows = []
    for i in range(n_sets):
        X, y, groups = data(i, n_groups, slope, tails)
        result = probe_layers(make(kind), X, y, groups, dataset="toy", n_permutations=N_PERMUTATIONS,
                              n_bootstrap=N_BOOTSTRAP, seed=i)[0][0]
        deviations = bootstrap_sd_and_deviations(kind, X, y, groups, i)
        permutations, _ = draw_permutations(y, groups, N_PERMUTED_BOOTSTRAPS, seed=[i, 77])
        permuted_sd = np.mean([np.nanstd(bootstrap_sd_and_deviations(kind, X, y[p], groups, i), ddof=1)
                               for p in permutations])
        folds = list(validate(make(kind), X, y, groups, seed=i).folds)
        draw, _, _ = (nested_null_draws if kind == "nested" else null_draws)(make(kind), X, y, groups, folds=folds,
                                                                             scoring="r2", seed=i)
        null = draw(0, N_PERMUTATIONS)[0]
        null = null - null.mean()
        target = truth - result.extra["null_mean"] if slope else 0.0
        rows.append([result.effect_size, target, result.ci_low, result.ci_high, np.std(null, ddof=1),
                     *np.quantile(null, [0.025, 0.975]), np.nanstd(deviations, ddof=1),
                     *np.nanquantile(deviations, [0.025, 0.975]), permuted_sd, result.p_value])
        if (i + 1) % 25 == 0 or i + 1 == n_sets:
            np.save(out, np.array(rows))
            print(f"{i + 1} data sets, {time.time() - started:.0f} s", flush=True)


def summary(path: Path) -> None:
    table = dict(zip(COLUMNS, np.load(path).T, strict=True))
    effect, truth = table["effect"], table["truth"]
    error = effect - truth
    q_low, q_high, null_sd = table["null_q025"], table["null_q975"], table["null_sd"]
    boot_sd, permuted = table["boot_sd"], table["permuted_boot_sd"]
    k = boot_sd / permuted
    widen = 1 + np.maximum(0, boot_sd - permuted) / null_sd
    c = permuted / null_sd
    variants = {
        "refit bootstrap (reported)": (table["boot_low"], table["boot_high"]),
        "null": (effect - q_high, effect - q_low),
        "null x max(1, k)": (effect - np.maximum(1, k) * q_high, effect - np.maximum(1, k) * q_low),
        "null + excess": (effect - widen * q_high, effect - widen * q_low),
        "bootstrap / c, basic": (effect - table["boot_q975"] / c, effect - table["boot_q025"] / c),
        "bootstrap / c, normal": (effect - 1.96 * boot_sd / c, effect + 1.96 * boot_sd / c),
    }
    print(f"{path.name}: {effect.size} data sets; SD of effect - truth {error.std():.3f}, "
          f"null SD {null_sd.mean():.3f}, bootstrap SD {boot_sd.mean():.3f}, on permuted targets "
          f"{permuted.mean():.3f}; median k {np.median(k):.2f}; p < 0.05 in {np.mean(table['p'] < 0.05):.3f}")
    for name, (low, high) in variants.items():
        print(f"  {name:28s} coverage {np.mean((low <= truth) & (truth <= high)):.3f}  width / Monte Carlo 95% range "
              f"{np.mean(high - low) / (3.92 * error.std()):.2f}  misses below {np.mean(truth < low):.3f}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("collect")
    one.add_argument("groups", type=int)
    one.add_argument("data_sets", type=int)
    one.add_argument("slope", type=float)
    one.add_argument("probe", choices=("plain", "nested"))
    one.add_argument("tails", choices=("gaussian", "t3"))
    one.add_argument("out", type=Path)
    many = sub.add_parser("summary")
    many.add_argument("paths", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.groups, args.data_sets, args.slope, args.probe, args.tails, args.out)
    else:
        for path in args.paths:
            summary(path)


if __name__ == "__main__":
    main(sys.argv[1:])
