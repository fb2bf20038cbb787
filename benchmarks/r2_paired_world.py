"""Coverage of the interval of an R^2 paired difference ("the task beats its control") against known truth,
through the library's ``probe_family``: the paired signal world (what runs report where the task's targets suit
the world) beside the refit bootstrap's paired replicates (docs/STATISTICS.md).

    python benchmarks/r2_paired_world.py GROUPS DATA_SETS TASK_SLOPE CONTROL_SLOPE {plain,nested} [--seeds S]

The task's features are those of ``benchmarks/r2_interval_variants.py`` (a Gaussian target per group of 3 items
written ``TASK_SLOPE`` times into one of 20 Gaussian axes); the control (an untrained stand-in; ``--seeds`` of
them, averaged as twin seeds are) has its own Gaussian features with the target written ``CONTROL_SLOPE`` times
into one axis, and probes the same targets. The truth is the expected difference of CV R^2 over 300 independent
data sets (0 when both slopes are equal) minus the difference of the data set's own null means, since the
reported difference is of effects (each score minus its null mean). Prints, per interval, the coverage, the width
over the Monte Carlo 95% range of the difference's error (over all data sets), and how often the truth falls below
the lower bound (the error of a "beats the control" that the lower bound decides; nominal 0.025).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from r2_interval_variants import data, make

from conceptspace.analyses.probes._cv import cross_validate_layers
from conceptspace.analyses.probes._family import Arm, probe_family
from conceptspace.analyses.probes._nested import nested_cross_validate
from conceptspace.stats import SequentialPlan
from conceptspace.stats._paired import paired_difference

SITES = ("layer.0",)


def control_features(seed: int, y: np.ndarray, groups: np.ndarray, slope: float) -> np.ndarray:
    """(1, n, 20) Gaussian features of the same group structure, the target written ``slope`` times into axis 0."""
    rng = np.random.default_rng([seed, 77])
    n_groups = int(groups.max()) + 1
    X = np.sqrt(0.5) * rng.standard_normal((n_groups, 20))[groups] + np.sqrt(0.5) * rng.standard_normal((y.size, 20))
    X[:, 0] += slope * y
    return X[None]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", type=int)
    parser.add_argument("data_sets", type=int)
    parser.add_argument("task_slope", type=float)
    parser.add_argument("control_slope", type=float)
    parser.add_argument("probe", choices=("plain", "nested"))
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.time()
    validate = nested_cross_validate if args.probe == "nested" else cross_validate_layers
    truth = 0.0
    if args.task_slope != args.control_slope:
        differences = []
        for i in range(300):
            X, y, groups = data(10**6 + i, args.groups, args.task_slope, "gaussian")
            task = validate(make(args.probe), X, y, groups, seed=10**6 + i)
            controls = [validate(make(args.probe), control_features(10**6 + i + 10**7 * s, y, groups,
                                                                    args.control_slope), y, groups,
                                 folds=list(task.folds), seed=10**6 + i).scores[0] for s in range(args.seeds)]
            differences.append(task.scores[0] - np.mean(controls))
        truth = float(np.mean(differences))
    rows: dict[str, list[tuple[float, float, float]]] = {"reported": [], "signal_world": [], "bootstrap": []}
    for i in range(args.data_sets):
        X, y, groups = data(i, args.groups, args.task_slope, "gaussian")
        arms = [Arm(None, X, y, SITES)] + [
            Arm("untrained", control_features(i + 10**7 * s, y, groups, args.control_slope), y, SITES, seed=s)
            for s in range(args.seeds)]
        family = probe_family(make(args.probe), arms, groups, dataset="toy", primary=SITES[0],
                              plan=SequentialPlan.fixed(199), n_bootstrap=200, seed=i)
        task = next(r for r in family.results if r.key.control is None)
        control = next(r for r in family.results if r.key.control == "untrained")
        target = truth - (task.extra["null_mean"] - control.extra["null_mean"])
        boot = paired_difference(family.replicates[task.key], family.replicates[control.key], seed=i)
        difference = task.effect_size - control.effect_size
        rows["bootstrap"].append((difference - target, boot["ci_low"] - target, boot["ci_high"] - target))
        world = task.extra.get("paired", {}).get("untrained")
        if world is not None:  # absent where the task's targets do not suit the world (then the bootstrap's)
            rows["signal_world"].append((world["difference"] - target, world["ci_low"] - target,
                                         world["ci_high"] - target))
        rows["reported"].append(rows["signal_world" if world is not None else "bootstrap"][-1])
    print(f"{args.groups} groups, task slope {args.task_slope}, control slope {args.control_slope}, {args.probe}, "
          f"{args.seeds} control seed(s), {args.data_sets} data sets ({time.time() - started:.0f} s), truth "
          f"{truth:.4f}:")
    spread = 3.92 * np.asarray(rows["bootstrap"])[:, 0].std()
    for name, values in rows.items():
        if not values:
            continue
        _, low, high = np.asarray(values).T
        print(f"  {name} ({len(values)}): covered {np.mean((low <= 0) & (0 <= high)):.3f}, width / Monte Carlo 95% "
              f"range {np.mean(high - low) / spread:.2f}, truth below the lower bound {np.mean(low > 0):.3f}, "
              f"above the upper {np.mean(high < 0):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
