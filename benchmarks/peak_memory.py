"""Where the main job's peak memory comes from: RSS sampled through the run, tagged with the running analysis.

    CONCEPTSPACE_CACHE=<warm cache> python benchmarks/peak_memory.py OUT_PREFIX -- conceptspace run \
        probes/concept_space.toml --quick --out /tmp/quick

Why a sampler and not only ``/usr/bin/time -v``: the peak alone does not say which analysis reached it, nor what
the run holds between analyses (models, memos). This runs the command as a child, reads its ``VmRSS`` from
``/proc/<pid>/status`` every 0.2 s, tags each sample with the last ``[i/n] claim id: kind`` progress line, and
ends with the kernel's own peak (``ru_maxrss`` from ``wait4``), the sampled peak and where it was, and the load
average before and after (a shared machine changes the time, not the memory). Writes ``OUT_PREFIX.rss``
(seconds, MB, analysis) and ``OUT_PREFIX.log`` (the run's progress output, time-stamped). Linux only.

With worker processes (``--jobs N``) one process's RSS is not the run's memory: each sample also sums, over the
run's whole process tree, the RSS (which counts the model's pages shared copy-on-write once per process) and the
PSS (which splits every shared page among the processes sharing it, so the sum is the memory the run really
holds). Both peaks are reported (``tree_rss_peak_mb``, ``tree_pss_peak_mb``); the ``.rss`` file gains the two
columns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO


def _rss_mb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("VmRSS:")[1].split()[0]) // 1024 if "VmRSS:" in status else None


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant, through ``/proc/<pid>/task/<tid>/children``."""
    out, queue = [], [pid]
    while queue:
        current = queue.pop()
        out.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _rollup_mb(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return int(text.split(f"{field}:")[1].split()[0]) // 1024 if f"{field}:" in text else 0


def _follow(stream: IO[str], log: Path, start: float, current: list[str]) -> None:
    """Copy the child's progress lines to ``log`` and remember the analysis it is in."""
    with log.open("w", encoding="utf-8") as out:
        for line in stream:
            out.write(f"{time.time() - start:8.1f} {line}")
            out.flush()
            if line.startswith("["):
                current[0] = line.strip()[:70]


def run(prefix: Path, command: Sequence[str], every: float = 0.2) -> dict[str, object]:
    """Run ``command``, sampling its RSS; return the peaks, the wall time and the load averages."""
    start, load_before = time.time(), os.getloadavg()
    child = subprocess.Popen(list(command), stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    current, peak, where = ["start"], 0, "start"
    tree_rss_peak = tree_pss_peak = 0
    reader = threading.Thread(target=_follow, args=(child.stderr, prefix.with_suffix(".log"), start, current),
                              daemon=True)
    reader.start()
    with prefix.with_suffix(".rss").open("w", encoding="utf-8") as samples:
        while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            rss = _rss_mb(child.pid)
            pids = _tree(child.pid)
            tree_rss, tree_pss = sum(_rollup_mb(p, "Rss") for p in pids), sum(_rollup_mb(p, "Pss") for p in pids)
            tree_rss_peak, tree_pss_peak = max(tree_rss_peak, tree_rss), max(tree_pss_peak, tree_pss)
            if rss is not None:
                samples.write(f"{time.time() - start:.1f} {rss} {tree_rss} {tree_pss} {current[0]}\n")
                if rss > peak:
                    peak, where = rss, current[0]
            time.sleep(every)
    _, status, usage = os.wait4(child.pid, 0)
    reader.join(timeout=5)
    return {"exit_status": os.waitstatus_to_exitcode(status), "ru_maxrss_mb": round(usage.ru_maxrss / 1024),
            "sampled_peak_mb": peak, "peak_during": where, "tree_rss_peak_mb": tree_rss_peak,
            "tree_pss_peak_mb": tree_pss_peak, "wall_s": round(time.time() - start, 1),
            "load_before": load_before, "load_after": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefix", type=Path, help="where the samples go: PREFIX.rss and PREFIX.log")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to measure, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    print(run(args.prefix, command))


if __name__ == "__main__":
    main()
