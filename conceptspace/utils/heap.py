"""Give freed heap memory back to the OS (``malloc_trim``), for code that frees large transient allocations.

Why: glibc keeps freed chunks of the sizes tensors and buffers come in on its heap once its dynamic mmap
threshold has risen; they are reused, but their pages stay resident, so a process that built something large
and dropped it still looks (and, to a memory budget, is) that large. ``malloc_trim(0)`` returns the free pages,
including those in the middle of the heap. Used by extraction (:mod:`conceptspace.activations._host_memory`), by
the runner after releasing a control, and after a GGUF conversion. On a C library without ``malloc_trim``
(musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_heap() -> bool:
    """Return free heap pages to the OS; True if the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
