"""Null calibration and power of the grouped permutation test on synthetic activations (docs/STATISTICS.md).

Run: python benchmarks/calibration.py [--label-sets 200] [--datasets 50]
Prints JSON with the false-positive rate before correction, the family-wise rate after Holm across 30 layers,
and the detection rate at each planted signal strength. Seeded: the same command prints the same numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from conceptspace.analyses.probes._calibration import calibrate_null, power_curve
from conceptspace.stats._simulate import synthetic_activations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label-sets", type=int, default=200)
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    parser.add_argument("--skip-null", action="store_true")
    parser.add_argument("--skip-power", action="store_true")
    args = parser.parse_args()
    out: dict[str, object] = {}
    if not args.skip_null:
        start = time.perf_counter()
        data = synthetic_activations(n_groups=150, items_per_group=4, d=576, n_layers=30, seed=0)
        null = calibrate_null(data.X, data.groups, n_label_sets=args.label_sets, seed=0, n_permutations=999)
        out["null"] = {
            **null.to_dict(),
            "rate_per_layer_range": [float(null.rate_per_layer.min()), float(null.rate_per_layer.max())],
            "seconds": time.perf_counter() - start,
        }
        print(json.dumps(out["null"]), flush=True)
    if not args.skip_power:
        start = time.perf_counter()

        def make(strength: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            d = synthetic_activations(n_groups=150, items_per_group=4, d=576, n_layers=1, seed=seed, signal=strength)
            return d.X, d.y, d.groups

        curve = power_curve(make, args.strengths, n_datasets=args.datasets, seed=0, n_permutations=199)
        out["power"] = curve.to_dict(orient="records")
        out["power_seconds"] = time.perf_counter() - start
        print(curve.to_string(index=False), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
