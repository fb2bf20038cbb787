"""A verified on-disk memo of the analyses' own forward outputs (edited, k-shot and fed-back prompts).

Why: the activation cache holds what :func:`~conceptspace.activations.extract` reads, but 95% of a warm full
battery went into forwards it never sees: steering and placebo edits, k-shot and zero-shot prompts, attention
edits, logit-lens distributions, five models each (BENCHMARKS.md, "Where the full battery's time goes"). Those
forwards are as deterministic as an extraction, so a second run can read their small outputs (target
log-probs, per-sequence losses, the arrays the statistics read) from disk and recompute only the statistics.

How to use it: ``memoized(model, name, spec, compute, version=...)`` returns ``compute()``'s arrays, from disk
when an entry with the same key exists. The key hashes the model identity (the twin seeds and the spectrum twin
differ there), its device type, dtype and remoteness, the call site's ``name`` and ``version`` (bump it when the
code's meaning changes), and ``spec``: a JSON-able description of *everything else* the outputs depend on
(texts or token ids, layers, strengths, positions, parameters). Arrays and tensors inside ``spec`` enter by a
sha256 of their bytes with their shape and dtype, never as text, so a large edit vector can neither bloat the
key nor collide through a truncated ``repr``. Anything else that is not plain JSON is refused (a silent
``str()`` of an object is how two different specs would share a key).

Storage: ``<CONCEPTSPACE_CACHE>/forward-memo/<key>/`` holds one ``.npy`` per array and a sealed
``manifest.json`` (sizes, shapes, dtypes, sha256 of every file, a checksum of itself), written with the
activation cache's helpers: every file through temp-file + rename, the manifest last, the folder renamed into
place under the key's ``flock``. A read checks the manifest and every array; a damaged entry is set aside
(``<key>.damaged-<time>``) with a :class:`CacheWarning` and recomputed. Nothing is pickled (object arrays are
refused). A full or unwritable disk never fails an analysis: the values are returned unstored, with a warning.
``CONCEPTSPACE_FORWARD_MEMO=0`` turns the memo off (every call computes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

import conceptspace.activations._cache as store
from conceptspace.errors import CacheError, InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.utils.atomic import atomic_write_bytes, atomic_write_json

AREA = "forward-memo"
SWITCH_ENV = "CONCEPTSPACE_FORWARD_MEMO"
#: Bumped when the entry layout changes; enters every key, so old entries are never read again.
MEMO_FORMAT = 1
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_OFF = {"0", "false", "off", "no"}
Record = TypeVar("Record")


# --------------------------------------------------------------------------------------------- counters
@dataclass(frozen=True)
class MemoCounts:
    """Hits (served from disk, no forward) and misses (computed, then stored) per call-site name."""

    counts: Mapping[str, tuple[int, int]]

    def __sub__(self, other: MemoCounts) -> MemoCounts:
        names = set(self.counts) | set(other.counts)
        diff = {}
        for name in sorted(names):
            hits, misses = self.counts.get(name, (0, 0))
            old_hits, old_misses = other.counts.get(name, (0, 0))
            if (hits - old_hits, misses - old_misses) != (0, 0):
                diff[name] = (hits - old_hits, misses - old_misses)
        return MemoCounts(diff)

    @property
    def hits(self) -> int:
        return sum(hits for hits, _ in self.counts.values())

    @property
    def misses(self) -> int:
        return sum(misses for _, misses in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        """results.json's record: totals and, per call site, ``[hits, misses]``."""
        return {"hits": self.hits, "misses": self.misses,
                "by_name": {name: list(pair) for name, pair in self.counts.items()}}


_lock = threading.Lock()
_counts: dict[str, list[int]] = {}


def memo_counts() -> MemoCounts:
    """The process-wide counters now; a run reports the difference of two snapshots."""
    with _lock:
        return MemoCounts({name: (pair[0], pair[1]) for name, pair in _counts.items()})


def _count(name: str, *, hit: bool) -> None:
    with _lock:
        pair = _counts.setdefault(name, [0, 0])
        pair[0 if hit else 1] += 1


# ------------------------------------------------------------------------------------------------ keys
def fingerprint(value: Any) -> Any:
    """``value`` as plain JSON, arrays and tensors replaced by ``{sha256, shape, dtype}`` of their bytes.

    Refuses what it cannot describe exactly (objects, sets, non-string keys): a ``str()`` fallback would let a
    truncated ``repr`` of two different arrays give one key.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise InvalidInputError(f"a forward memo spec holds an array of dtype {value.dtype}; use numbers")
        array = np.ascontiguousarray(value)
        return {"sha256": hashlib.sha256(array.tobytes()).hexdigest(), "shape": list(array.shape),
                "dtype": array.dtype.str}
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else repr(float(value))
    if isinstance(value, Mapping):
        if not all(isinstance(name, str) for name in value):
            raise InvalidInputError("a forward memo spec's mappings need string keys")
        return {name: fingerprint(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [fingerprint(item) for item in value]
    raise InvalidInputError(
        f"a forward memo spec cannot describe a {type(value).__name__} exactly; pass its numbers or an array"
    )


def memo_key(model: ConceptModel, name: str, version: str, spec: Mapping[str, Any]) -> str:
    """The entry's key: model identity, device type, dtype, remoteness, call site, its version, and the spec."""
    return store.cache_key({
        "area": AREA,
        "memo_format": MEMO_FORMAT,
        "model": model.identity.key(),
        "device": model.device.type,
        "dtype": str(model.dtype),
        "remote": str(model.remote) if model.remote else None,
        "name": name,
        "version": version,
        "spec": fingerprint(spec),
    })


def memo_enabled() -> bool:
    """False when ``CONCEPTSPACE_FORWARD_MEMO`` is 0/false/off/no."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in _OFF


def memo_root() -> Path:
    return store.cache_root() / AREA


# ---------------------------------------------------------------------------------------------- reading
def _check_arrays(arrays: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
    out = {}
    for array_name, value in arrays.items():
        if not _ARRAY_NAME.match(array_name):
            raise InvalidInputError(f"forward memo {name}: array name {array_name!r} must be [A-Za-z0-9_]{{1,64}}")
        array = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
        if array.dtype.kind not in "biufc":
            raise InvalidInputError(f"forward memo {name}: array {array_name!r} has dtype {array.dtype}; "
                                    "only numbers are stored (nothing is pickled)")
        out[array_name] = array
    return out


def read_entry(folder: Path) -> dict[str, np.ndarray]:
    """A finished entry's arrays (copied into memory), or :class:`~conceptspace.activations._cache.CacheDamageError`."""
    manifest = store.load_manifest(folder)
    if manifest is None:
        raise store.CacheDamageError(f"{folder} has no {store.MANIFEST} (the entry was never finished)")
    records = manifest.get("files")
    names = manifest.get("arrays")
    if not isinstance(records, dict) or not isinstance(names, list) or set(records) != {f"{n}.npy" for n in names}:
        raise store.CacheDamageError(f"forward memo manifest {folder / store.MANIFEST} lists no consistent arrays")
    try:
        arrays = {n: store.check_array(folder / f"{n}.npy", records[f"{n}.npy"]) for n in names}
        store.check_hashes({folder / f: str(r[store.HASH]) for f, r in records.items()}, hashes=None)
    except (KeyError, TypeError) as error:
        raise store.CacheDamageError(f"forward memo manifest {folder / store.MANIFEST} is garbled ({error})") from error
    return {n: np.array(array) for n, array in arrays.items()}


def _read_if_sound(folder: Path, *, set_aside: bool) -> dict[str, np.ndarray] | None:
    """The entry if it is there and passes every check; else None (set aside when damaged and asked to)."""
    if not folder.exists():
        return None
    try:
        return read_entry(folder)
    except store.CacheDamageError as error:
        if set_aside:
            store.set_aside(folder, str(error))
        return None
    except FileNotFoundError:  # set aside or cleared by another process just now
        return None


# ---------------------------------------------------------------------------------------------- writing
def write_entry(root: Path, key: str, arrays: Mapping[str, np.ndarray], about: Mapping[str, Any]) -> Path:
    """Publish ``arrays`` under ``key``: files in ``<key>.partial``, manifest last, one rename (lock held)."""
    partial = root / f"{key}{store.PARTIAL_SUFFIX}"
    final = root / key
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed writer: we hold the lock, nobody else is in it
    partial.mkdir(parents=True)
    paths = []
    for array_name, array in arrays.items():
        path = partial / f"{array_name}.npy"
        atomic_write_bytes(path, store._npy_bytes(np.ascontiguousarray(array)))
        paths.append(path)
    manifest = store.seal_manifest({**about, "arrays": list(arrays), "files": store.file_records(paths)})
    atomic_write_json(partial / store.MANIFEST, manifest)
    if final.exists():
        store.set_aside(final, "replaced by a fresh computation")
    os.replace(partial, final)
    return final


def _store(root: Path, key: str, arrays: dict[str, np.ndarray], about: Mapping[str, Any]) -> None:
    """Write the entry; a full or unwritable disk warns and leaves the values unstored (the run goes on)."""
    try:
        store.ensure_writable(root)
        with store.disk_full_is_a_cache_error(root):
            write_entry(root, key, arrays, about)
    except CacheError as error:
        shutil.rmtree(root / f"{key}{store.PARTIAL_SUFFIX}", ignore_errors=True)
        warnings.warn(f"forward memo {about.get('name')}: not stored ({error})", store.CacheWarning, stacklevel=4)


# ------------------------------------------------------------------------------------------------ the memo
def memoized(
    model: ConceptModel,
    name: str,
    spec: Mapping[str, Any],
    compute: Callable[[], Mapping[str, Any]],
    *,
    version: str,
) -> dict[str, np.ndarray]:
    """``compute()``'s arrays for this model and ``spec``, read from disk when a sound entry exists.

    ``name`` is the call site (``"icl.narrowing"``), ``version`` its semantics version: bump it when what
    ``compute`` returns for the same spec changes. ``compute`` returns a mapping of array name
    (``[A-Za-z0-9_]``) to a numeric array or tensor. The returned arrays are plain in-memory copies, the same
    bits either way. Under the key's lock a second process waits for the first and then reads its entry.
    """
    if not memo_enabled():
        return _check_arrays(compute(), name)
    key = memo_key(model, name, version, spec)
    root = memo_root()
    found = _read_if_sound(root / key, set_aside=False)
    if found is not None:
        _count(name, hit=True)
        return found
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = store.EntryLock(store.lock_path(root, key))
        lock.acquire(store.lock_timeout())
    except (OSError, CacheError) as error:
        warnings.warn(f"forward memo {name}: cache folder {root} unusable ({error}); computing without it",
                      store.CacheWarning, stacklevel=2)
        _count(name, hit=False)
        return _check_arrays(compute(), name)
    try:
        found = _read_if_sound(root / key, set_aside=True)  # published while we waited, or damaged
        if found is not None:
            _count(name, hit=True)
            return found
        arrays = _check_arrays(compute(), name)
        _count(name, hit=False)
        about = {"format": MEMO_FORMAT, "name": name, "version": version, "model": model.identity.key(),
                 "model_name": model.identity.name}
        _store(root, key, arrays, about)
        return arrays
    finally:
        lock.release()


def memoized_record(
    model: ConceptModel,
    name: str,
    spec: Mapping[str, Any],
    cls: type[Record],
    compute: Callable[[], Record],
    *,
    version: str,
) -> Record:
    """:func:`memoized` for a dataclass whose fields are all arrays (or None): what a ``measure`` step returns.

    Why: the analyses' measurement steps return small frozen records (``Measured``) that the statistics read;
    storing the record, not the forwards' raw outputs, keeps entries small (no vocabulary-wide distributions).
    """
    if not is_dataclass(cls):
        raise InvalidInputError(f"forward memo {name}: {cls.__name__} is not a dataclass")
    names = [field.name for field in fields(cls)]

    def as_arrays() -> dict[str, Any]:
        record = compute()
        out = {}
        for field_name in names:
            value = getattr(record, field_name)
            if value is None:
                continue
            if not isinstance(value, np.ndarray | torch.Tensor):
                raise InvalidInputError(f"forward memo {name}: {cls.__name__}.{field_name} is a "
                                        f"{type(value).__name__}; only array fields can be memoized")
            out[field_name] = value
        return out

    arrays = memoized(model, name, {"record": cls.__qualname__, "fields": names, **spec}, as_arrays, version=version)
    return cls(**{field_name: arrays.get(field_name) for field_name in names})


def spec_json(spec: Mapping[str, Any]) -> str:
    """The spec as the key sees it (for messages and tests)."""
    return json.dumps(fingerprint(spec), sort_keys=True)
