"""Time the main job (`conceptspace run probes/concept_space.toml`) cold and warm, repeats interleaved.

    python benchmarks/main_job.py [--repeats 3] [--full] [--naive] [--jobs N] [--warm-only]
                                  [--suite probes/concept_space.toml]

One round is: a cold run into a fresh, empty activation cache (``CONCEPTSPACE_CACHE`` in a temporary folder),
then a warm run reading the cache that cold run filled. Rounds repeat (cold warm, cold warm, ...), so a load
spike on a shared machine spreads over both instead of deciding one of them. Battery: ``--quick`` unless
``--full``. ``--naive`` adds a cold run with ``CONCEPTSPACE_EXTRACT_SUPERSET=0`` to each round (every
extraction request forwards only its own sites), the comparison for superset extraction.

The model cache stays warm: ``CONCEPTSPACE_MODEL_CACHE`` (default ``/root/.cache/conceptspace/models``) holds the
float32 conversion of the bundled GGUF, which costs ~30 s once per machine and is not part of a run's work; a
"cold" run here is a cold activation cache, not a fresh clone.

Each run is a separate process (``python -m conceptspace.cli run ...``). Reported per variant: min, median and
max wall seconds (flagged when the spread passes 20%), peak RSS of the run's process (``wait4``), the load
average before and after, and the forward counts from ``results.json``
(``timings.forward_passes``: texts the requests asked for vs texts forwarded). Prints a Markdown block and
writes results/main_job*.json next to this file. ``--jobs N`` passes ``--jobs N`` to every run (worker processes;
a comma list such as ``1,2`` runs every count in each round, interleaved);
``--warm-only`` runs only warm rounds against the activation cache ``CONCEPTSPACE_CACHE`` names (a cache
already filled: the full battery's cold run takes most of an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_MODEL_CACHE = "/root/.cache/conceptspace/models"


def run_once(suite: str, full: bool, cache: Path, out: Path, extra_env: dict[str, str], jobs: int = 1
             ) -> dict[str, Any]:
    """One `conceptspace run` in its own process: wall seconds, peak RSS (MB) and the forward counts."""
    env = {**os.environ, "CONCEPTSPACE_CACHE": str(cache), **extra_env}
    env.setdefault("CONCEPTSPACE_MODEL_CACHE", DEFAULT_MODEL_CACHE)
    command = [sys.executable, "-m", "conceptspace.cli", "run", suite, "--out", str(out), "--quiet",
               "--jobs", str(jobs), *([] if full else ["--quick"])]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = output.decode(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{tail}")
    timings = json.loads((out / "results.json").read_text())["timings"]
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "total_s": timings.get("total_s"),
            "forward_passes": timings.get("forward_passes"), "load_model_s": timings.get("load_model_s"),
            "analyses_s": timings.get("analyses_s")}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    return {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds),
            "spread": (max(seconds) - min(seconds)) / min(seconds), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "forward_passes": runs[-1]["forward_passes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="probes/concept_space.toml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="the full battery (default: --quick)")
    parser.add_argument("--naive", action="store_true", help="add a cold run without superset extraction")
    parser.add_argument("--jobs", default="1",
                        help="worker processes of each run (conceptspace run --jobs); a comma list (1,2) runs each "
                             "count in every round, interleaved")
    parser.add_argument("--warm-only", action="store_true",
                        help="only warm runs, on the already filled cache CONCEPTSPACE_CACHE names")
    args = parser.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    if args.warm_only and not os.environ.get("CONCEPTSPACE_CACHE"):
        parser.error("--warm-only reads the cache CONCEPTSPACE_CACHE names: set it to a filled cache")
    # (name, extra environment, worker count, cold?) in the order each round runs them
    variants: list[tuple[str, dict[str, str], int, bool]] = []
    for j in jobs:
        tag = f", jobs {j}" if len(jobs) > 1 else ""
        if not args.warm_only:
            variants.append((f"cold{tag}", {}, j, True))
        variants.append((f"warm{tag}", {}, j, False))
    if args.naive:
        variants.append(("cold, no superset", {"CONCEPTSPACE_EXTRACT_SUPERSET": "0"}, jobs[0], True))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in variants}
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="conceptspace-main-job-"))
    try:
        for round_number in range(args.repeats):
            for name, env, j, cold in variants:
                if args.warm_only:
                    folder = Path(os.environ["CONCEPTSPACE_CACHE"])
                else:  # a warm run reads the cache its own worker count's cold run filled this round
                    folder = work / f"cache-{round_number}-jobs{j}{'-naive' if env else ''}"
                if cold:
                    shutil.rmtree(folder, ignore_errors=True)
                result = run_once(args.suite, args.full, folder, work / f"out-{round_number}-{len(runs[name])}", env,
                                  j)
                runs[name].append(result)
                print(f"round {round_number + 1}: {name} {result['seconds']:.1f} s, peak RSS "
                      f"{result['peak_rss_mb']:.0f} MB, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    summary = {name: summarize(r) for name, r in runs.items()}
    battery = "full" if args.full else "--quick"
    record = {"date": started, "machine": f"{platform.node()}, {os.cpu_count()} CPUs", "suite": args.suite,
              "battery": battery, "jobs": args.jobs, "repeats": args.repeats, "model_cache": "warm", "runs": runs,
              "summary": summary,
              "load_before": load_before, "load_after": load_after}
    suffix = "" if args.jobs == "1" else "_jobs" + args.jobs.replace(",", "-")
    name = f"main_job{'_full' if args.full else ''}{suffix}.json"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(json.dumps(record, indent=2))
    print(f"{started}, {os.cpu_count()} CPUs, `conceptspace run {args.suite} {battery} --jobs {args.jobs}`, "
          f"{args.repeats} rounds "
          f"({'warm only' if args.warm_only else 'cold then warm'}, interleaved), model cache warm; "
          f"load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print("| variant | min s | median s | max s | spread | peak RSS (largest process) | texts forwarded / requested "
          "| cache hits |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        flag = " (> 20%: disturbed)" if s["spread"] > 0.2 else ""
        passes = s["forward_passes"] or {}
        print(f"| {name} | {s['min']:.1f} | {s['median']:.1f} | {s['max']:.1f} | {s['spread']:.0%}{flag} | "
              f"{s['peak_rss_mb']:.0f} MB | {passes.get('forwarded_texts')} / {passes.get('requested_texts')} | "
              f"{passes.get('cache_hits')} of {passes.get('requests')} |")


if __name__ == "__main__":
    main()
