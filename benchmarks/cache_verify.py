"""What verifying the activation cache costs: hashing an entry on open and at publish, against reading it.

Builds a cache entry of about ``--mb`` MB (three float32 sites, position ``last``) through the real writer
(``EntryWriter`` + ``publish``, which hashes every array), then times, median of ``--repeats``:

* ``read``: open the arrays and touch every value (what any use of the whole entry costs),
* ``open (sizes and shapes)``: ``verify_entry(hashes=False)``, what every open after the first pays,
* ``open (hashes)``: ``verify_entry(hashes=True)``, what the first open in a process (or ``--verify``) pays,
* ``publish``: writing the manifest with a hash of every array.

The page cache is warm unless ``--cold`` (needs root: writes /proc/sys/vm/drop_caches before each timing).

    python benchmarks/cache_verify.py --mb 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from conceptspace.activations import _cache as cache_store


def build_entry(root: Path, mb: float, n_sites: int = 3, d_model: int = 1024) -> tuple[Path, float]:
    """One entry of about ``mb`` MB written like an extraction writes it; returns it and the publish time."""
    rows = max(1, int(mb * 1e6 / (n_sites * d_model * 4)))
    writer = cache_store.EntryWriter(root, "0" * 32)
    writer.start()
    rng = np.random.default_rng(0)
    sites = [f"layer.{n}" for n in range(n_sites)]
    for site in sites:
        output = writer.open_array(site, (rows, d_model), np.dtype(np.float32))
        for first in range(0, rows, 4096):
            block = rng.standard_normal((min(4096, rows - first), d_model), dtype=np.float32)
            output.write_rows(first, block)
        output.close()
    manifest = {"model": {"name": "benchmark"}, "sites": sites, "position": "last", "n_items": rows,
                "d_model": d_model, "dtype": "float32", "token_counts": [1] * rows}
    start = time.perf_counter()
    folder = writer.publish({}, manifest)
    return folder, time.perf_counter() - start


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(action: Callable[[], object], repeats: int, cold: bool) -> float:
    times = []
    for _ in range(repeats):
        if cold:
            drop_page_cache()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_all(folder: Path) -> float:
    manifest = cache_store.load_manifest(folder)
    assert manifest is not None
    arrays = [np.load(folder / f"{site}.npy", mmap_mode="r") for site in manifest["sites"]]
    return float(sum(array.sum(dtype=np.float64) for array in arrays))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each timing (root)")
    parser.add_argument("--dir", default=None, help="where to build the entry (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder, publish = build_entry(Path(tmp), args.mb)
        size = sum(p.stat().st_size for p in folder.glob("*.npy")) / 1e6
        result = {
            "entry_mb": round(size, 1),
            "cold_page_cache": args.cold,
            "publish_s (hashes every array)": round(publish, 4),
            "read_s (touch every value)": round(timed(lambda: read_all(folder), args.repeats, args.cold), 4),
            "open_sizes_shapes_s": round(
                timed(lambda: cache_store.verify_entry(folder, hashes=False), args.repeats, args.cold), 5
            ),
            "open_hashes_s": round(
                timed(lambda: cache_store.verify_entry(folder, hashes=True), args.repeats, args.cold), 4
            ),
            "sha256_MB_per_s": None,
        }
        result["sha256_MB_per_s"] = round(size / result["open_hashes_s"], 0)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
