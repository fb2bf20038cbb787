"""Run numbered jobs in forked worker processes that pull from one queue, each job leaving its output in a folder.

Why processes: a run's statistics are mostly single-threaded numpy and Python held by the GIL. Measured on the
quick battery (2-core machine): splitting its analyses over two threads cut the wall time by 15%, two processes
by nearly half. Why fork: the model, loaded once, is shared copy-on-write, so a worker starts in milliseconds
and adds only the memory it writes. Why a pipe of job numbers: a worker takes the next job when it is free
(the longest jobs are queued first), which balances uneven jobs without any coordinator; a read of 4 bytes from
a pipe is atomic, so two workers never take the same job.

What comes back is only files (the caller's ``work`` writes them; :mod:`conceptspace.suite._record_codec` for the
runner) and each worker's exit status. A job whose worker died while running it is reported as lost with that
worker's exit status, never silently re-run in the parent (what killed a worker, e.g. memory, could kill the run).
Each worker computes on one thread (:func:`conceptspace.utils.threads.limit_to_one_thread`, before anything
else): GNU OpenMP, torch's thread pool, hangs a forked child that enters a parallel region once the parent has
used more than one thread. Linux only: elsewhere fork is unsafe with the libraries loaded here, and
:func:`usable_jobs` returns 1.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conceptspace.utils.threads import limit_to_one_thread

_STARTED = "started-{}"


@dataclass
class WorkerOutcome:
    """Which jobs finished (their ``work`` returned), which were lost, and each worker's exit status."""

    finished: list[int] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)
    exit_codes: list[int] = field(default_factory=list)


def usable_jobs(requested: int, n_jobs: int) -> int:
    """Worker processes to use: ``requested`` (0 = one per CPU this process may use), at most one per job and per
    CPU; 1 where fork is not safe (not Linux)."""
    if requested < 0:
        raise ValueError(f"jobs must be >= 0 (0 = one per CPU); got {requested}")
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return 1
    cpus = len(os.sched_getaffinity(0))
    wanted = cpus if requested == 0 else requested
    return max(1, min(wanted, cpus, n_jobs))


def run_forked(order: Sequence[int], work: Callable[[int], None], finish: Callable[[int], None], *, jobs: int,
               folder: Path, at_start: Callable[[], None] | None = None) -> WorkerOutcome:
    """Run ``work(i)`` for every ``i`` of ``order`` (taken in that order) in ``jobs`` forked workers.

    ``work`` must leave its output under ``folder`` (the parent reads nothing else back); ``finish(k)`` runs once
    in worker ``k`` after its last job (e.g. to write its counters); ``at_start`` once in each worker before its
    first job. Every worker runs on one thread (torch, OpenMP and BLAS pools): more would hang it (module
    docstring), so its numbers equal a one-thread run of the same jobs. An exception escaping ``work`` ends that
    worker with status 1: its job is lost, the other workers go on. Interrupting the parent stops every worker."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1; got {jobs}")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"".join(int(i).to_bytes(4, "little") for i in order))
    finally:
        os.close(write_end)
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    try:
        for k in range(jobs):
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                _worker(k, read_end, work, finish, folder, at_start)
            pids.append(pid)
        os.close(read_end)
        read_end = -1
        codes = [_exit_code(os.waitpid(pid, 0)[1]) for pid in pids]
    except BaseException:
        for pid in pids:
            _kill(pid)
        raise
    finally:
        if read_end >= 0:
            os.close(read_end)
    outcome = WorkerOutcome(exit_codes=codes)
    for i in order:
        if (folder / f"done-{i}").exists():
            outcome.finished.append(i)
        elif (folder / _STARTED.format(i)).exists():
            worker = int((folder / _STARTED.format(i)).read_text())
            outcome.lost[i] = f"its worker process (pid {worker}) ended with status {_status_of(worker, pids, codes)}"
        else:
            outcome.lost[i] = f"never started: every worker process ended first (statuses {codes})"
    return outcome


def _worker(k: int, read_end: int, work: Callable[[int], None], finish: Callable[[int], None], folder: Path,
            at_start: Callable[[], None] | None) -> None:
    status = 0
    try:
        limit_to_one_thread()  # before any parallel region: the parent's OpenMP team did not survive the fork
        if at_start is not None:
            at_start()
        while True:
            chunk = os.read(read_end, 4)
            if not chunk:
                break
            i = int.from_bytes(chunk, "little")
            (folder / _STARTED.format(i)).write_text(str(os.getpid()))
            work(i)
            (folder / f"done-{i}").touch()
        finish(k)
    except BaseException:  # the job in hand is lost; the parent reports it
        traceback.print_exc(file=sys.stderr)
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # never run the parent's exit handlers or return into its stack


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def _status_of(pid: int, pids: list[int], codes: list[int]) -> str:
    code = codes[pids.index(pid)] if pid in pids else None
    if code is None:
        return "unknown"
    return f"{code} (killed by signal {-code})" if code < 0 else str(code)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
