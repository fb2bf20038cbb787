"""One compute thread per process: for forked workers (where it is required) and for code that must match them.

Why it is required after fork: torch's CPU wheels run their intra-op parallelism on GNU OpenMP (libgomp), and so
does scikit-learn's vendored copy. libgomp keeps its thread team across calls; a forked child inherits the
team's bookkeeping but not its threads, so the child's first parallel region waits forever for threads that do
not exist. Measured here: a parent that ran one 1000x1000 matmul on 2 torch threads, then forked, left a child
hung in its own matmul (killed after 30 s); the same child with one thread finished at once. PyTorch's own
DataLoader workers set one thread for the same reason. One thread also makes a worker's float sums independent
of the machine's thread count (see :func:`one_thread`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


def limit_to_one_thread() -> None:
    """Make every thread pool this process has loaded (torch, OpenMP runtimes, BLAS) use one thread, for good.

    Call it first thing in a forked child, before any parallel region can start."""
    torch.set_num_threads(1)
    threadpool_limits(limits=1)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread (and one per OpenMP/BLAS pool), restoring the caller's counts after.

    Why: a forward's float sums depend on how many threads split them (a matmul's partial sums are added in another
    order), so a result computed in the parent must use the thread count the workers use to equal theirs bit for
    bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)
