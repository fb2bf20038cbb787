"""Process-wide counts of extraction requests and of the forward passes that actually ran, and the superset switch.

Why counters: the suite asks for the same texts many times (analyses, sites, positions, controls), and how many of
those requests really reach the model is what decides a cold run's time. Every :func:`extract` call counts as
one request of its texts (the naive cost: every request forwarding its texts); every traced batch counts its
texts as forwarded (what actually ran). A run reports the difference of two snapshots, so nested or concurrent
users never have to reset anything; :func:`reset_forward_counts` exists for tests and notebooks.

Why a superset switch: on a cache miss for a pooled position, saving every site up to the deepest requested one
costs no more forward than the request itself (the forward stops at its deepest site either way) and only the
copies beside it (BENCHMARKS.md), and lets every later request of those texts at sites no deeper be served from
disk. It is off by default for a direct :func:`extract` call (a user asking for one deep site of a large model
should not pay the disk, or on NDIF the download, of every block before it) and on inside
:func:`superset_extraction`, which the suite runner wraps around a run.
``CONCEPTSPACE_EXTRACT_SUPERSET=1|0`` overrides both; ``extract(..., superset=)`` overrides everything.
"""

from __future__ import annotations

import os
import threading
from contextlib import ContextDecorator
from dataclasses import asdict, dataclass
from typing import Any

from conceptspace.errors import InvalidInputError

SUPERSET_ENV = "CONCEPTSPACE_EXTRACT_SUPERSET"
_ENV_VALUES = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}


@dataclass(frozen=True)
class ForwardCounts:
    """A snapshot (or a difference of two) of the process-wide extraction counters.

    ``requests``/``requested_texts``: :func:`extract` calls and the texts they asked for (the naive count).
    ``cache_hits``: requests served with no forward pass at all (an exact entry, or a superset entry).
    ``forward_batches``/``forwarded_texts``: batches traced through a model and the texts in them (what ran).
    """

    requests: int = 0
    requested_texts: int = 0
    cache_hits: int = 0
    forward_batches: int = 0
    forwarded_texts: int = 0

    def __sub__(self, other: ForwardCounts) -> ForwardCounts:
        return ForwardCounts(*(a - b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))

    def __add__(self, other: ForwardCounts) -> ForwardCounts:
        return ForwardCounts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_lock = threading.Lock()
_counts: dict[str, int] = ForwardCounts().as_dict()
_superset_depth = 0


def forward_counts() -> ForwardCounts:
    """The counters now (process-wide, every model and thread together)."""
    with _lock:
        return ForwardCounts(**_counts)


def reset_forward_counts() -> None:
    """Set every counter to zero (a run should rather subtract two snapshots)."""
    with _lock:
        for name in _counts:
            _counts[name] = 0


def record_request(n_texts: int) -> None:
    _add(requests=1, requested_texts=n_texts)


def record_cache_hit() -> None:
    _add(cache_hits=1)


def record_forward(n_texts: int) -> None:
    _add(forward_batches=1, forwarded_texts=n_texts)


def _add(**amounts: int) -> None:
    with _lock:
        for name, amount in amounts.items():
            _counts[name] += amount


class superset_extraction(ContextDecorator):  # lower case: used like a function, `with superset_extraction():`
    """Within this block (or decorated function), a local model's pooled-position misses save every earlier site.

    Re-entrant and process-wide (threads started inside see it too). A use as a decorator enters on each call.
    """

    def __enter__(self) -> superset_extraction:
        global _superset_depth
        with _lock:
            _superset_depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _superset_depth
        with _lock:
            _superset_depth -= 1


def superset_wanted(asked: bool | None, *, remote: bool) -> bool:
    """Whether a cache miss should save every site up to the deepest asked: argument, env var, process default.

    The process default (on inside :class:`superset_extraction`) leaves remote models out: on NDIF every extra
    site is downloaded, so there it takes an explicit ``superset=True`` or the env var.
    """
    if asked is not None:
        return asked
    value = os.environ.get(SUPERSET_ENV, "").strip().lower()
    if value:
        if value not in _ENV_VALUES:
            raise InvalidInputError(f"{SUPERSET_ENV}={value!r}: use 1 or 0")
        return _ENV_VALUES[value]
    with _lock:
        return _superset_depth > 0 and not remote


def counts_summary(counts: ForwardCounts) -> dict[str, Any]:
    """The run's record for results.json: naive (every request forwarding its texts) vs done, and cache hits."""
    return {"requested_texts": counts.requested_texts, "forwarded_texts": counts.forwarded_texts,
            "requests": counts.requests, "cache_hits": counts.cache_hits, "forward_batches": counts.forward_batches}
