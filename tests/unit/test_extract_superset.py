"""Superset extraction: one forward fills every site up to the deepest requested, later requests no deeper run
none; and the forward counters."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conceptspace.activations import (
    ForwardCounts,
    forward_counts,
    reset_forward_counts,
    superset_extraction,
)
from conceptspace.activations import _cache as cache_store
from conceptspace.activations._counters import SUPERSET_ENV, superset_wanted
from conceptspace.activations._extract import extract
from conceptspace.errors import InvalidInputError

TEXTS = [f"Sentence {i} tells that the {'very ' * (i % 4)}red house stands on the hill." for i in range(12)]
SPANS = [(text.index("house"), text.index("house") + 5) for text in TEXTS]


@pytest.fixture(autouse=True)
def _no_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SUPERSET_ENV, raising=False)


def _forwarded() -> int:
    return forward_counts().forwarded_texts


def test_subset_after_superset_runs_no_forward_and_matches_a_direct_extraction(tiny_models, tmp_path):
    model = tiny_models["llama"]
    before = forward_counts()
    full = extract(model, TEXTS, sites=["final_norm"], position="last", superset=True, cache_dir=tmp_path,
                   progress=False)
    assert full.sites == ("final_norm",)  # the caller gets what it asked for, the entry holds every site
    entry = cache_store.load_manifest(full.folder)
    assert entry is not None and entry["sites"] == list(model.site_map.available())
    after_first = forward_counts()
    assert (after_first - before).forwarded_texts == len(TEXTS)
    for sites in ([0], ["embed", 2], ["final_norm", 1, 0]):
        served = extract(model, TEXTS, sites=sites, position="last", cache_dir=tmp_path, progress=False)
        direct = extract(model, TEXTS, sites=sites, position="last", cache=False, progress=False)
        assert served.sites == direct.sites
        for site in direct.sites:
            assert np.array_equal(served[site], direct[site]), site
    counted = forward_counts() - after_first
    # the three cache=False extractions forward; the three served requests do not
    assert counted.requests == 6 and counted.cache_hits == 3
    assert counted.forwarded_texts == 3 * len(TEXTS)


def test_superset_serves_later_requests_without_the_switch(tiny_models, tmp_path):
    model = tiny_models["gpt2"]
    extract(model, TEXTS, sites=[1], position="mean", superset=True, cache_dir=tmp_path, progress=False)
    forwarded = _forwarded()
    acts = extract(model, TEXTS, sites=[0], position="mean", superset=False, cache_dir=tmp_path, progress=False)
    assert _forwarded() == forwarded and acts.sites == ("layer.0",)


def test_superset_stops_at_the_deepest_requested_site(tiny_models, tmp_path):
    """The entry is the prefix up to the deepest site (no extra blocks run); a deeper request forwards again."""
    model = tiny_models["llama"]
    shallow = extract(model, TEXTS, sites=[1], superset=True, cache_dir=tmp_path, progress=False)
    manifest = cache_store.load_manifest(shallow.folder)
    assert manifest is not None and manifest["sites"] == ["embed", "layer.0", "layer.1"]
    forwarded = _forwarded()
    assert extract(model, TEXTS, sites=["embed", 0], cache_dir=tmp_path, progress=False).sites == ("embed", "layer.0")
    assert _forwarded() == forwarded
    deep = extract(model, TEXTS, sites=[0, 2], superset=True, cache_dir=tmp_path, progress=False)
    assert _forwarded() == forwarded + len(TEXTS)
    direct = extract(model, TEXTS, sites=[0, 2], cache=False, progress=False)
    assert np.array_equal(deep["layer.2"], direct["layer.2"]) and np.array_equal(deep["layer.0"], direct["layer.0"])


@pytest.mark.parametrize(
    "change",
    ["position", "texts", "spans", "dtype", "model"],
)
def test_a_different_request_never_hits_the_superset_entry(tiny_models, tmp_path, change):
    model = tiny_models["llama"]
    base = {"position": "span:mean", "spans": SPANS, "cache_dir": tmp_path, "progress": False}
    extract(model, TEXTS, sites=["final_norm"], superset=True, **base)  # holds every site
    forwarded = _forwarded()
    texts = list(TEXTS)
    asked = dict(base)
    if change == "position":
        asked.update(position="span:last")
    elif change == "texts":
        texts[3] = texts[3] + " Really."
    elif change == "spans":
        asked.update(spans=[(a, b - 1) for a, b in SPANS])
    elif change == "dtype":
        asked.update(dtype="float16")
    else:
        model = model.untrained(3)
    got = extract(model, texts, sites=[1], superset=False, **asked)
    assert _forwarded() == forwarded + len(TEXTS), f"a request with another {change} was served from the cache"
    direct = extract(model, texts, sites=[1], cache=False, **{k: v for k, v in asked.items() if k != "cache_dir"})
    assert np.array_equal(got["layer.1"], direct["layer.1"])


def test_exact_entries_written_before_are_still_served(tiny_models, tmp_path):
    model = tiny_models["llama"]
    old = extract(model, TEXTS, sites=[0, 2], superset=False, cache_dir=tmp_path, progress=False)
    forwarded = _forwarded()
    again = extract(model, TEXTS, sites=[0, 2], superset=True, cache_dir=tmp_path, progress=False)
    assert _forwarded() == forwarded and again.folder == old.folder


def test_position_all_never_extracts_every_site(tiny_models, tmp_path):
    model = tiny_models["llama"]
    acts = extract(model, TEXTS[:3], sites=[1], position="all", superset=True, cache_dir=tmp_path, progress=False)
    manifest = cache_store.load_manifest(acts.folder)
    assert manifest is not None and manifest["sites"] == ["layer.1"]


def test_damaged_superset_entry_is_set_aside_and_recomputed(tiny_models, tmp_path):
    model = tiny_models["gpt2"]
    first = extract(model, TEXTS, sites=[0, 2], superset=True, cache_dir=tmp_path, progress=False)
    assert first.folder is not None
    values = np.array(first["layer.0"])
    victim = first.folder / "layer.1.npy"
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    forwarded = _forwarded()
    with pytest.warns(cache_store.CacheWarning, match="damaged"):
        again = extract(model, TEXTS, sites=[0, 2], superset=True, cache_dir=tmp_path, progress=False)
    assert _forwarded() == forwarded + len(TEXTS)
    assert np.array_equal(again["layer.0"], values)


def test_concurrent_subset_requests_share_one_superset_forward(tiny_model_dirs, tmp_path):
    from conceptspace.models import load_model

    models = [load_model(str(tiny_model_dirs["llama"])) for _ in range(2)]
    before = forward_counts()
    results: list[object] = []
    errors: list[BaseException] = []

    def worker(model, site: list[int]):
        try:
            results.append(extract(model, TEXTS, sites=site, superset=True, cache_dir=tmp_path, progress=False))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    sites = [[0, 2], [1, 2]]  # the same deepest site: the same superset entry
    threads = [threading.Thread(target=worker, args=(m, s)) for m, s in zip(models, sites, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    counted = forward_counts() - before
    assert counted.forwarded_texts == len(TEXTS) and counted.cache_hits == 1


def test_superset_default_follows_the_runner_block_and_the_env_var(monkeypatch):
    assert superset_wanted(None, remote=False) is False
    with superset_extraction():
        assert superset_wanted(None, remote=False) is True
        assert superset_wanted(None, remote=True) is False  # NDIF would download every site
        assert superset_wanted(False, remote=False) is False
    assert superset_wanted(None, remote=False) is False
    monkeypatch.setenv(SUPERSET_ENV, "1")
    assert superset_wanted(None, remote=True) is True
    monkeypatch.setenv(SUPERSET_ENV, "0")
    with superset_extraction():
        assert superset_wanted(None, remote=False) is False
    monkeypatch.setenv(SUPERSET_ENV, "maybe")
    with pytest.raises(InvalidInputError, match=SUPERSET_ENV):
        superset_wanted(None, remote=False)


def test_counts_subtract_and_reset(tiny_models, tmp_path):
    model = tiny_models["llama"]
    extract(model, TEXTS[:5], sites=[0], cache=False, progress=False, batch_size=2)
    assert forward_counts().forward_batches >= 3
    reset_forward_counts()
    assert forward_counts() == ForwardCounts()
    extract(model, TEXTS[:5], sites=[0], cache_dir=tmp_path, progress=False, batch_size=2)
    extract(model, TEXTS[:5], sites=[0], cache_dir=tmp_path, progress=False, batch_size=2)
    assert forward_counts() == ForwardCounts(requests=2, requested_texts=10, cache_hits=1, forward_batches=3,
                                             forwarded_texts=5)


def _tiny_suite(tmp_path, model_dir) -> str:
    suite = tmp_path / "tiny.toml"
    probe = ('[[analysis]]\nid = "{id}"\nclaim = "C4"\nkind = "probe"\ndataset = "truth_is_universal/animal_class"\n'
             'layers = [{layer}]\nmax_items = 24\n\n')
    suite.write_text(
        f'[suite]\nname = "tiny"\nmodel = "{model_dir}"\nn_permutations = 19\nn_bootstrap = 20\n\n'
        '[claims.C4]\nmin_effect = 0.1\n\n' + probe.format(id="deep", layer=2) + probe.format(id="shallow", layer=1)
    )
    return str(suite)


def test_a_suite_run_records_forward_passes_and_superset_saves_forwards(tiny_model_dirs, tmp_path, monkeypatch):
    import json

    from conceptspace.cli import main

    suite = _tiny_suite(tmp_path, tiny_model_dirs["llama"])
    passes = {}
    for name, switch in (("superset", "1"), ("naive", "0")):
        monkeypatch.setenv("CONCEPTSPACE_CACHE", str(tmp_path / f"cache-{name}"))
        monkeypatch.setenv(SUPERSET_ENV, switch)
        out = tmp_path / name
        assert main(["run", suite, "--twin", "none", "--out", str(out), "--quiet"]) == 0
        passes[name] = json.loads((out / "results.json").read_text())["timings"]["forward_passes"]
        assert f"Forward passes: {passes[name]['forwarded_texts']} texts forwarded" in (out / "report.md").read_text()
    assert passes["superset"]["requested_texts"] == passes["naive"]["requested_texts"] > 0
    assert passes["naive"]["forwarded_texts"] == passes["naive"]["requested_texts"]  # two layers, two forwards
    assert passes["superset"]["cache_hits"] >= 1
    assert passes["superset"]["forwarded_texts"] < passes["naive"]["forwarded_texts"]
