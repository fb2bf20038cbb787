"""Content-addressed, crash-safe activation cache on disk (safetensors shards, npy arrays, JSON manifests).

Layout of one entry (``<root>/<key>/``)::

    manifest.json            written last: its presence means the entry is complete
    <site>.npy               one array per site, items in the caller's order (memory-mapped on read)
    offsets.npy              for every-token extractions: row where each item's tokens start (n_items + 1)

While an extraction runs, completed batches are written to ``<root>/<key>.partial/shard-<n>.safetensors``, each
through a temporary name and an atomic rename, so a killed run leaves only whole shards; the next run with the
same key resumes from them. When every shard is there they are streamed into the per-site arrays (memory stays
flat however large the dataset), the manifest is written, and the folder is renamed into place in one step.
Nothing is pickled: the formats are safetensors, npy and JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptspace._atomic import atomic_write_bytes, atomic_write_json
from conceptspace.errors import CacheError
from conceptspace.paths import activation_cache_dir

CACHE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"


def cache_key(parts: Mapping[str, Any]) -> str:
    """A stable hash of everything that determines the cached values (plus the cache format version)."""
    payload = json.dumps({"format": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:32]


def cache_root(root: str | Path | None = None) -> Path:
    return Path(root).expanduser() if root is not None else activation_cache_dir()


def ensure_writable(root: Path) -> None:
    """Fail early, before any forward pass, when the cache folder cannot be written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as error:
        raise CacheError(
            f"activation cache folder {root} is not writable ({error.strerror or error}); set CONCEPTSPACE_CACHE "
            "to a writable folder, or pass cache=False to keep activations in memory"
        ) from error


def _shard_name(index: int) -> str:
    return f"shard-{index:06d}.safetensors"


def write_shard(folder: Path, index: int, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save one batch's tensors as a shard, atomically."""
    from safetensors.torch import save

    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    atomic_write_bytes(folder / _shard_name(index), save(contiguous))


def completed_shards(folder: Path) -> set[int]:
    """Indices of shards that were written completely (temporary files are never named like shards)."""
    if not folder.is_dir():
        return set()
    return {int(p.name[6:12]) for p in folder.glob("shard-*.safetensors")}


def read_shard(folder: Path, index: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / _shard_name(index)))


def _numpy_view(tensor: torch.Tensor) -> np.ndarray:
    """bfloat16 has no numpy type: it is stored as its raw 16-bit pattern and the manifest says so."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy()
    return tensor.numpy()


@dataclass
class EntryWriter:
    """Streams finished shards into the per-site arrays of one cache entry, then publishes it."""

    root: Path
    key: str

    @property
    def partial(self) -> Path:
        return self.root / f"{self.key}{PARTIAL_SUFFIX}"

    @property
    def final(self) -> Path:
        return self.root / self.key

    def start(self) -> set[int]:
        """Create the working folder; return the shards a previous, interrupted run already finished."""
        self.partial.mkdir(parents=True, exist_ok=True)
        return completed_shards(self.partial)

    def publish(self, arrays: Mapping[str, np.ndarray], manifest: Mapping[str, Any]) -> Path:
        """Write the consolidated arrays and manifest, drop the shards, and move the entry into place."""
        for name, array in arrays.items():
            np.save(self.partial / f"{name}.npy", array)
        for shard in self.partial.glob("shard-*.safetensors"):
            shard.unlink()
        atomic_write_json(self.partial / MANIFEST, {**manifest, "created": time.time()})
        if self.final.exists():  # a concurrent run published the same content first
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            os.replace(self.partial, self.final)
        return self.final

    def open_array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> NpyRowWriter:
        """A row writer for one consolidated array in the working folder."""
        return NpyRowWriter(self.partial / f"{name}.npy", shape, dtype)

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


class NpyRowWriter:
    """Writes rows of a ``.npy`` file in place with ``pwrite``, in any order.

    Why not a writable memory map: the pages of a mapped file count toward the process's resident memory, so
    consolidating a dataset larger than RAM would make RSS grow with the dataset. Plain positional writes go
    through the page cache, which the kernel can drop, so memory stays flat (measured in BENCHMARKS.md).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # header + sparse body
        self._offset = int(header.offset)
        del header
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        self._dtype = np.dtype(dtype)
        self._fd = os.open(path, os.O_RDWR)

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        """Write ``values`` (rows, ...) starting at ``first_row``."""
        data = np.ascontiguousarray(values, dtype=self._dtype)
        os.pwrite(self._fd, data.tobytes(), self._offset + first_row * self._row_bytes)

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


def load_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CacheError(
            f"corrupt cache manifest {path}: delete that folder or run `conceptspace cache clear`"
        ) from error
    return manifest


def open_array(folder: Path, name: str) -> np.ndarray:
    """A read-only memory map of one cached array."""
    return np.load(folder / f"{name}.npy", mmap_mode="r")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def iter_entries(root: str | Path | None = None) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Every entry folder with its manifest (None for an unfinished ``.partial`` one)."""
    base = cache_root(root)
    if not base.is_dir():
        return
    for folder in sorted(base.iterdir()):
        if folder.is_dir():
            yield folder, (None if folder.name.endswith(PARTIAL_SUFFIX) else load_manifest(folder))


def cache_info(root: str | Path | None = None) -> dict[str, Any]:
    """What the cache holds: entries, sizes, and unfinished extractions that could be resumed."""
    entries = []
    for folder, manifest in iter_entries(root):
        entries.append(
            {
                "key": folder.name,
                "complete": manifest is not None,
                "model": (manifest or {}).get("model", {}).get("name"),
                "n_items": (manifest or {}).get("n_items"),
                "sites": len((manifest or {}).get("sites", [])),
                "position": (manifest or {}).get("position"),
                "bytes": _folder_size(folder),
            }
        )
    return {"root": str(cache_root(root)), "entries": entries, "bytes": sum(e["bytes"] for e in entries)}


def cache_clear(root: str | Path | None = None, *, partial_only: bool = False) -> int:
    """Delete cache entries (or only unfinished ones); returns how many folders were removed."""
    removed = 0
    for folder, manifest in list(iter_entries(root)):
        if partial_only and manifest is not None:
            continue
        shutil.rmtree(folder)
        removed += 1
    return removed
