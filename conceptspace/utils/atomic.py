"""Atomic file writes: a reader sees either nothing or the whole file, never a half-written one.

Why a module of its own: both the activation cache and the model-weights cache publish files this way, and they
sit in different layers (``activations`` above ``models``), so the helper lives in the foundation layer below both.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())
