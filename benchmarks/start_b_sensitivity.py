"""Do the verdicts depend on the starting number of permutations? The battery with B halved and doubled.

    python benchmarks/start_b_sensitivity.py [--suite probes/concept_space.toml] [--factors 0.5,2] [--quick] [--jobs N]

Why. A Monte Carlo p-value with a fixed B decides on its floor 1/(B+1) when the observed statistic beats every
draw, so a verdict could be an artifact of B (issue 13 found every "supported" verdict of an older report on
that floor). The sequential p-values (docs/STATISTICS.md) draw until the 99% Monte Carlo interval of p clears
every threshold, so the starting B should only change how many draws a test takes, not its decision. This
script runs the whole battery with the suite's ``n_permutations`` multiplied by each factor (``max_permutations``
unchanged), everything else as in the reference run (same seed, models, controls, family and verdict rules),
and compares each claim's verdict and each primary test's decision with the run at the suite's own B (read
from ``--reference``, the committed reports/smollm2-135m/results.json by default, or run here with
``--rerun-reference``).

Writes ``benchmarks/results/start_b_sensitivity[_quick].json`` and prints a Markdown table for
docs/STATISTICS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _primary_rows(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["id"]: {"p": t["p"], "significant": t["significant"], "n_permutations": t["n_permutations"],
                      "settled": t.get("settled")} for t in results}


def _run(suite: Any, quick: bool, jobs: int = 1) -> dict[str, Any]:
    from conceptspace.suite._runner import run_suite

    t0 = time.perf_counter()
    outcome = run_suite(suite, quick=quick, progress=False, jobs=jobs)
    primaries = [r for r in outcome.results if r.extra.get("role") == "primary"]
    return {
        "n_permutations": suite.n_permutations, "seconds": round(time.perf_counter() - t0, 1),
        "verdicts": {v.claim: v.verdict for v in outcome.verdicts},
        "primary": [{"id": r.test_id, "p": r.p_value, "p_adjusted": r.p_adjusted, "significant": bool(r.significant),
                     "n_permutations": r.extra.get("n_permutations"), "settled": r.extra.get("settled")}
                    for r in primaries],
    }


def _reference_from_results(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    primaries = [t for t in data["tests"] if t.get("extra", {}).get("role") == "primary"]
    return {
        "n_permutations": data["suite"]["n_permutations"], "seconds": data.get("timings", {}).get("total_s"),
        "verdicts": {v["claim"]: v["verdict"] for v in data["verdicts"]},
        "primary": [{"id": t["id"], "p": t["p"], "p_adjusted": t.get("p_adjusted"),
                     "significant": bool(t.get("significant")), "n_permutations": t["extra"].get("n_permutations"),
                     "settled": t["extra"].get("settled")} for t in primaries],
        "source": str(path),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default=str(ROOT / "probes" / "concept_space.toml"))
    parser.add_argument("--factors", default="0.5,2", help="multipliers of the suite's n_permutations")
    parser.add_argument("--quick", action="store_true", help="the --quick battery instead of the full one")
    parser.add_argument("--reference", default=str(ROOT / "reports" / "smollm2-135m" / "results.json"))
    parser.add_argument("--rerun-reference", action="store_true", help="run the suite's own B here too")
    parser.add_argument("--jobs", type=int, default=1, help="analyses run at once (as conceptspace run --jobs)")
    args = parser.parse_args()

    from conceptspace.suite import load_suite

    base = load_suite(args.suite).for_run(quick=args.quick)
    runs: list[dict[str, Any]] = []
    if args.rerun_reference or args.quick:
        runs.append({**_run(base, args.quick, args.jobs), "factor": 1.0})
    else:
        runs.append({**_reference_from_results(Path(args.reference)), "factor": 1.0})
    out = HERE / "results" / f"start_b_sensitivity{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for factor in (float(f) for f in args.factors.split(",")):
        b = max(19, round((base.n_permutations + 1) * factor) - 1)  # 999 -> 499 / 1999
        runs.append({**_run(replace(base, n_permutations=b), args.quick, args.jobs), "factor": factor})
        out.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
        print(f"B = {b}: {runs[-1]['seconds']} s", file=sys.stderr, flush=True)
    reference = runs[0]
    changed = {r["n_permutations"]: [c for c, v in r["verdicts"].items() if reference["verdicts"].get(c) != v]
               for r in runs[1:]}
    ref_rows = _primary_rows(reference["primary"])
    flipped = {r["n_permutations"]: [t["id"] for t in r["primary"]
                                     if t["id"] in ref_rows and ref_rows[t["id"]]["significant"] != t["significant"]]
               for r in runs[1:]}
    summary = {"suite": args.suite, "quick": args.quick, "runs": runs, "verdicts_changed": changed,
               "primary_decisions_flipped": flipped, "date": time.strftime("%Y-%m-%d"),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"}
    out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")

    claims = list(reference["verdicts"])
    print("\n| starting B | " + " | ".join(claims) + " | seconds |")
    print("|---|" + "---|" * len(claims) + "---|")
    for r in runs:
        print(f"| {r['n_permutations']} | " + " | ".join(r["verdicts"].get(c, "-") for c in claims)
              + f" | {r['seconds']} |")
    print("\nprimary tests: draws taken (p) per starting B")
    for test_id in ref_rows:
        cells = []
        for r in runs:
            row = _primary_rows(r["primary"]).get(test_id)
            cells.append("-" if row is None else f"{row['n_permutations']} ({row['p']:.4g})")
        print(f"- {test_id.split('/')[0]}: " + "; ".join(cells))
    print(f"\nverdicts changed: {changed}; primary decisions flipped: {flipped}")
    return 0 if not any(changed.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
