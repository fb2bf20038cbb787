"""Content-addressed, crash-safe, verified activation cache on disk (safetensors shards, npy arrays, JSON manifests).

Layout of one entry (``<root>/<key>/``)::

    manifest.json            written last: its presence means the entry is complete; it records every array's
                             size, shape, dtype and sha256, and a checksum of itself
    <site>.npy               one array per site, items in the caller's order (memory-mapped on read)
    offsets.npy              for every-token extractions: row where each item's tokens start (n_items + 1)

While an extraction runs, completed batches are written to ``<root>/<key>.partial/shard-<n>.safetensors``, each
through a temporary name and an atomic rename, so a killed run leaves only whole shards; the next run with the
same key resumes from them. Every shard carries a sha256 of its tensors in its safetensors metadata, so a damaged
shard is recomputed instead of merged. When every shard is there they are streamed into the per-site arrays
(memory stays flat however large the dataset), the manifest is written, and the folder is renamed into place in
one step. Nothing is pickled: the formats are safetensors, npy and JSON.

Why the extra machinery:

* **Locks.** Two processes resuming the same unfinished entry used to truncate each other's arrays during the
  merge and publish zero rows. Every write to ``<key>`` or ``<key>.partial`` now happens under
  ``<root>/<key>.lock`` (an ``flock``; the file holds the owner's pid, host and start time for messages). The
  kernel drops the lock when its owner dies, even by ``kill -9``, so a stale lock file is simply taken over.
  A second process waits (up to ``CONCEPTSPACE_CACHE_LOCK_TIMEOUT`` seconds) and then reads the published entry.
* **Verification.** Sizes, shapes and dtypes are checked on every open (cheap: the npy headers and ``stat``);
  the sha256 of each file on the first open in a process, or whenever ``verify=True``. A damaged entry is moved
  aside to ``<key>.damaged-<time>`` with a :class:`CacheWarning` and recomputed, never served.
* **Areas.** The cache folder is shared with other caches (``weights/``, ``token-sequences/``); ``cache clear``
  only ever deletes activation entries, and never one whose lock is held by a running process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptspace.errors import CacheError, InvalidInputError
from conceptspace.paths import activation_cache_dir
from conceptspace.utils.atomic import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

#: Version 2 added content hashes (manifest, arrays, shards). Keys include the version, so entries written by
#: version 1 are never looked up again: they are recomputed once, and ``cache info`` lists the old ones as
#: ``outdated`` until ``cache clear`` removes them.
CACHE_FORMAT_VERSION = 2
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
DAMAGED_MARK = ".damaged-"
HASH = "sha256"
LOCK_TIMEOUT_ENV = "CONCEPTSPACE_CACHE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 3 * 3600.0
#: When opens hash: ``first`` (default: the first open of each file in a process), ``always``, or ``never``
#: (sizes, shapes and dtypes only: for entries so large that reading them once per process costs too much).
VERIFY_ENV = "CONCEPTSPACE_CACHE_VERIFY"
_VERIFY_MODES: dict[str, bool | None] = {"first": None, "always": True, "never": False}

#: Other caches that live in the same folder. They are never activation entries: ``cache clear`` leaves them.
OTHER_AREAS = {
    "weights": "remote weight matrices (conceptspace.weights)",
    "token-sequences": "A6 context vectors (conceptspace.aggregation)",
    "forward-memo": "the analyses' own forward outputs (conceptspace.activations._forward_memo)",
    "run-timings": "each suite's last analysis times, the worker queue's order (conceptspace run --jobs)",
}

_SHARD_NAME = re.compile(r"^shard-(\d{6})\.safetensors$")
_KEY_NAME = re.compile(r"^[0-9a-f]{32}$")


class CacheDamageError(CacheError):
    """A cache file whose contents do not match what its manifest (or its own hash) says."""


class CacheWarning(UserWarning):
    """Something in the cache was damaged and has been set aside and recomputed."""


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


@contextmanager
def disk_full_is_a_cache_error(root: Path) -> Iterator[None]:
    """Turn ENOSPC / EDQUOT while writing into a one-line :class:`CacheError` that says what to do."""
    try:
        yield
    except CacheError:
        raise
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:
            free = f"{shutil.disk_usage(root).free / 1e6:.0f} MB free"
        except OSError:
            free = "free space unknown"
        raise CacheError(
            f"no space left on the disk of the activation cache {root} ({free}): free some space "
            "(`conceptspace cache clear`), set CONCEPTSPACE_CACHE to a bigger disk, or pass cache=False; "
            "finished batches are kept and the next run resumes from them"
        ) from error


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (~1.4 GB/s warm with the CPU's SHA extensions; blake2b ran at half that here).

    Read in 1 MiB chunks into one buffer (faster than ``hashlib.file_digest``'s 256 KiB when the file is not
    in the page cache); the hash releases the GIL, so :func:`hash_files` can run several at once.
    """
    digest = hashlib.new(HASH)
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while size := stream.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def hash_files(paths: Sequence[Path]) -> list[str]:
    """sha256 of several files, on up to ``min(files, CPUs, 8)`` threads (an entry has one file per site)."""
    workers = max(1, min(len(paths), os.cpu_count() or 1, 8))
    if workers == 1:
        return [hash_file(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(hash_file, paths))


# ---------------------------------------------------------------------------------------------------------
# per-entry locks
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockOwner:
    """Who holds an entry's lock, as written into the lock file (for messages; the flock is the lock)."""

    pid: int
    host: str
    started: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)) if self.started else "?"
        return f"pid {self.pid} on {self.host} (since {since})"


def lock_path(root: Path, key: str) -> Path:
    return root / f"{key}{LOCK_SUFFIX}"


def lock_timeout() -> float:
    """Seconds to wait for another process's lock; ``CONCEPTSPACE_CACHE_LOCK_TIMEOUT`` overrides the default."""
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if not value:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        return float(value)
    except ValueError as error:
        raise CacheError(f"{LOCK_TIMEOUT_ENV}={value!r} is not a number of seconds") from error


def _read_owner(fd: int) -> LockOwner | None:
    try:
        raw = json.loads(os.pread(fd, 4096, 0) or b"null")
        return LockOwner(int(raw["pid"]), str(raw["host"]), float(raw["started"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


class EntryLock:
    """An exclusive lock on one cache key, held across resume, merge and publish.

    ``flock`` rather than an O_EXCL file: the kernel releases it when the holder dies, so a ``kill -9`` never
    leaves a lock that needs guessing about. Removing the file on release is safe because a waiter that locked
    the old, unlinked inode notices (the path no longer names its inode) and tries again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as error:
            os.close(fd)
            raise CacheError(
                f"cannot lock {self.path} ({error.strerror or error}): the cache folder's filesystem does not "
                "support file locks; set CONCEPTSPACE_CACHE to a local folder"
            ) from error
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous owner removed the file after we opened it: lock the new one instead
            os.close(fd)
            return False
        stale = _read_owner(fd)
        if stale is not None and stale.pid != os.getpid():
            log.info("taking over the lock %s left by %s, which no longer holds it", self.path, stale.describe())
        self._fd = fd
        self._record_owner(fd)
        return True

    @staticmethod
    def _record_owner(fd: int) -> None:
        """Best effort: the owner is only for messages, so a full disk must not leave the lock half taken."""
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
        except OSError as error:
            log.debug("could not record the lock owner (%s); the lock holds regardless", error)

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the lock; a clear :class:`CacheError` says who holds it if not."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        told = False
        while not self.try_acquire():
            waited = timeout - (deadline - time.monotonic())
            if time.monotonic() >= deadline:
                owner = read_lock_owner(self.path)
                who = owner.describe() if owner else "another process"
                raise CacheError(
                    f"the activation cache entry {self.path.stem} is being computed by {who} (lock {self.path}); "
                    f"gave up after {timeout:g} s. Let that run finish, raise {LOCK_TIMEOUT_ENV}, "
                    "or pass cache=False"
                )
            if not told and waited > 2:
                owner = read_lock_owner(self.path)
                log.warning("waiting for %s to finish the cache entry %s", owner.describe() if owner else
                            "another process", self.path.stem)
                told = True
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 1.5, 0.5)

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees its inode is gone and retries
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> EntryLock:
        self.acquire(lock_timeout())
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock_owner(path: Path) -> LockOwner | None:
    """The owner recorded in a lock file while it is held by a live process; None if it is free or absent."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or LockOwner(-1, "?", 0.0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# shards
# ---------------------------------------------------------------------------------------------------------


def _shard_name(index: int) -> str:
    return f"shard-{index:06d}.safetensors"


def _numpy_view(tensor: torch.Tensor) -> np.ndarray:
    """bfloat16 has no numpy type: it is stored as its raw 16-bit pattern and the manifest says so."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy()
    return tensor.numpy()


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, independent of how safetensors lays them out."""
    digest = hashlib.new(HASH)
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(np.ascontiguousarray(_numpy_view(tensor)).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def write_shard(folder: Path, index: int, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save one batch's tensors as a shard with its content hash in the metadata, atomically."""
    from safetensors.torch import save

    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    atomic_write_bytes(folder / _shard_name(index), save(contiguous, metadata={HASH: tensors_digest(contiguous)}))


def completed_shards(folder: Path) -> set[int]:
    """Indices of shards that were written completely (temporary files are never named like shards)."""
    if not folder.is_dir():
        return set()
    found = (_SHARD_NAME.match(p.name) for p in folder.iterdir())
    return {int(match.group(1)) for match in found if match}


def read_shard(folder: Path, index: int) -> dict[str, torch.Tensor]:
    """One shard's tensors, checked against the hash it was written with (:class:`CacheDamageError` if not)."""
    from safetensors import SafetensorError, safe_open

    path = folder / _shard_name(index)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except FileNotFoundError as error:
        raise CacheDamageError(f"shard {path} is missing") from error
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CacheDamageError(f"shard {path} is not a readable safetensors file ({error})") from error
    expected = metadata.get(HASH)
    if expected is None:
        raise CacheDamageError(f"shard {path} has no content hash (written by an older conceptspace)")
    if tensors_digest(tensors) != expected:
        raise CacheDamageError(f"shard {path}: its contents do not match their {HASH} (bytes changed on disk)")
    return tensors


# ---------------------------------------------------------------------------------------------------------
# manifests and verification
# ---------------------------------------------------------------------------------------------------------


def _manifest_checksum(payload: Mapping[str, Any]) -> str:
    body = {name: value for name, value in payload.items() if name != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal_manifest(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest as it will be read back (JSON types only) with a checksum of itself added."""
    plain: dict[str, Any] = json.loads(json.dumps(payload, default=str))
    plain["checksum"] = _manifest_checksum(plain)
    return plain


def load_manifest(folder: Path) -> dict[str, Any] | None:
    """An entry's manifest (None if it has none); :class:`CacheDamageError` if it is unreadable or altered."""
    path = folder / MANIFEST
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CacheDamageError(f"cache manifest {path} cannot be read ({error.strerror or error})") from error
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CacheDamageError(f"cache manifest {path} is not valid JSON (truncated or damaged)") from error
    if not isinstance(manifest, dict):
        raise CacheDamageError(f"cache manifest {path} is not a JSON object")
    if "checksum" in manifest and manifest["checksum"] != _manifest_checksum(manifest):
        raise CacheDamageError(f"cache manifest {path} does not match its checksum (bytes changed on disk)")
    return manifest


#: Files whose hash this process has checked, by device, inode, size and mtime (a rename keeps all four, so
#: publishing an entry does not make its first open hash it again).
_VERIFIED: set[tuple[int, int, int, int, str]] = set()


def _stat_key(path: Path, expected_hash: str) -> tuple[int, int, int, int, str]:
    info = path.stat()
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, expected_hash)


def file_records(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """What the manifest keeps about each array file: its size, npy shape and dtype, and content hash."""
    records = {}
    for path, digest in zip(paths, hash_files(paths), strict=True):
        array = np.load(path, mmap_mode="r")
        _VERIFIED.add(_stat_key(path, digest))
        records[path.name] = {"bytes": path.stat().st_size, "shape": list(array.shape), "dtype": array.dtype.str,
                              HASH: digest}
    return records


def _open_npy(path: Path) -> np.memmap:
    """Memory-map an npy file, with every way it can be broken reported as damage (not a raw traceback)."""
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError as error:
        raise CacheDamageError(f"{path} is missing") from error
    except (ValueError, OSError, EOFError) as error:
        raise CacheDamageError(f"{path} is not a readable .npy file ({error})") from error
    if not isinstance(array, np.memmap):
        raise CacheDamageError(f"{path} is not a plain .npy array")
    if path.stat().st_size != array.offset + array.nbytes:
        raise CacheDamageError(f"{path} has {path.stat().st_size} bytes; its header says {array.offset + array.nbytes}")
    return array


def check_array(path: Path, record: Mapping[str, Any] | None) -> np.memmap:
    """Open one cached array after checking its size, shape and dtype against its manifest record (cheap)."""
    array = _open_npy(path)
    if record is None:  # a format-1 manifest: only the header and the size can be checked
        return array
    if list(array.shape) != list(record["shape"]) or array.dtype.str != record["dtype"]:
        raise CacheDamageError(
            f"{path} holds {array.dtype.str} {tuple(array.shape)}; the manifest says "
            f"{record['dtype']} {tuple(record['shape'])}"
        )
    if path.stat().st_size != record["bytes"]:
        raise CacheDamageError(f"{path} has {path.stat().st_size} bytes; the manifest says {record['bytes']}")
    return array


def verify_mode() -> bool | None:
    """``CONCEPTSPACE_CACHE_VERIFY`` as the ``hashes`` argument of :func:`check_hashes` (None: first open)."""
    value = os.environ.get(VERIFY_ENV, "first").strip().lower() or "first"
    if value not in _VERIFY_MODES:
        raise CacheError(f"{VERIFY_ENV}={value!r}: use one of {', '.join(_VERIFY_MODES)}")
    return _VERIFY_MODES[value]


def check_hashes(expected: Mapping[Path, str], *, hashes: bool | None) -> None:
    """Compare files with their recorded sha256 (:class:`CacheDamageError` for the first that differs).

    ``hashes`` True: every file; False: none; None: as ``CONCEPTSPACE_CACHE_VERIFY`` says, by default only files
    (same device, inode, size and mtime) not yet hashed in this process.
    """
    if hashes is None:
        hashes = verify_mode()
    if hashes is False:
        return
    keys = {path: _stat_key(path, digest) for path, digest in expected.items()}
    todo = [path for path in expected if hashes or keys[path] not in _VERIFIED]
    for path, digest in zip(todo, hash_files(todo), strict=True):
        if digest != expected[path]:
            _VERIFIED.discard(keys[path])
            raise CacheDamageError(f"{path}: its contents do not match their {HASH} (bytes changed on disk)")
        _VERIFIED.add(keys[path])


def _expected_shapes(manifest: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape every array of an activation entry must have, from the manifest's own numbers."""
    n_items, d_model = int(manifest["n_items"]), int(manifest["d_model"])
    counts = manifest.get("token_counts")
    every_token = str(manifest.get("position")) == "all"
    rows = int(sum(counts)) if every_token and counts is not None else n_items
    shapes: dict[str, tuple[int, ...]] = {f"{site}.npy": (rows, d_model) for site in manifest["sites"]}
    if every_token:
        shapes["offsets.npy"] = (n_items + 1,)
    return shapes


def verify_entry(folder: Path, *, hashes: bool | None = None) -> tuple[dict[str, Any], dict[str, np.memmap]]:
    """Check a finished entry and return its manifest and memory-mapped arrays; :class:`CacheDamageError` if not.

    Checked: the manifest parses and matches its checksum; every array the manifest implies is there, with the
    shape that ``n_items``, ``d_model`` and ``token_counts`` give and the size, dtype and hash recorded for it;
    ``offsets`` agrees with ``token_counts``. ``hashes``: see :func:`check_hashes`.
    """
    manifest = load_manifest(folder)
    if manifest is None:
        raise CacheDamageError(f"{folder} has no {MANIFEST} (deleted, or the entry was never finished)")
    try:
        shapes = _expected_shapes(manifest)
    except (KeyError, TypeError, ValueError) as error:
        raise CacheDamageError(f"cache manifest {folder / MANIFEST} lacks or garbles {error}") from error
    records = manifest.get("files")
    if records is not None and set(records) != set(shapes):
        raise CacheDamageError(f"cache manifest {folder / MANIFEST} lists {sorted(records)}, expected {sorted(shapes)}")
    arrays: dict[str, np.memmap] = {}
    try:
        for name, shape in shapes.items():
            array = check_array(folder / name, None if records is None else records[name])
            if tuple(array.shape) != shape:
                raise CacheDamageError(f"{folder / name} has shape {tuple(array.shape)}; the entry needs {shape}")
            arrays[name.removesuffix(".npy")] = array
        if records is not None:
            check_hashes({folder / name: str(record[HASH]) for name, record in records.items()}, hashes=hashes)
    except (KeyError, TypeError) as error:
        raise CacheDamageError(f"cache manifest {folder / MANIFEST} has a garbled file record ({error})") from error
    if "offsets" in arrays:
        expected = np.concatenate([[0], np.cumsum(np.asarray(manifest["token_counts"], dtype=np.int64))])
        if not np.array_equal(np.asarray(arrays["offsets"]), expected):
            raise CacheDamageError(f"{folder / 'offsets.npy'} does not agree with the manifest's token counts")
    return manifest, arrays


def set_aside(folder: Path, reason: str) -> Path:
    """Move a damaged entry out of the way (kept for inspection; ``cache clear`` removes it) and warn."""
    target = folder.with_name(f"{folder.name}{DAMAGED_MARK}{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.replace(folder, target)
    warnings.warn(
        f"activation cache entry {folder.name} was damaged ({reason}); moved it to {target.name} and recomputing",
        CacheWarning,
        stacklevel=3,
    )
    return target


# ---------------------------------------------------------------------------------------------------------
# writing an entry
# ---------------------------------------------------------------------------------------------------------


def _npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


@dataclass
class EntryWriter:
    """Streams finished shards into the per-site arrays of one cache entry, then publishes it.

    Every method assumes the caller holds the entry's :class:`EntryLock`.
    """

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

    def finish_interrupted_publish(self) -> Path | None:
        """A run killed between writing the manifest and the rename left a whole entry here: publish it."""
        if not (self.partial / MANIFEST).exists():
            return None
        try:
            verify_entry(self.partial, hashes=True)
        except CacheDamageError:
            (self.partial / MANIFEST).unlink()  # arrays were being rewritten: the shards decide
            return None
        return self._move_into_place()

    def publish(self, arrays: Mapping[str, np.ndarray], manifest: Mapping[str, Any]) -> Path:
        """Write the remaining arrays, hash every array into the manifest, drop the shards, move into place."""
        for name, array in arrays.items():
            atomic_write_bytes(self.partial / f"{name}.npy", _npy_bytes(array))
        names = [*(f"{site}.npy" for site in manifest["sites"]), *(f"{name}.npy" for name in arrays)]
        records = file_records([self.partial / name for name in names])
        sealed = seal_manifest({**manifest, "format": CACHE_FORMAT_VERSION, "created": time.time(), "files": records})
        atomic_write_json(self.partial / MANIFEST, sealed)
        return self._move_into_place()

    def _move_into_place(self) -> Path:
        for shard in self.partial.glob("shard-*.safetensors"):
            shard.unlink()
        if self.final.exists():  # left by a process that did not lock (an older conceptspace): keep it aside
            set_aside(self.final, "replaced by a fresh extraction")
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
        """Write ``values`` (rows, ...) starting at ``first_row``; a short write (disk nearly full) continues."""
        data = memoryview(np.ascontiguousarray(values, dtype=self._dtype).tobytes())
        position = self._offset + first_row * self._row_bytes
        while data:
            written = os.pwrite(self._fd, data, position)
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data, position = data[written:], position + written

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


# ---------------------------------------------------------------------------------------------------------
# inspecting and clearing the cache folder
# ---------------------------------------------------------------------------------------------------------


def _folder_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # removed while we looked
            continue
    return total


def _stem(name: str) -> str:
    """The key an activation cache folder or file belongs to."""
    for mark in (PARTIAL_SUFFIX, DAMAGED_MARK, LOCK_SUFFIX):
        if mark in name:
            return name.split(mark)[0]
    return name


@dataclass
class CacheEntry:
    """One activation cache folder as ``cache info`` sees it."""

    folder: Path
    state: str  # complete | partial | running | damaged | set-aside | outdated
    manifest: dict[str, Any] | None = None
    problem: str | None = None
    owner: LockOwner | None = None

    def as_dict(self) -> dict[str, Any]:
        manifest = self.manifest or {}
        return {
            "key": self.folder.name,
            "state": self.state,
            "complete": self.state == "complete",
            "problem": self.problem,
            "locked_by": self.owner.describe() if self.owner else None,
            "model": (manifest.get("model") or {}).get("name") if isinstance(manifest.get("model"), dict) else None,
            "n_items": manifest.get("n_items"),
            "sites": len(manifest.get("sites") or []),
            "position": manifest.get("position"),
            "bytes": _folder_size(self.folder),
        }


def _classify(folder: Path, *, verify: bool) -> CacheEntry | None:
    """What an activation cache folder is (None: not ours, e.g. another cache area)."""
    name = folder.name
    owner = read_lock_owner(lock_path(folder.parent, _stem(name)))
    if name.endswith(PARTIAL_SUFFIX):
        return CacheEntry(folder, "running" if owner else "partial", owner=owner)
    if DAMAGED_MARK in name:
        return CacheEntry(folder, "set-aside", problem="moved aside after a failed check")
    if not _KEY_NAME.match(name) and not (folder / MANIFEST).exists():
        return None
    try:
        manifest = load_manifest(folder)
    except CacheDamageError as error:
        return CacheEntry(folder, "damaged", problem=str(error), owner=owner)
    if manifest is not None and manifest.get("format", 1) != CACHE_FORMAT_VERSION:
        return CacheEntry(folder, "outdated", manifest, f"cache format {manifest.get('format', 1)}", owner)
    try:
        verify_entry(folder, hashes=verify)
    except CacheDamageError as error:
        return CacheEntry(folder, "damaged", manifest, str(error), owner)
    return CacheEntry(folder, "complete", manifest, owner=owner)


def scan(root: str | Path | None = None, *, verify: bool = False) -> tuple[list[CacheEntry], list[Path]]:
    """Activation entries, and the other folders (other cache areas, unknown ones) that are not ours."""
    base = cache_root(root)
    entries: list[CacheEntry] = []
    others: list[Path] = []
    if not base.is_dir():
        return entries, others
    for folder in sorted(base.iterdir()):
        if not folder.is_dir():
            continue
        entry = None if folder.name in OTHER_AREAS else _classify(folder, verify=verify)
        if entry is None:
            others.append(folder)
        else:
            entries.append(entry)
    return entries, others


def iter_entries(root: str | Path | None = None) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Every activation entry folder with its manifest (None for unfinished or unreadable ones)."""
    for entry in scan(root)[0]:
        yield entry.folder, entry.manifest if entry.state == "complete" else None


def _area(folder: Path) -> dict[str, Any]:
    return {"name": folder.name, "what": OTHER_AREAS.get(folder.name, "not an activation cache folder"),
            "bytes": _folder_size(folder)}


def cache_info(root: str | Path | None = None, *, verify: bool = False) -> dict[str, Any]:
    """What the cache holds: entries with their state, sizes, and the other cache areas sharing the folder.

    Damaged entries are listed (state ``damaged`` with the problem), never raised. ``verify`` hashes every array.
    """
    entries, others = scan(root, verify=verify)
    listed = [entry.as_dict() for entry in entries]
    areas = [_area(folder) for folder in others]
    return {
        "root": str(cache_root(root)),
        "entries": listed,
        "areas": areas,
        "bytes": sum(e["bytes"] for e in listed),
    }


@dataclass
class ClearReport:
    """What ``cache clear`` did: removed folders, ones skipped because a live process holds them, areas left."""

    removed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)


def clear_areas(names: Sequence[str], root: str | Path | None = None) -> dict[str, int]:
    """Delete whole other areas of the cache folder (``OTHER_AREAS``; ``"all"`` for every one): bytes freed each.

    Why apart from :func:`cache_clear`: those areas hold derived results (the forward memo, remote weight
    matrices, A6 context vectors) rather than extractions, and clearing them is the way to make a run recompute
    them. Each area is first renamed out of the way, so a reader sees either the whole area or none of it (the
    memo's readers treat a vanished entry as a miss) and an interrupted clear leaves no half area under its name.
    """
    chosen = list(OTHER_AREAS) if "all" in names else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in OTHER_AREAS]
    if unknown:
        raise InvalidInputError(f"unknown cache area(s) {unknown}; use {', '.join(OTHER_AREAS)} or all")
    base = cache_root(root)
    freed: dict[str, int] = {}
    for name in chosen:
        folder = base / name
        if not folder.is_dir():
            freed[name] = 0
            continue
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        doomed = base / f".{name}.removing-{os.getpid()}"
        folder.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        freed[name] = size
    return freed


def _remove_entry(folder: Path) -> bool:
    """Delete one activation folder while holding its key's lock, so no extraction can be inside it."""
    if DAMAGED_MARK in folder.name:  # set aside: no process writes there any more
        shutil.rmtree(folder, ignore_errors=True)
        return True
    lock = EntryLock(lock_path(folder.parent, _stem(folder.name)))
    if not lock.try_acquire():
        return False
    try:
        shutil.rmtree(folder)
    finally:
        lock.release()
    return True


def _remove_stale_locks(base: Path) -> None:
    for path in base.glob(f"*{LOCK_SUFFIX}"):
        lock = EntryLock(path)
        if path.is_file() and lock.try_acquire():
            lock.release()


def cache_clear(root: str | Path | None = None, *, partial_only: bool = False) -> ClearReport:
    """Delete activation entries (or only unfinished ones), never one a running process holds.

    Only activation entries are touched: the other cache areas in the folder (``weights/``, ``token-sequences/``)
    and unknown folders are left alone and named in the report. ``partial_only`` deletes only unfinished
    extractions (``<key>.partial``) whose lock nobody holds.
    """
    base = cache_root(root)
    report = ClearReport()
    entries, others = scan(base)
    report.left_alone = [folder.name for folder in others]
    for entry in entries:
        if partial_only and entry.state not in {"partial", "running"}:
            continue
        if _remove_entry(entry.folder):
            report.removed.append(entry.folder.name)
        else:
            report.running.append(entry.folder.name)
    if base.is_dir():
        _remove_stale_locks(base)
    return report
