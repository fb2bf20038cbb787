"""Every token of every layer for a dataset ten times larger than the memory the process may use.

Run (as root, on Linux with a writable cgroup memory controller):
    python benchmarks/memory_cap.py [--cap-gib 2] [--multiple 10] [--batch-size 32] [--scratch /var/tmp]

A child process is placed in a fresh memory cgroup (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``; the
machine has no swap, so the cap is hard) and extracts every token of every site of SmolLM2 (embed, 30 blocks,
final norm) for enough sentences that the activations come to ``multiple`` x the cap, streamed to the on-disk
cache. A second child, under the same cap, does what a script would do without conceptspace: Hugging Face
``output_hidden_states`` with every token of every layer kept in memory, and is expected to be killed by the
kernel's OOM killer. Prints JSON: bytes on disk, peak RSS, the cgroup's own peak, seconds, and how far the
in-memory alternative got. Without a writable cgroup it says so and exits 2 (nothing is measured then).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BYTES_PER_VALUE = 4  # float32
SITES = 32  # embed + 30 blocks + final_norm
HF_STATES = 31  # output_hidden_states: embed + 30 blocks (the last one already normed)
D_MODEL = 576


class MemoryCgroup:
    """A throw-away memory cgroup (v2 or v1) that child processes join by pid."""

    def __init__(self, limit_bytes: int) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists():
            self.path = Path("/sys/fs/cgroup") / f"conceptspace-bench-{os.getpid()}"
            self.limit_file, self.peak_file = "memory.max", "memory.peak"
        else:
            self.path = Path("/sys/fs/cgroup/memory") / f"conceptspace-bench-{os.getpid()}"
            self.limit_file, self.peak_file = "memory.limit_in_bytes", "memory.max_usage_in_bytes"
        self.path.mkdir()
        (self.path / self.limit_file).write_text(str(limit_bytes))

    def join_command(self, argv: list[str]) -> list[str]:
        """``argv`` run by a shell that first moves itself into the cgroup (so the whole child is capped)."""
        procs = self.path / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"', *argv]

    def peak_bytes(self) -> int | None:
        try:
            return int((self.path / self.peak_file).read_text())
        except (OSError, ValueError):
            return None

    def reset_peak(self) -> None:
        if self.peak_file == "memory.max_usage_in_bytes":
            (self.path / self.peak_file).write_text("0")

    def remove(self) -> None:
        self.path.rmdir()


CONCEPTSPACE_CHILD = """
import json, os, resource, sys, threading, time
sys.path.insert(0, {here!r})
from memory_cap import texts_for
from conceptspace.activations._extract import extract
from conceptspace.models import load_model

def status():
    fields = {{}}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS", "RssAnon", "RssFile")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0]) / 1024
    return fields

model = load_model("smollm2-135m")
texts = texts_for({tokens}, model.tokenizer)
loaded = status()
peak = dict(loaded)
running = [True]
def sample():
    while running[0]:
        for name, value in status().items():
            peak[name] = max(peak[name], value)
        time.sleep(0.01)
sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
acts = extract(model, texts, sites="all", position="all", batch_size={batch}, cache_dir={cache!r}, progress=False)
rows = int(acts["layer.0"].shape[0])
seconds = time.perf_counter() - start
running[0] = False
sampler.join()
print(json.dumps({{"texts": len(texts), "rows_per_site": rows, "sites": len(acts.sites), "seconds": seconds,
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loaded_mb": loaded, "peak_mb": peak,
                  "anon_growth_mb": peak["RssAnon"] - loaded["RssAnon"]}}))
"""

NAIVE_CHILD = """
import sys, torch
sys.path.insert(0, {here!r})
from memory_cap import texts_for
from conceptspace.models import load_model

model = load_model("smollm2-135m")
texts = texts_for({tokens}, model.tokenizer)
tokenizer = model.tokenizer
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
kept, rows = [], 0
with torch.inference_mode():
    for start in range(0, len(texts), {batch}):
        batch = tokenizer(texts[start : start + {batch}], return_tensors="pt", padding=True)
        out = model.hf_model(**batch, output_hidden_states=True)
        kept.append([h[batch["attention_mask"].bool()].clone() for h in out.hidden_states])
        rows += int(batch["attention_mask"].sum())
        print(rows, flush=True)
print("finished", rows, flush=True)
"""


def texts_for(n_tokens: int, tokenizer) -> list[str]:  # type: ignore[no-untyped-def]
    """Distinct sentences (bundled true/false city statements, numbered) totalling at least ``n_tokens``."""
    from conceptspace.concepts import load_concepts

    base = load_concepts("trilemma_city_locations/true_false").texts
    lengths = [len(ids) for ids in tokenizer(list(base))["input_ids"]]
    out: list[str] = []
    total, index = 0, 0
    while total < n_tokens:
        position = index % len(base)
        out.append(f"{base[position]} ({index // len(base)})")
        total += lengths[position] + 3  # the suffix adds about three tokens
        index += 1
    return out


def _run(command: list[str], timeout: float) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cap-gib", type=float, default=2.0)
    parser.add_argument("--multiple", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="a disk folder (not tmpfs) for the cache")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    cap = int(args.cap_gib * 2**30)
    target = int(cap * args.multiple)
    tokens = -(-target // (SITES * D_MODEL * BYTES_PER_VALUE))
    free = shutil.disk_usage(args.scratch).free
    if free < 2.2 * target:
        sys.exit(f"{args.scratch} has {free / 2**30:.0f} GiB free; the run needs about {2.2 * target / 2**30:.0f}")
    try:
        group = MemoryCgroup(cap)
    except OSError as error:
        print(f"no writable memory cgroup here ({error}); run as root on Linux, nothing measured", file=sys.stderr)
        sys.exit(2)
    result: dict[str, object] = {
        "command": " ".join(["python", "benchmarks/memory_cap.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no swap",
        "cap_gib": args.cap_gib,
        "target_activation_gib": target / 2**30,
        "tokens_asked": tokens,
    }
    try:
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            code = CONCEPTSPACE_CHILD.format(here=str(HERE), tokens=tokens, batch=args.batch_size, cache=scratch)
            group.reset_peak()
            rc, out, err, seconds = _run(group.join_command([sys.executable, "-c", code]), timeout=4 * 3600)
            on_disk = sum(f.stat().st_size for f in Path(scratch).rglob("*") if f.is_file())
            result["conceptspace"] = {
                "returncode": rc,
                "wall_s": seconds,
                "on_disk_gib": on_disk / 2**30,
                "on_disk_over_cap": on_disk / cap,
                "cgroup_peak_mib": (group.peak_bytes() or 0) / 2**20,
                **(json.loads(out.strip().splitlines()[-1]) if rc == 0 else {"stderr_tail": err[-2000:]}),
            }
        if not args.skip_naive:
            code = NAIVE_CHILD.format(here=str(HERE), tokens=tokens, batch=args.batch_size)
            group.reset_peak()
            rc, out, err, seconds = _run(group.join_command([sys.executable, "-c", code]), timeout=4 * 3600)
            lines = out.strip().splitlines()
            rows = int(lines[-1].split()[-1]) if lines else 0
            result["hf_hidden_states_in_memory"] = {
                "returncode": rc,
                "killed": rc in (-9, 137),
                "finished": bool(lines) and lines[-1].startswith("finished"),
                "token_rows_before_end": rows,
                "fraction_of_dataset": rows / tokens,
                "held_gib_when_it_ended": rows * HF_STATES * D_MODEL * BYTES_PER_VALUE / 2**30,
                "wall_s": seconds,
            }
    finally:
        group.remove()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
