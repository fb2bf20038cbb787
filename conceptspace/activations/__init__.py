"""Activations: run texts through a model once, keep what each analysis reads, on disk.

Why a layer of its own: extraction is the expensive step of every analysis, so it happens in one place that
batches by length, reduces positions inside the nnsight trace (only the slices leave it, which is what a remote
run downloads), stops after the deepest site, and publishes each result to a crash-safe, content-addressed cache
(safetensors shards while running, one memory-mapped ``.npy`` per site when done; nothing pickled). Public:
:func:`extract`, :class:`Activations`, :class:`Position`, and the cache's ``info``/``clear``.
"""

from __future__ import annotations

from conceptspace.activations._cache import CACHE_FORMAT_VERSION, cache_clear, cache_info, cache_key, cache_root
from conceptspace.activations._counters import (
    ForwardCounts,
    forward_counts,
    reset_forward_counts,
    superset_extraction,
)
from conceptspace.activations._extract import Activations, TokenizedTexts, extract, open_activations, tokenize
from conceptspace.activations._forward_memo import MemoCounts, memo_counts, memoized, memoized_record
from conceptspace.activations._positions import Position, token_span

__all__ = [
    "CACHE_FORMAT_VERSION",
    "Activations",
    "ForwardCounts",
    "MemoCounts",
    "Position",
    "TokenizedTexts",
    "cache_clear",
    "cache_info",
    "cache_key",
    "cache_root",
    "extract",
    "forward_counts",
    "memo_counts",
    "memoized",
    "memoized_record",
    "open_activations",
    "reset_forward_counts",
    "superset_extraction",
    "token_span",
    "tokenize",
]
