"""The activation cache: content addressing, memory-mapped reads, atomic writes, resume after a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conceptspace.activations import _cache as cache_store
from conceptspace.activations._extract import extract, open_activations
from conceptspace.errors import CacheError

TEXTS = [f"Item number {i} says that the {'old ' * (i % 5)}castle is by the sea." for i in range(40)]


def _count_forward(model, counter: dict[str, int]) -> None:
    block = model.hf_model.get_submodule(f"{model.site_map.layers}.0")
    original = block.forward

    def counted(*args, **kwargs):
        counter["calls"] += 1
        return original(*args, **kwargs)

    block.forward = counted


def test_second_extraction_is_served_from_cache_without_a_forward(tiny_model_dirs, tmp_path):
    from conceptspace.models import load_model

    model = load_model(str(tiny_model_dirs["llama"]))
    counter = {"calls": 0}
    _count_forward(model, counter)
    first = extract(model, TEXTS[:6], sites=[0, 2], cache_dir=tmp_path, progress=False)
    calls = counter["calls"]
    assert calls >= 1
    second = extract(model, TEXTS[:6], sites=[0, 2], cache_dir=tmp_path, progress=False)
    assert counter["calls"] == calls and second.folder == first.folder
    assert isinstance(second["layer.0"], np.memmap) and not second["layer.0"].flags.writeable
    # any change to what determines the values is a different entry
    extract(model, TEXTS[:6], sites=[0], cache_dir=tmp_path, progress=False)
    extract(model, TEXTS[:6], sites=[0, 2], position="mean", cache_dir=tmp_path, progress=False)
    extract(model, [*TEXTS[:5], TEXTS[5] + "!"], sites=[0, 2], cache_dir=tmp_path, progress=False)
    extract(model.untrained(0), TEXTS[:6], sites=[0, 2], cache_dir=tmp_path, progress=False)
    assert len(cache_store.cache_info(tmp_path)["entries"]) == 5


def test_manifest_records_model_and_padding(tiny_models, tmp_path):
    acts = extract(tiny_models["gpt2"], TEXTS[:10], sites=[1], cache_dir=tmp_path, progress=False)
    manifest = cache_store.load_manifest(acts.folder)
    assert manifest["model"]["identity_key"] == tiny_models["gpt2"].identity.key()
    assert manifest["n_items"] == 10 and manifest["sites"] == ["layer.1"]
    assert manifest["padding"]["padded_over_real"] >= 1.0
    assert not any(p.suffix == ".pkl" for p in acts.folder.iterdir())


def test_bfloat16_storage_round_trips(tiny_models, tmp_path):
    full = extract(tiny_models["llama"], TEXTS[:4], sites=[1], cache_dir=tmp_path, progress=False)
    half = extract(tiny_models["llama"], TEXTS[:4], sites=[1], dtype="bfloat16", cache_dir=tmp_path, progress=False)
    assert half.storage_dtype == "bfloat16"
    np.testing.assert_allclose(half["layer.1"], full["layer.1"], rtol=1e-2, atol=1e-2)


def test_unwritable_cache_folder_is_a_clear_error(tiny_models, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
            target = tmp_path / "a-file"
            target.write_text("x")
            locked = target / "cache"
        with pytest.raises(CacheError, match="not writable"):
            extract(tiny_models["llama"], TEXTS[:2], cache_dir=locked, progress=False)
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_cache_info_and_clear(tiny_models, tmp_path):
    extract(tiny_models["llama"], TEXTS[:3], sites=[0], cache_dir=tmp_path, progress=False)
    (tmp_path / "deadbeef.partial").mkdir()
    info = cache_store.cache_info(tmp_path)
    assert [e["complete"] for e in info["entries"]].count(False) == 1 and info["bytes"] > 0
    assert cache_store.cache_clear(tmp_path, partial_only=True).removed == ["deadbeef.partial"]
    assert len(cache_store.cache_clear(tmp_path).removed) == 1
    assert cache_store.cache_info(tmp_path)["entries"] == []


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    (tmp_path / "x.bin").write_bytes(b"old")

    def crash(_fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        cache_store.atomic_write_bytes(tmp_path / "x.bin", b"new contents")
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
    assert (tmp_path / "x.bin").read_bytes() == b"old"


_KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from conceptspace.models import load_model
    from conceptspace.activations._extract import extract
    model = load_model(sys.argv[1])
    block = model.hf_model.get_submodule("model.layers.0")
    original = block.forward
    def slow(*args, **kwargs):
        time.sleep(0.15)
        return original(*args, **kwargs)
    block.forward = slow
    texts = [line for line in open(sys.argv[3]).read().split("\\n") if line]
    extract(model, texts, sites=[0, 2], position="all", batch_size=2, cache_dir=sys.argv[2], progress=False)
    """
)


def test_killed_extraction_resumes_from_whole_shards(tiny_model_dirs, tmp_path):
    from conceptspace.models import load_model

    cache_dir = tmp_path / "cache"
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(TEXTS))
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(tiny_model_dirs["llama"]), str(cache_dir), str(texts_file)], env=env
    )
    deadline = time.time() + 120
    shards: list[Path] = []
    while time.time() < deadline and process.poll() is None:
        shards = list(cache_dir.glob("*.partial/shard-*.safetensors"))
        if len(shards) >= 4:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    partial = next(cache_dir.glob("*.partial"))
    assert not (partial / cache_store.MANIFEST).exists()
    done = cache_store.completed_shards(partial)
    assert 4 <= len(done) < 20
    for index in done:  # every shard that is there is whole
        assert "__index__" in cache_store.read_shard(partial, index)

    model = load_model(str(tiny_model_dirs["llama"]))
    counter = {"calls": 0}
    _count_forward(model, counter)
    resumed = extract(model, TEXTS, sites=[0, 2], position="all", batch_size=2, cache_dir=cache_dir, progress=False)
    assert counter["calls"] == 20 - len(done)  # only the missing batches ran
    assert not partial.exists() and resumed.folder is not None
    fresh = extract(
        load_model(str(tiny_model_dirs["llama"])),
        TEXTS,
        sites=[0, 2],
        position="all",
        batch_size=2,
        cache=False,
        progress=False,
    )
    np.testing.assert_allclose(resumed["layer.2"], fresh["layer.2"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(resumed.offsets, fresh.offsets)
    assert open_activations(resumed.folder).n_items == 40


def test_free_heap_is_returned_on_glibc():
    import platform

    from conceptspace.activations._host_memory import release_free_heap

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is a glibc function")
    blocks = [bytearray(4 << 20) for _ in range(8)]  # freed below: the trim has something to give back
    del blocks
    assert release_free_heap() is True
