"""What superset extraction costs: every site saved in the forward vs only the requested ones (bundled SmolLM2).

    python benchmarks/superset_cost.py [--items 128] [--repeats 3] [--batch-size 32]

On a cache miss for a pooled position the suite runner extracts every site (``extract(..., superset=True)``),
so later requests of the same texts at other sites run no forward. This prices that choice, each variant into
a fresh on-disk cache, last-token position, the repeats interleaved (a b c, a b c, ...):

(a) ``mid``:      the quick battery's probe sites (blocks at 0.3, 0.5, 0.7 of depth): the forward stops at 0.7
(b) ``superset``: request (a) with ``superset=True``: the same forward, every site up to 0.7 saved
(c) ``deep``:     a mid block and the last block: the whole backbone runs, two sites saved
(d) ``every``:    every site (``sites=None``): the whole backbone runs, every site saved

(b)/(a) is what superset extraction costs a request (the same forward; only the copies of the earlier sites);
(d)/(c) is the same price with the whole backbone and every site. It is paid once per (texts, position): every
later request of those texts at sites no deeper reads the cache. Prints a Markdown block; writes
superset_cost.json here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from conceptspace.activations._extract import extract
from conceptspace.models import load_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from extract import cpu_name, spread, timed_interleaved, workload  # noqa: E402 - the sibling benchmark's helpers


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("smollm2-135m")
    texts = workload(args.items)
    n = model.n_layers
    mid_sites = [round(f * (n - 1)) for f in (0.3, 0.5, 0.7)]
    bytes_on_disk: dict[str, int] = {}

    def variant(name: str, sites: list[int] | None, superset: bool) -> Callable[[], None]:
        def run() -> None:
            with tempfile.TemporaryDirectory() as cache:
                acts = extract(model, texts, sites=sites, position="last", batch_size=args.batch_size,
                               cache_dir=cache, progress=False, superset=superset)
                assert acts.folder is not None
                bytes_on_disk[name] = _folder_bytes(acts.folder)
        return run

    variants = {
        "mid": variant("mid", mid_sites, False),
        "superset": variant("superset", mid_sites, True),
        "deep": variant("deep", [n // 2, n - 1], False),
        "every": variant("every", None, False),
    }
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    times = timed_interleaved(variants, args.repeats)
    load_after = os.getloadavg()
    summary = {name: {"min": min(v), "median": statistics.median(v), "max": max(v), "spread": spread(v)}
               for name, v in times.items()}
    ratios = {
        "superset_over_mid_min": summary["superset"]["min"] / summary["mid"]["min"],
        "superset_over_mid_median": summary["superset"]["median"] / summary["mid"]["median"],
        "every_over_deep_min": summary["every"]["min"] / summary["deep"]["min"],
        "every_over_deep_median": summary["every"]["median"] / summary["deep"]["median"],
    }
    record = {"date": started, "cpu": cpu_name(), "threads": torch.get_num_threads(), "items": args.items,
              "repeats": args.repeats, "sites": {"mid": mid_sites, "deep": [n // 2, n - 1], "every": n + 2},
              "seconds": times, "summary": summary, "ratios": ratios, "bytes_on_disk": bytes_on_disk,
              "load_before": load_before, "load_after": load_after}
    (HERE / "superset_cost.json").write_text(json.dumps(record, indent=2))
    print(f"{started}, {cpu_name()}, {torch.get_num_threads()} threads, {args.items} texts, last token, "
          f"{args.repeats} interleaved repeats; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print("| variant | sites saved | min s | median s | max s | spread | on disk |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        flag = " (> 20%: disturbed)" if s["spread"] > 0.2 else ""
        saved = {"mid": "3 (stops at 0.7)", "superset": f"{mid_sites[-1] + 2} (stops at 0.7)",
                 "deep": "2 (whole backbone)", "every": f"{n + 2} (whole backbone)"}[name]
        print(f"| {name} | {saved} | {s['min']:.2f} | {s['median']:.2f} | {s['max']:.2f} | {s['spread']:.0%}{flag} | "
              f"{bytes_on_disk[name] / 2**20:.1f} MiB |")
    print(f"superset/mid: {ratios['superset_over_mid_min']:.3f}x by minima, "
          f"{ratios['superset_over_mid_median']:.3f}x by medians; every/deep: "
          f"{ratios['every_over_deep_min']:.3f}x by minima, {ratios['every_over_deep_median']:.3f}x by medians")


if __name__ == "__main__":
    main()
