"""Placebo directions per second on the bundled model: one direction per forward vs many per forward vs the
prefix cache, interleaved, on C5's steering workload.

    python benchmarks/directions.py [--directions 200] [--repeats 3]

Workload: the battery's C5 prompts (8 sentiment prompts, edited at the last token of block 15 of SmolLM2-135M),
every direction at 4 strengths, target log-probabilities read at the last token. Variants:

(a) ``loop``: one direction per nnsight trace (4 strengths x 8 prompts = 32 rows a forward), the naive way;
(b) ``batched``: every direction stacked along the batch dimension, 1024 rows a trace (the nnsight path
    ``run_edits(..., reuse_prefix=False)``, which a remote run takes);
(c) ``prefix``: (b)'s batches on a key/value cache of the unedited prefix (the local default).

The repeats are interleaved (a b c, a b c, ...), the load average printed before and after, and the ratio of
minima given beside the ratio of medians; a variant whose min-max spread exceeds 20% is flagged. The largest
difference between (b) and (c) in any target log-probability is printed too (they must agree to float
rounding). Writes ``benchmarks/results/directions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from conceptspace.analyses.causal._inputs import prepare_prompts, random_directions, resolve_targets
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.models import load_model

HERE = Path(__file__).resolve().parent
PROMPTS = ["The movie was", "I think the food is", "Today I feel", "The weather this week has been",
           "My new job is", "The concert last night was", "This book is", "Our holiday was"]
WORDS = [" good", " great", " happy", " wonderful", " bad", " terrible", " sad", " awful"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directions", type=int, default=200)
    parser.add_argument("--loop-directions", type=int, default=20, help="directions the one-per-forward loop runs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = load_model("smollm2-135m")
    prepared = prepare_prompts(model, PROMPTS, "last")
    target = resolve_targets(model, WORDS).ids
    site = f"layer.{model.n_layers // 2}"
    strengths = torch.tensor([-1.0, -0.5, 0.5, 1.0])
    scale = 50.0

    def edits(count: int) -> Edits:
        units = random_directions(model.d_model, count, 0)
        return Edits.additive((strengths[None, :, None] * scale * units[:, None, :]).reshape(-1, model.d_model))

    many, few = edits(args.directions), edits(args.loop_directions)

    def loop() -> torch.Tensor:
        outs = [run_edits(model, prepared, site, few.chunk(i * 4, i * 4 + 4), target, reuse_prefix=False).target_logp
                for i in range(args.loop_directions)]
        return torch.cat(outs)

    variants = {
        "loop": (loop, args.loop_directions),
        "batched": (lambda: run_edits(model, prepared, site, many, target, max_rows=1024,
                                      reuse_prefix=False).target_logp, args.directions),
        "prefix": (lambda: run_edits(model, prepared, site, many, target, max_rows=1024,
                                     reuse_prefix=True).target_logp, args.directions),
    }
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, torch.Tensor] = {}
    for repeat in range(args.repeats):
        for name, (run, _count) in variants.items():
            t0 = time.perf_counter()
            outputs[name] = run()
            seconds[name].append(time.perf_counter() - t0)
            print(f"repeat {repeat + 1}: {name} {seconds[name][-1]:.2f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    rate = {name: {"min": count / max(seconds[name]), "median": count / statistics.median(seconds[name]),
                   "max": count / min(seconds[name])} for name, (_run, count) in variants.items()}
    spread = {name: (max(v) - min(v)) / min(v) for name, v in seconds.items()}
    difference = float((outputs["batched"] - outputs["prefix"]).abs().max())
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(), "directions": args.directions, "loop_directions": args.loop_directions,
        "prompts": len(PROMPTS), "strengths": strengths.tolist(), "site": site, "seconds": seconds,
        "directions_per_second": rate, "spread": spread, "max_abs_difference_batched_vs_prefix": difference,
        "load_before": load_before, "load_after": load_after,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "directions.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"\n{record['date']}, {record['machine']}, {record['threads']} torch threads; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {len(PROMPTS)} prompts x 4 strengths, {site}")
    print("| variant | directions | min s | median s | directions/s (best) | directions/s (median) | spread |")
    print("|---|---|---|---|---|---|---|")
    for name, (_run, count) in variants.items():
        flag = " (> 20%: disturbed)" if spread[name] > 0.2 else ""
        print(f"| {name} | {count} | {min(seconds[name]):.2f} | {statistics.median(seconds[name]):.2f} | "
              f"{rate[name]['max']:.1f} | {rate[name]['median']:.1f} | {spread[name]:.0%}{flag} |")
    for a, b in (("batched", "loop"), ("prefix", "batched"), ("prefix", "loop")):
        print(f"{a} / {b}: {rate[a]['max'] / rate[b]['max']:.2f}x by best rates, "
              f"{rate[a]['median'] / rate[b]['median']:.2f}x by medians")
    print(f"largest |batched - prefix| target log-prob difference: {difference:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
