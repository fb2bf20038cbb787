"""What a suite costs over NDIF: bytes downloaded per analysis, measured through the remote dry run.

Run: python benchmarks/remote_suite.py [--suite probes/concept_space.toml] [--quick] [--repeats 1]

After one untimed warm-up run, the suite runs twice per repeat (order alternating), each time from an empty
activation cache: locally, and through
``remote="local"`` (the client holds a weightless skeleton; every activation slice and weight row comes back
through nnsight's serialised request, as from NDIF). It prints JSON with both wall times, their ratio (the
dry run's serialisation overhead, not NDIF's queue or network), whether every number agreed, the bytes each
analysis downloaded, the part that is whole weight matrices (fetched once and cached), and a scaled estimate
for Llama-3.1-70B (d 8192, vocab 128256, bf16 on the wire): activation bytes scale with d and the element
size, whole matrices with vocab x d.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from conceptspace.suite._runner import run_suite
from conceptspace.suite._spec import load_suite

LLAMA_70B = {"d_model": 8192, "vocab": 128256, "bytes_per_value": 2}


def _numbers(outcome) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    return {r.test_id: [r.statistic, r.effect_size, r.ci_low, r.ci_high, r.p_value] for r in outcome.results}


def _run(suite, quick: bool, remote, cache: Path):  # type: ignore[no-untyped-def]
    os.environ["CONCEPTSPACE_CACHE"] = str(cache)
    start = time.perf_counter()
    outcome = run_suite(suite, quick=quick, remote=remote, progress=False)
    return outcome, time.perf_counter() - start


def _matrices(cache: Path) -> tuple[int, int]:
    """Bytes of the whole matrices the dry run fetched (float32 here) and the same matrices for the 70B model."""
    here = at_70b = 0
    for path in cache.glob("weights/*/*.npy"):
        array = np.load(path, mmap_mode="r")
        here += array.nbytes
        values = LLAMA_70B["vocab"] * LLAMA_70B["d_model"] if array.ndim == 2 else LLAMA_70B["d_model"]
        at_70b += values * LLAMA_70B["bytes_per_value"]
    return here, at_70b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", default="probes/concept_space.toml")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    suite = load_suite(args.suite).for_run(quick=args.quick)
    local_times, remote_times = [], []
    agree = True
    with tempfile.TemporaryDirectory() as scratch:
        _run(suite, args.quick, False, Path(scratch) / "warm-up")  # untimed: file and in-process caches
        for repeat in range(args.repeats):
            remote_cache = Path(scratch) / f"remote-{repeat}"
            if repeat % 2:  # alternate the order so neither side always runs second
                dry, t_remote = _run(suite, args.quick, "local", remote_cache)
                local, t_local = _run(suite, args.quick, False, Path(scratch) / f"local-{repeat}")
            else:
                local, t_local = _run(suite, args.quick, False, Path(scratch) / f"local-{repeat}")
                dry, t_remote = _run(suite, args.quick, "local", remote_cache)
            local_times.append(t_local)
            remote_times.append(t_remote)
            a, b = _numbers(local), _numbers(dry)
            agree = agree and a.keys() == b.keys() and all(
                np.allclose(np.array(b[k], float), np.array(a[k], float), rtol=1e-3, atol=1e-5, equal_nan=True)
                for k in a)
            matrices, matrices_70b = _matrices(remote_cache)
        model = dry.model
    total = dry.timings["download_mb_total"] * 2**20
    activations = total - matrices
    scale = (LLAMA_70B["d_model"] / model["d_model"]) * (LLAMA_70B["bytes_per_value"] / 4)
    report = {
        "command": f"python benchmarks/remote_suite.py --suite {args.suite}{' --quick' if args.quick else ''} "
                   f"--repeats {args.repeats}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "model": model["name"],
        "local_s": {"median": statistics.median(local_times), "min": min(local_times), "max": max(local_times)},
        "dry_run_s": {"median": statistics.median(remote_times), "min": min(remote_times), "max": max(remote_times)},
        "dry_run_over_local": statistics.median(remote_times) / statistics.median(local_times),
        "numbers_agree": agree,
        "download_mb_per_analysis": dry.timings["download_mb"],
        "download_mb_total": dry.timings["download_mb_total"],
        "whole_matrices_mb": round(matrices / 2**20, 3),
        "activations_and_rows_mb": round(activations / 2**20, 3),
        "llama_3_1_70b_estimate_mb": {
            "activations_and_rows": round(activations * scale / 2**20, 1),
            "whole_matrices": round(matrices_70b / 2**20, 1),
        },
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
