"""Where conceptspace keeps files on disk.

Two caches with different lifetimes: activations (``CONCEPTSPACE_CACHE``; cheap to rebuild, often cleared) and
converted model weights (``CONCEPTSPACE_MODEL_CACHE``; the bundled GGUF dequantized once to safetensors, because
dequantizing costs 20-40 s in every process). Both default to the user cache folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/conceptspace`` or ``~/.cache/conceptspace``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conceptspace"


def activation_cache_dir() -> Path:
    """Root of the content-addressed activation cache."""
    override = os.environ.get("CONCEPTSPACE_CACHE")
    return Path(override).expanduser() if override else user_cache_root() / "activations"


def model_cache_dir() -> Path:
    """Root of converted model weights (dequantized GGUF files)."""
    override = os.environ.get("CONCEPTSPACE_MODEL_CACHE")
    return Path(override).expanduser() if override else user_cache_root() / "models"
