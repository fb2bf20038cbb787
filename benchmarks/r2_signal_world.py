"""Coverage of a regression probe's reported R^2 interval (the signal world where its targets suit it, the refit
bootstrap elsewhere) against known truth, through the library's own ``probe_layers`` (docs/STATISTICS.md).

    python benchmarks/r2_signal_world.py GROUPS DATA_SETS SLOPE {plain,nested} {gaussian,t3} [--world]

The designs are those of ``benchmarks/r2_interval_variants.py`` (a target per group of 3 items written ``SLOPE``
times into one of 20 Gaussian axes; ``SLOPE`` 0 is pure noise, whose truth is an effect of 0; otherwise the truth
is the expected CV R^2 over 300 independent data sets minus the data set's own null mean). ``--world`` asks for the
signal world whatever the targets (``score_interval="signal_world"``), to measure it where the family would not
use it. Prints the coverage of each interval method used, the width over the Monte Carlo 95% range of the effect's
error, and the rate of p < 0.05.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np
from r2_interval_variants import data, make

from conceptspace.analyses.probes._cv import cross_validate_layers
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.analyses.probes._nested import nested_cross_validate


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", type=int)
    parser.add_argument("data_sets", type=int)
    parser.add_argument("slope", type=float)
    parser.add_argument("probe", choices=("plain", "nested"))
    parser.add_argument("tails", choices=("gaussian", "t3"))
    parser.add_argument("--world", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    validate = nested_cross_validate if args.probe == "nested" else cross_validate_layers
    truth = 0.0
    if args.slope:
        truth = float(np.mean([validate(make(args.probe), *data(10**6 + i, args.groups, args.slope, args.tails),
                                        seed=10**6 + i).scores[0] for i in range(300)]))
    errors, lows, highs, methods, p_values, targets = [], [], [], [], [], []
    for i in range(args.data_sets):
        X, y, groups = data(i, args.groups, args.slope, args.tails)
        r = probe_layers(make(args.probe), X, y, groups, dataset="toy", n_permutations=199, n_bootstrap=200, seed=i,
                         score_interval="signal_world" if args.world else "auto")[0][0]
        target = truth - r.extra["null_mean"] if args.slope else 0.0
        errors.append(r.effect_size - target)
        lows.append(r.ci_low)
        highs.append(r.ci_high)
        targets.append(target)
        methods.append(r.extra["ci_method"])
        p_values.append(r.p_value)
    error, low, high, target = map(np.asarray, (errors, lows, highs, targets))
    covered = (low <= target) & (target <= high)
    method = np.asarray(methods)
    spread = 3.92 * error.std()
    print(f"{args.groups} groups, slope {args.slope}, {args.probe}, {args.tails}, {args.data_sets} data sets "
          f"({time.time() - started:.0f} s): covered {covered.mean():.3f}, width / Monte Carlo 95% range "
          f"{np.mean(high - low) / spread:.2f}, p < 0.05 in {np.mean(np.asarray(p_values) < 0.05):.3f}; "
          f"methods {dict(Counter(methods))}")
    for name in sorted(set(methods)):
        used = method == name
        print(f"  {name}: covered {covered[used].mean():.3f} of {used.sum()}, width / range "
              f"{np.mean((high - low)[used]) / spread:.2f}, misses below {np.mean((target < low)[used]):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
