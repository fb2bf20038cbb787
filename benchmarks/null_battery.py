"""The null battery over many seeds: how often does the whole pipeline call a claim "supported" without signal?

    python benchmarks/null_battery.py [--suite probes/concept_space.toml] [--seeds 1-20] [--full] [--jobs N]

Each seed runs the battery with ``null_seed`` set (``conceptspace run SUITE --quick --null SEED``): every label
set permuted within its groups, pairs re-paired, directions from permuted labels; everything else (models,
controls, the family, the verdict rules) exactly as in a real run. The family-wise promise is that no claim is
supported in more than alpha of the runs; issue 13 asks for at most one of 20 quick runs.

Reports, as Markdown for docs/STATISTICS.md and as JSON in ``benchmarks/results/null_battery*.json``:
the number of runs with any claim supported (with a Wilson 95% interval), the verdict counts per claim, and the
per-test false-positive rate of primary tests (significant after correction; and raw p < 0.05, uncorrected)
with Wilson intervals. The model and activation caches are reused across seeds (only the labels change), so the
cost per seed is the analyses, not the extraction.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (sensible at 0 successes, unlike the Wald interval)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(x) for x in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(x) for x in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default=str(HERE.parent / "probes" / "concept_space.toml"))
    parser.add_argument("--seeds", default="1-20", help="null seeds: a range 1-20 or a list 1,2,3")
    parser.add_argument("--full", action="store_true", help="the full battery instead of --quick")
    parser.add_argument("--jobs", type=int, default=1, help="analyses run at once (as conceptspace run --jobs)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/null_battery[_full].json)")
    args = parser.parse_args()

    from conceptspace.suite import load_suite
    from conceptspace.suite._runner import run_suite

    quick = not args.full
    suite = load_suite(args.suite).for_run(quick=quick)
    runs = []
    started = time.perf_counter()
    for seed in _seeds(args.seeds):
        t0 = time.perf_counter()
        outcome = run_suite(suite, quick=quick, null_seed=seed, progress=False, jobs=args.jobs)
        primaries = [r for r in outcome.results if r.extra.get("role") == "primary"]
        runs.append({
            "null_seed": seed,
            "seconds": round(time.perf_counter() - t0, 1),
            "verdicts": {v.claim: v.verdict for v in outcome.verdicts},
            "failed_analyses": [r.spec.id for r in outcome.records if r.status not in ("ok", "not applicable")],
            "primary": [{"id": r.test_id, "p": r.p_value, "p_adjusted": r.p_adjusted, "significant": r.significant,
                         "effect": r.effect_size, "ci": [r.ci_low, r.ci_high],
                         "n_permutations": r.extra.get("n_permutations")} for r in primaries],
        })
        partial = Path(args.out) if args.out else HERE / "results" / f"null_battery{'_full' if args.full else ''}.json"
        partial.parent.mkdir(parents=True, exist_ok=True)  # after every seed, so a stopped run keeps what it did
        partial.with_suffix(".partial.json").write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
        supported = [c for c, v in runs[-1]["verdicts"].items() if v == "supported"]
        print(f"null seed {seed}: {runs[-1]['seconds']} s; supported: {supported or 'none'}; "
              f"failed: {runs[-1]['failed_analyses'] or 'none'}", file=sys.stderr, flush=True)
    n = len(runs)
    any_supported = sum(any(v == "supported" for v in r["verdicts"].values()) for r in runs)
    per_claim: dict[str, Counter[str]] = {}
    for r in runs:
        for claim, verdict in r["verdicts"].items():
            per_claim.setdefault(claim, Counter())[verdict] += 1
    tests = [t for r in runs for t in r["primary"]]
    significant = sum(bool(t["significant"]) for t in tests)
    raw = sum(t["p"] is not None and t["p"] < 0.05 for t in tests)
    summary = {
        "suite": args.suite, "quick": quick, "seeds": [r["null_seed"] for r in runs], "runs": n,
        "runs_with_a_supported_claim": any_supported, "runs_with_a_supported_claim_ci": wilson(any_supported, n),
        "primary_tests": len(tests), "primary_significant": significant,
        "primary_significant_ci": wilson(significant, len(tests)), "primary_raw_p_below_0_05": raw,
        "primary_raw_p_below_0_05_ci": wilson(raw, len(tests)),
        "verdicts_per_claim": {c: dict(v) for c, v in per_claim.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "date": time.strftime("%Y-%m-%d"), "total_s": round(time.perf_counter() - started, 1), "details": runs,
    }
    out = Path(args.out) if args.out else HERE / "results" / f"null_battery{'_full' if args.full else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    lo, hi = summary["runs_with_a_supported_claim_ci"]
    slo, shi = summary["primary_significant_ci"]
    rlo, rhi = summary["primary_raw_p_below_0_05_ci"]
    print(f"\n### Null battery ({'full' if args.full else 'quick'}, {n} seeds, {summary['date']})\n")
    print(f"- runs with any claim supported: {any_supported}/{n} (Wilson 95% [{lo:.3f}, {hi:.3f}])")
    print(f"- primary tests significant after correction: {significant}/{len(tests)} = "
          f"{significant / max(1, len(tests)):.3f} [{slo:.3f}, {shi:.3f}]")
    print(f"- primary tests with raw p < 0.05: {raw}/{len(tests)} = {raw / max(1, len(tests)):.3f} "
          f"[{rlo:.3f}, {rhi:.3f}] (calibrated tests give about 0.05)")
    print("- verdicts per claim: " + "; ".join(f"{c}: {dict(v)}" for c, v in per_claim.items()))
    print(f"- {summary['machine']}; {summary['total_s']} s in all; command: python benchmarks/null_battery.py "
          f"--seeds {args.seeds}{' --full' if args.full else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
