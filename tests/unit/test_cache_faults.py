"""Faults the activation cache must survive without ever returning wrong values or deleting another cache's data.

Concurrent processes on one key, kill -9 during shards and during the merge, a full disk, and every kind of damage
to every kind of cache file (array, offsets, shard, manifest). Each case compares what the caller gets with a
single uninterrupted run, bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conceptspace.activations import Activations, extract, open_activations
from conceptspace.activations import _cache as cache_store
from conceptspace.activations._cache import CacheDamageError, CacheWarning
from conceptspace.errors import CacheError

TEXTS = [f"Item {i} says that the {'old ' * (i % 4)}castle is by the sea." for i in range(24)]
SITES = [0, 2]
BATCH = 2
N_BATCHES = len(TEXTS) // BATCH
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """Stands in for a crash in the middle of an extraction."""


def _model(tiny_model_dirs: dict[str, Path], counter: dict[str, int] | None = None, fail_after: int | None = None):
    """A fresh tiny llama whose first block counts its calls (one per batch) and can fail after some."""
    from conceptspace.models import load_model

    model = load_model(str(tiny_model_dirs["llama"]))
    block = model.hf_model.get_submodule(f"{model.site_map.layers}.0")
    original = block.forward
    calls = counter if counter is not None else {"calls": 0}

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["calls"] += 1
        if fail_after is not None and calls["calls"] > fail_after:
            raise _Interrupted
        return original(*args, **kwargs)

    block.forward = counted
    return model


def _extract(model: Any, cache_dir: Path, position: str = "all", **kwargs: Any) -> Activations:
    return extract(model, TEXTS, sites=SITES, position=position, batch_size=BATCH, cache_dir=cache_dir,
                   progress=False, **kwargs)


def _values(acts: Activations) -> dict[str, np.ndarray]:
    out = {site: np.array(acts.arrays[site]) for site in acts.sites}
    if acts.offsets is not None:
        out["offsets"] = np.array(acts.offsets)
    return out


def _assert_bit_identical(got: dict[str, np.ndarray] | Activations, want: dict[str, np.ndarray]) -> None:
    values = _values(got) if isinstance(got, Activations) else got
    assert sorted(values) == sorted(want)
    for name, array in want.items():
        assert values[name].dtype == array.dtype and values[name].shape == array.shape, name
        assert values[name].tobytes() == array.tobytes(), f"{name} differs from a single uninterrupted run"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Bit-for-bit comparisons need one summation order: the helper processes run with OMP_NUM_THREADS=1, so
    the in-process runs use one thread too (a float32 matmul on 2 threads can differ in the last bit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted run per position, into its own cache: the values every faulty run must reproduce."""
    root = tmp_path_factory.mktemp("reference-cache")
    model = _model(tiny_model_dirs)
    return {position: _values(_extract(model, root, position)) for position in ("all", "last")}


def _interrupt(tiny_model_dirs: dict[str, Path], cache_dir: Path, after: int) -> Path:
    """Leave an unfinished extraction with ``after`` whole shards, as a crash would; return its folder."""
    with pytest.raises(_Interrupted):
        _extract(_model(tiny_model_dirs, fail_after=after), cache_dir)
    partial = next(cache_dir.glob(f"*{cache_store.PARTIAL_SUFFIX}"))
    assert len(cache_store.completed_shards(partial)) == after
    return partial


def _flip_byte(path: Path, position: int, *, keep_mtime: bool = False) -> None:
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:  # what bit rot looks like: same size, same mtime
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


_RUN = textwrap.dedent(
    """
    import json, os, sys, time, traceback
    import numpy as np
    from conceptspace.activations import _cache as cache_store
    from conceptspace.activations import extract
    from conceptspace.models import load_model

    model_dir, cache_dir, texts_file, out_dir, delay, merge_delay, n_runs, stagger, distinct = sys.argv[1:10]
    model = load_model(model_dir)
    block = model.hf_model.get_submodule("model.layers.0")
    original = block.forward
    calls = [0]
    def slow(*args, **kwargs):
        calls[0] += 1
        time.sleep(float(delay))
        return original(*args, **kwargs)
    block.forward = slow
    write_rows = cache_store.NpyRowWriter.write_rows
    def slow_rows(self, first_row, values):
        time.sleep(float(merge_delay))
        write_rows(self, first_row, values)
    cache_store.NpyRowWriter.write_rows = slow_rows
    texts = json.loads(open(texts_file).read())

    def run(number):
        out = f"{out_dir}/{number}"
        os.makedirs(out, exist_ok=True)
        started = time.time()
        mine = texts[number::int(n_runs)] if distinct == "1" else texts  # distinct: one key per process
        acts = extract(model, mine, sites=[0, 2], position="all", batch_size=2, cache_dir=cache_dir, progress=False)
        ended = time.time()
        for site in acts.sites:
            np.save(f"{out}/{site}.npy", np.asarray(acts.arrays[site]))
        np.save(f"{out}/offsets.npy", np.asarray(acts.offsets))
        with open(f"{out}/report.json", "w") as stream:
            json.dump({"forwards": calls[0], "started": started, "ended": ended, "pid": os.getpid()}, stream)

    open(f"{out_dir}/ready", "w").close()
    while not os.path.exists(f"{out_dir}/go"):
        time.sleep(0.005)
    if int(n_runs) == 1:
        run(0)
    else:  # separate processes, forked from one that loaded everything once (loading takes seconds)
        children = []
        for number in range(int(n_runs)):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    run(number)
                except BaseException:
                    traceback.print_exc()
                    code = 1
                sys.stderr.flush()
                os._exit(code)
            children.append(pid)
            time.sleep(float(stagger))
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        if any(codes):
            print(f"exit codes of the runs: {codes}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # skips the interpreter's teardown of torch, which takes seconds
    """
)


def _start(tiny_model_dirs: dict[str, Path], tmp_path: Path, cache_dir: Path, *, delay: float = 0.0,
           merge_delay: float = 0.0, runs: int = 1, stagger: float = 0.0,
           distinct: bool = False) -> tuple[subprocess.Popen[str], Path]:
    """A separate Python process that loads the model and says ``ready``; on ``go`` it runs the extraction
    (slowed down as asked), itself or in ``runs`` forked processes started ``stagger`` seconds apart."""
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(TEXTS))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(script), str(tiny_model_dirs["llama"]), str(cache_dir), str(texts), str(out),
               str(delay), str(merge_delay), str(runs), str(stagger), "1" if distinct else "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / "ready").exists(), process, "the model to load")
    (out / "go").touch()
    return process, out


def _finish(process: subprocess.Popen[str], out: Path) -> list[tuple[dict[str, np.ndarray], dict[str, float]]]:
    """What every run got (its arrays) and did (forward passes, start and end times)."""
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    results = []
    for folder in sorted((p for p in out.iterdir() if p.is_dir()), key=lambda p: int(p.name)):
        values = {path.stem: np.load(path) for path in folder.glob("*.npy")}
        results.append((values, json.loads((folder / "report.json").read_text())))
    return results


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str, limit: float = 120) -> None:
    deadline = time.time() + limit
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# ---------------------------------------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_processes", [2, 3])
def test_concurrent_resumes_of_one_key_match_a_single_run(tiny_model_dirs, tmp_path, reference, n_processes):
    """The reported bug: a second resumer truncated the first one's arrays, which then published zero rows.

    The processes start 0.3 s apart while the first still has eight slowed batches (0.1 s each) to go, so they
    really overlap (checked below).
    """
    cache_dir = tmp_path / "cache"
    _interrupt(tiny_model_dirs, cache_dir, after=4)
    process, out = _start(tiny_model_dirs, tmp_path, cache_dir, delay=0.1, runs=n_processes, stagger=0.3)
    results = _finish(process, out)
    assert len(results) == n_processes
    for values, _ in results:
        _assert_bit_identical(values, reference["all"])
    # the lock makes one process do the missing batches and the others read what it published
    forwards = [int(report["forwards"]) for _, report in results]
    assert sorted(forwards) == [0] * (n_processes - 1) + [N_BATCHES - 4]
    worker = results[forwards.index(N_BATCHES - 4)][1]
    assert all(report["started"] < worker["ended"] for _, report in results), "the runs did not overlap"
    assert [p.name for p in cache_dir.iterdir()] == [next(cache_dir.iterdir()).name]  # one entry, no leftovers
    _assert_bit_identical(_extract(_model(tiny_model_dirs), cache_dir), reference["all"])


def test_concurrent_extractions_of_different_keys_do_not_disturb_each_other(tiny_model_dirs, tmp_path):
    """Three processes, three keys, one cache folder at the same time: each gets exactly its own single-run
    values, and the cache ends with three complete entries and nothing else."""
    cache_dir = tmp_path / "cache"
    process, out = _start(tiny_model_dirs, tmp_path, cache_dir, delay=0.05, runs=3, distinct=True)
    results = _finish(process, out)
    assert len(results) == 3
    model = _model(tiny_model_dirs)
    for number, (values, report) in enumerate(results):
        alone = extract(model, TEXTS[number::3], sites=SITES, position="all", batch_size=BATCH,
                        cache_dir=tmp_path / f"alone-{number}", progress=False)
        _assert_bit_identical(values, _values(alone))
        assert int(report["forwards"]) == N_BATCHES // 3
    starts = [report["started"] for _, report in results]
    ends = [report["ended"] for _, report in results]
    assert max(starts) < min(ends), "the three runs did not overlap"
    entries = sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(cache_store.LOCK_SUFFIX))
    assert len(entries) == 3 and not any(name.endswith(cache_store.PARTIAL_SUFFIX) for name in entries)


def test_waiting_for_a_held_lock_times_out_with_a_clear_error(tiny_model_dirs, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    _interrupt(tiny_model_dirs, cache_dir, after=2)
    key = next(cache_dir.glob("*.partial")).name.removesuffix(".partial")
    monkeypatch.setenv(cache_store.LOCK_TIMEOUT_ENV, "0.5")
    model = _model(tiny_model_dirs)
    with cache_store.EntryLock(cache_store.lock_path(cache_dir, key)):
        start = time.monotonic()
        with pytest.raises(CacheError, match=rf"being computed by pid {os.getpid()} on .*gave up after 0.5 s"):
            _extract(model, cache_dir)
        assert 0.4 < time.monotonic() - start < 5
    monkeypatch.setenv(cache_store.LOCK_TIMEOUT_ENV, "soon")
    with pytest.raises(CacheError, match="not a number of seconds"):
        _extract(_model(tiny_model_dirs), cache_dir)


def test_a_lock_left_by_a_dead_process_is_taken_over(tiny_model_dirs, tmp_path, reference, monkeypatch):
    cache_dir = tmp_path / "cache"
    partial = _interrupt(tiny_model_dirs, cache_dir, after=3)
    key = partial.name.removesuffix(".partial")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = cache_store.lock_path(cache_dir, key)
    lock.write_text(json.dumps({"pid": dead.pid, "host": "gone", "started": 0}))  # no flock behind it
    assert cache_store.read_lock_owner(lock) is None
    monkeypatch.setenv(cache_store.LOCK_TIMEOUT_ENV, "2")
    counter = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, counter), cache_dir), reference["all"])
    assert counter["calls"] == N_BATCHES - 3 and not lock.exists()


def test_a_waiter_takes_over_when_the_lock_holder_is_killed(tiny_model_dirs, tmp_path, reference):
    """kill -9 the process that holds the lock while another waits: the waiter resumes from its shards."""
    import threading

    cache_dir = tmp_path / "cache"
    process, _ = _start(tiny_model_dirs, tmp_path, cache_dir, delay=0.3)
    _wait_for(lambda: len(list(cache_dir.glob("*.partial/shard-*"))) >= 2, process, "two shards")
    counter = {"calls": 0}
    model = _model(tiny_model_dirs, counter)
    outcome: dict[str, Any] = {}

    def wait_and_extract() -> None:
        try:
            outcome["acts"] = _extract(model, cache_dir)
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    waiter = threading.Thread(target=wait_and_extract)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive() and counter["calls"] == 0, "the second run did not wait for the lock"
    process.kill()
    process.communicate()
    waiter.join(120)
    assert not waiter.is_alive() and "error" not in outcome, outcome.get("error")
    assert 2 <= N_BATCHES - counter["calls"] < N_BATCHES  # it ran only what the killed run had not finished
    _assert_bit_identical(outcome["acts"], reference["all"])


def test_clear_partial_leaves_a_running_extraction_and_other_areas_alone(tiny_model_dirs, tmp_path, reference):
    """The reported bug: `cache clear --partial` deleted a running job's folder and the weights/ area."""
    cache_dir = tmp_path / "cache"
    (cache_dir / "weights" / "model-key").mkdir(parents=True)
    np.save(cache_dir / "weights" / "model-key" / "lm_head.weight.npy", np.ones((3, 4), dtype=np.float32))
    (cache_dir / "token-sequences").mkdir()
    np.save(cache_dir / "token-sequences" / "final_norm-last-abc.npy", np.ones(4, dtype=np.float32))
    (cache_dir / "notes").mkdir()
    (cache_dir / "notes" / "readme.txt").write_text("mine")
    (cache_dir / "0123abcd.partial").mkdir()  # an abandoned extraction: nobody holds its lock
    process, out = _start(tiny_model_dirs, tmp_path, cache_dir, delay=0.2)
    _wait_for(lambda: len(list(cache_dir.glob("*.partial/shard-*"))) >= 1, process, "a first shard")

    info = cache_store.cache_info(cache_dir)
    states = {entry["key"]: entry["state"] for entry in info["entries"]}
    assert states.pop("0123abcd.partial") == "partial" and list(states.values()) == ["running"]
    running = next(e for e in info["entries"] if e["state"] == "running")
    assert f"pid {process.pid} " in running["locked_by"]
    assert sorted(area["name"] for area in info["areas"]) == ["notes", "token-sequences", "weights"]

    report = cache_store.cache_clear(cache_dir, partial_only=True)
    assert report.removed == ["0123abcd.partial"] and report.running == [running["key"]]
    assert sorted(report.left_alone) == ["notes", "token-sequences", "weights"]
    report = cache_store.cache_clear(cache_dir)  # a full clear must not break the running job either
    assert report.running == [running["key"]]
    [(values, report)] = _finish(process, out)
    _assert_bit_identical(values, reference["all"])
    assert report["forwards"] == N_BATCHES
    assert (cache_dir / "weights" / "model-key" / "lm_head.weight.npy").exists()
    assert (cache_dir / "token-sequences" / "final_norm-last-abc.npy").exists()
    assert (cache_dir / "notes" / "readme.txt").read_text() == "mine"


def test_clear_removes_stale_locks_and_every_kind_of_activation_entry(tiny_model_dirs, tmp_path, capsys,
                                                                    monkeypatch):
    from conceptspace.cli import main

    cache_dir = tmp_path / "cache"
    acts = _extract(_model(tiny_model_dirs), cache_dir, position="last")
    damaged = _extract(_model(tiny_model_dirs), cache_dir, position="mean")
    (damaged.folder / cache_store.MANIFEST).write_text('{"sites": ["layer.0"')  # truncated
    (cache_dir / f"{acts.folder.name}.damaged-20260101T000000-1").mkdir()
    (cache_dir / "ffffffffffffffffffffffffffffffff.lock").write_text("{}")  # stale: nobody holds it
    (cache_dir / "weights").mkdir()
    held = cache_store.EntryLock(cache_store.lock_path(cache_dir, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"))
    (cache_dir / "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.partial").mkdir()
    assert held.try_acquire()
    try:
        monkeypatch.setenv("CONCEPTSPACE_CACHE", str(cache_dir))
        assert main(["cache", "info"]) == 0
        shown = capsys.readouterr().out
        assert f"damaged {damaged.folder.name}: cache manifest" in shown and "not valid JSON" in shown
        assert "running" in shown and "other area weights/" in shown
        assert main(["cache", "info", "--verify"]) == 1  # a damaged entry fails the verification
        capsys.readouterr()
        assert main(["cache", "clear"]) == 0
        shown = capsys.readouterr().out
        assert "removed 3 cache entries" in shown
        assert "kept eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.partial" in shown and "left alone weights/" in shown
    finally:
        held.release()
    assert sorted(p.name for p in cache_dir.iterdir()) == ["eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.partial", "weights"]


# ---------------------------------------------------------------------------------------------------------
# kill -9 and a full disk
# ---------------------------------------------------------------------------------------------------------


def test_kill_during_the_merge_resumes_bit_identically(tiny_model_dirs, tmp_path, reference):
    cache_dir = tmp_path / "cache"
    process, _ = _start(tiny_model_dirs, tmp_path, cache_dir, merge_delay=0.05)
    _wait_for(lambda: any(cache_dir.glob("*.partial/layer.0.npy")), process, "the merge")
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    partial = next(cache_dir.glob("*.partial"))
    assert cache_store.completed_shards(partial) == set(range(N_BATCHES))
    assert not (partial / cache_store.MANIFEST).exists()
    counter = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, counter), cache_dir), reference["all"])
    assert counter["calls"] == 0  # every shard was whole: only the merge ran again
    assert not partial.exists()


def test_kill_between_manifest_and_rename_publishes_without_recomputing(tiny_model_dirs, tmp_path, reference):
    cache_dir = tmp_path / "cache"
    acts = _extract(_model(tiny_model_dirs), cache_dir)
    os.replace(acts.folder, cache_dir / f"{acts.folder.name}.partial")  # where the killed run left it
    counter = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, counter), cache_dir), reference["all"])
    assert counter["calls"] == 0


def test_a_half_rewritten_partial_with_a_stale_manifest_is_recomputed(tiny_model_dirs, tmp_path, reference):
    cache_dir = tmp_path / "cache"
    acts = _extract(_model(tiny_model_dirs), cache_dir)
    partial = cache_dir / f"{acts.folder.name}.partial"
    os.replace(acts.folder, partial)
    with open(partial / "layer.2.npy", "r+b") as stream:  # a later merge had begun to rewrite it
        stream.truncate(200)
    counter = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, counter), cache_dir), reference["all"])
    assert counter["calls"] == N_BATCHES


def _enospc(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_shards_is_one_line_and_resumes(tiny_model_dirs, tmp_path, reference, monkeypatch):
    cache_dir = tmp_path / "cache"
    write_shard = cache_store.write_shard
    written = {"n": 0}

    def fills_up(folder: Path, index: int, tensors: Any) -> None:
        written["n"] += 1
        if written["n"] > 5:
            _enospc()
        write_shard(folder, index, tensors)

    monkeypatch.setattr(cache_store, "write_shard", fills_up)
    with pytest.raises(CacheError, match="no space left on the disk of the activation cache") as raised:
        _extract(_model(tiny_model_dirs), cache_dir)
    assert "\n" not in str(raised.value) and "resumes" in str(raised.value)
    monkeypatch.undo()
    partial = next(cache_dir.glob("*.partial"))
    assert sorted(p.name for p in partial.iterdir()) == [f"shard-{n:06d}.safetensors" for n in range(5)]
    assert not list(cache_dir.glob("*.lock"))  # the lock went with the failed run
    counter = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, counter), cache_dir), reference["all"])
    assert counter["calls"] == N_BATCHES - 5


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a write goes to")
def test_disk_full_during_the_merge_is_one_line_and_recovers(tiny_model_dirs, tmp_path, reference, monkeypatch,
                                                             capsys):
    from conceptspace.cli import main

    cache_dir = tmp_path / "cache"
    pwrite = os.pwrite

    def full_for_arrays(fd: int, data: Any, offset: int) -> int:  # the merge's positional writes into .npy files
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".npy"):
            _enospc()
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_for_arrays)
    with pytest.raises(CacheError, match="no space left") as raised:
        _extract(_model(tiny_model_dirs), cache_dir)
    assert "\n" not in str(raised.value)
    texts = tmp_path / "texts.txt"
    texts.write_text("one text\n")
    monkeypatch.setenv("CONCEPTSPACE_CACHE", str(tmp_path / "cli-cache"))
    assert main(["extract", "--model", str(tiny_model_dirs["llama"]), "--texts", str(texts), "--quiet",
                 "--position", "all"]) == 2
    error = capsys.readouterr().err
    told = [line for line in error.splitlines() if line.startswith("conceptspace:")]
    assert len(told) == 1 and told[0].startswith("conceptspace: error: no space left") and "Traceback" not in error
    monkeypatch.undo()
    counter = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, counter), cache_dir), reference["all"])
    assert counter["calls"] == 0


def test_a_full_disk_while_taking_the_lock_does_not_leave_it_held(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "pwrite", _enospc)
    first = cache_store.EntryLock(tmp_path / "k.lock")
    assert first.try_acquire()  # the owner record is only for messages
    assert not cache_store.EntryLock(tmp_path / "k.lock").try_acquire()
    first.release()
    assert cache_store.EntryLock(tmp_path / "k.lock").try_acquire()


def test_disk_full_is_told_apart_from_other_write_errors(tmp_path):
    with pytest.raises(CacheError, match="no space left"), cache_store.disk_full_is_a_cache_error(tmp_path):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    with pytest.raises(PermissionError), cache_store.disk_full_is_a_cache_error(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")


# ---------------------------------------------------------------------------------------------------------
# damaged entries: every file kind
# ---------------------------------------------------------------------------------------------------------


def _flip_in_data(path: Path) -> None:
    _flip_byte(path, path.stat().st_size - 7)


def _wrong_shape(path: Path) -> None:
    np.save(path, np.ones((5, 576), dtype=np.float32))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as stream:
        stream.truncate(path.stat().st_size // 2)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _bad_magic(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:6] = b"NOTNPY"
    path.write_bytes(bytes(data))


def _delete(path: Path) -> None:
    path.unlink()


def _manifest_value_changed(path: Path) -> None:
    text = path.read_text()
    assert '"n_items": 24' in text
    path.write_text(text.replace('"n_items": 24', '"n_items": 25'))  # still valid JSON


def _manifest_resealed_with_a_wrong_width(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["d_model"] = 64  # a coherent, checksummed manifest that no longer fits its arrays
    cache_store.atomic_write_json(path, cache_store.seal_manifest(manifest))


def _manifest_from_another_entry(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["token_counts"] = [*manifest["token_counts"][1:], manifest["token_counts"][0]]
    manifest["n_items"] = len(manifest["token_counts"])
    cache_store.atomic_write_json(path, cache_store.seal_manifest(manifest))


DAMAGE = {
    "array byte flip": ("layer.2.npy", _flip_in_data, "do not match their sha256"),
    "array wrong shape": ("layer.2.npy", _wrong_shape, r"holds <f4 \(5, 576\)"),
    "array truncated": ("layer.2.npy", _truncate, "not a readable .npy|bytes; its header says"),
    "array empty": ("layer.0.npy", _empty, "not a readable .npy"),
    "array bad magic": ("layer.0.npy", _bad_magic, "not a readable .npy"),
    "array deleted": ("layer.0.npy", _delete, "is missing"),
    "offsets byte flip": ("offsets.npy", _flip_in_data, "do not match their sha256|offsets.npy does not agree"),
    "offsets wrong shape": ("offsets.npy", _wrong_shape, r"holds <f4 \(5, 576\)"),
    "manifest byte flip": (cache_store.MANIFEST, lambda p: _flip_byte(p, p.stat().st_size // 2),
                           "not valid JSON|does not match its checksum"),
    "manifest value changed": (cache_store.MANIFEST, _manifest_value_changed, "does not match its checksum"),
    "manifest truncated": (cache_store.MANIFEST, _truncate, "not valid JSON"),
    "manifest empty": (cache_store.MANIFEST, _empty, "not valid JSON"),
    "manifest deleted": (cache_store.MANIFEST, _delete, "has no manifest.json"),
    "manifest wrong width": (cache_store.MANIFEST, _manifest_resealed_with_a_wrong_width, r"needs \(\d+, 64\)"),
    "manifest of other items": (cache_store.MANIFEST, _manifest_from_another_entry, "token.counts"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_set_aside_and_recomputed(tiny_model_dirs, tmp_path, reference, damage):
    name, harm, problem = DAMAGE[damage]
    cache_dir = tmp_path / "cache"
    folder = _extract(_model(tiny_model_dirs), cache_dir).folder
    harm(folder / name)

    listed = cache_store.cache_info(cache_dir, verify=True)["entries"]
    assert [(e["state"], e["complete"]) for e in listed] == [("damaged", False)]
    assert listed[0]["problem"]

    counter = {"calls": 0}
    with pytest.warns(CacheWarning, match=rf"entry {folder.name} was damaged \(.*({problem})"):
        got = _extract(_model(tiny_model_dirs, counter), cache_dir)
    _assert_bit_identical(got, reference["all"])
    assert counter["calls"] == N_BATCHES
    states = sorted(e["state"] for e in cache_store.cache_info(cache_dir, verify=True)["entries"])
    assert states == ["complete", "set-aside"]
    again = {"calls": 0}
    _assert_bit_identical(_extract(_model(tiny_model_dirs, again), cache_dir), reference["all"])
    assert again["calls"] == 0  # the recomputed entry is served from now on


def test_structural_damage_is_found_without_hashing(tiny_model_dirs, tmp_path):
    cache_dir = tmp_path / "cache"
    folder = _extract(_model(tiny_model_dirs), cache_dir, position="last").folder
    _wrong_shape(folder / "layer.0.npy")
    with pytest.raises(CacheDamageError, match=r"holds <f4 \(5, 576\); the manifest says <f4 \(24, 32\)"):
        open_activations(folder, verify=False)
    assert cache_store.cache_info(cache_dir)["entries"][0]["state"] == "damaged"


def test_bit_rot_is_caught_on_the_first_open_in_a_process_and_with_verify(tiny_model_dirs, tmp_path, reference,
                                                                          monkeypatch):
    cache_dir = tmp_path / "cache"
    folder = _extract(_model(tiny_model_dirs), cache_dir, position="last").folder
    _flip_byte(folder / "layer.2.npy", (folder / "layer.2.npy").stat().st_size - 3, keep_mtime=True)
    # this process hashed the file when it published it; a same-size, same-mtime change is only seen on request
    served = open_activations(folder)
    assert np.array(served.arrays["layer.2"]).tobytes() != reference["last"]["layer.2"].tobytes()
    with pytest.raises(CacheDamageError, match=r"layer\.2\.npy: its contents do not match their sha256"):
        open_activations(folder, verify=True)
    monkeypatch.setattr(cache_store, "_VERIFIED", set())  # what a new process starts with
    with pytest.raises(CacheDamageError, match="do not match their sha256"):
        open_activations(folder)
    with pytest.warns(CacheWarning, match="layer.2.npy: its contents do not match"):
        got = _extract(_model(tiny_model_dirs), cache_dir, position="last")
    _assert_bit_identical(got, reference["last"])


def test_the_verify_setting_chooses_when_opens_hash(tiny_model_dirs, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    folder = _extract(_model(tiny_model_dirs), cache_dir, position="last").folder
    _flip_byte(folder / "layer.0.npy", (folder / "layer.0.npy").stat().st_size - 3, keep_mtime=True)
    monkeypatch.setattr(cache_store, "_VERIFIED", set())  # a new process
    monkeypatch.setenv(cache_store.VERIFY_ENV, "never")
    open_activations(folder)  # sizes and shapes only, as asked
    monkeypatch.setenv(cache_store.VERIFY_ENV, "always")
    with pytest.raises(CacheDamageError, match="do not match their sha256"):
        open_activations(folder)
    monkeypatch.setenv(cache_store.VERIFY_ENV, "sometimes")
    with pytest.raises(CacheError, match="use one of first, always, never"):
        open_activations(folder)


def test_a_format_1_entry_opens_with_a_warning_and_is_listed_as_outdated(tiny_model_dirs, tmp_path, reference):
    cache_dir = tmp_path / "cache"
    folder = _extract(_model(tiny_model_dirs), cache_dir).folder
    manifest = json.loads((folder / cache_store.MANIFEST).read_text())
    for name in ("files", "checksum", "format"):
        del manifest[name]
    (folder / cache_store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(CacheWarning, match="older conceptspace .cache format 1. and has no content hashes"):
        _assert_bit_identical(open_activations(folder), reference["all"])
    assert cache_store.cache_info(cache_dir)["entries"][0]["state"] == "outdated"
    _truncate(folder / "layer.0.npy")
    with pytest.raises(CacheDamageError, match=r"layer\.0\.npy"):
        open_activations(folder)
    assert cache_store.cache_clear(cache_dir).removed == [folder.name]


# ---------------------------------------------------------------------------------------------------------
# damaged shards
# ---------------------------------------------------------------------------------------------------------


def _shard(partial: Path, index: int) -> Path:
    return partial / f"shard-{index:06d}.safetensors"


def _shard_of_wrong_width(partial: Path) -> None:
    tensors = cache_store.read_shard(partial, 1)
    tensors["layer.2"] = torch.zeros(tensors["layer.2"].shape[0], 576)
    cache_store.write_shard(partial, 1, tensors)  # a valid hash over wrong content


def _shard_of_other_items(partial: Path) -> None:
    cache_store.write_shard(partial, 1, cache_store.read_shard(partial, 0))


def _shard_without_hash(partial: Path) -> None:
    from safetensors.torch import save_file

    save_file(cache_store.read_shard(partial, 1), str(_shard(partial, 1)))  # as conceptspace 1 wrote them


SHARD_DAMAGE = {
    "byte flip": (lambda p: _flip_in_data(_shard(p, 1)), "do not match their sha256"),
    "byte flip in header": (lambda p: _flip_byte(_shard(p, 1), 12), "not a readable safetensors|do not match"),
    "truncated": (lambda p: _truncate(_shard(p, 1)), "not a readable safetensors"),
    "empty": (lambda p: _empty(_shard(p, 1)), "not a readable safetensors"),
    "wrong width": (_shard_of_wrong_width, r"site layer.2 is torch.float32 \(\d+, 576\)"),
    "other items": (_shard_of_other_items, "other items than its batch"),
    "no hash": (_shard_without_hash, "no content hash"),
}


@pytest.mark.parametrize("damage", list(SHARD_DAMAGE))
def test_a_damaged_shard_is_recomputed_not_merged(tiny_model_dirs, tmp_path, reference, damage):
    harm, problem = SHARD_DAMAGE[damage]
    cache_dir = tmp_path / "cache"
    partial = _interrupt(tiny_model_dirs, cache_dir, after=4)
    harm(partial)
    counter = {"calls": 0}
    with pytest.warns(CacheWarning, match=rf"shard 1 is damaged \(.*({problem})"):
        got = _extract(_model(tiny_model_dirs, counter), cache_dir)
    _assert_bit_identical(got, reference["all"])
    assert counter["calls"] == N_BATCHES - 4 + 1  # the missing batches and the damaged one


def test_shard_names_that_are_not_shards_are_ignored(tmp_path):
    (tmp_path / "shard-abc.safetensors").write_bytes(b"")
    (tmp_path / ".shard-000001.safetensors.tmp").write_bytes(b"")
    (tmp_path / "shard-000002.safetensors").write_bytes(b"")
    assert cache_store.completed_shards(tmp_path) == {2}


def test_parallel_file_hashes_equal_plain_sha256(tmp_path):
    import hashlib

    sizes = [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 5]
    paths = []
    for number, size in enumerate(sizes):
        path = tmp_path / f"f{number}.bin"
        path.write_bytes(np.random.default_rng(number).integers(0, 256, size, dtype=np.uint8).tobytes())
        paths.append(path)
    assert cache_store.hash_files(paths) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
