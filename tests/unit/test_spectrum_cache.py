"""The spectrum-matched control is built once: the disk copy and the memo give exactly the fresh build's weights."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from conceptspace.models import _spectrum_cache as spectrum_cache
from conceptspace.models import load_model
from conceptspace.models._spectrum import randomize_singular_vectors_

ARCHES = ["llama", "gpt2", "bert"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A fresh model cache and an empty memo for every test, so each test sees only what it built."""
    monkeypatch.setenv("CONCEPTSPACE_MODEL_CACHE", str(tmp_path / "models"))
    spectrum_cache.clear_memo()
    yield
    spectrum_cache.clear_memo()


def _fresh(model, seed):
    """The control built by hand, with no cache anywhere in the way: the reference every path must equal."""
    module = copy.deepcopy(model.hf_model)
    randomize_singular_vectors_(module, seed)
    return module


def _assert_identical(module, reference):
    got, want = module.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name


def _cache_files(tmp_path):
    return sorted((tmp_path / "models").glob("spectrum-matched-*.safetensors"))


def _no_build(*_args, **_kwargs):
    raise AssertionError("the control was rebuilt although a valid copy was available")


@pytest.mark.parametrize("arch", ARCHES)
def test_built_disk_and_memo_controls_are_bit_identical(tiny_models, tmp_path, monkeypatch, arch):
    model = tiny_models[arch]
    reference = _fresh(model, 3)
    built = model.spectrum_matched(3)
    _assert_identical(built.hf_model, reference)
    [path] = _cache_files(tmp_path)
    assert built.identity.key() in path.name

    monkeypatch.setattr(spectrum_cache, "randomize_singular_vectors_", _no_build)
    path.unlink()
    memo = model.spectrum_matched(3)  # same process, file gone: only the memo can serve it
    spectrum_cache.clear_memo()
    with pytest.raises(AssertionError, match="rebuilt"):
        model.spectrum_matched(3)  # neither memo nor file: it must build (the check that the stub bites)
    _assert_identical(memo.hf_model, reference)
    assert memo.identity == built.identity and memo.identity.key() == built.identity.key()


@pytest.mark.parametrize("arch", ARCHES)
def test_a_later_process_loads_the_file(tiny_models, tmp_path, monkeypatch, arch):
    model = tiny_models[arch]
    first = model.spectrum_matched(0)
    spectrum_cache.clear_memo()  # what a new process starts with
    monkeypatch.setattr(spectrum_cache, "randomize_singular_vectors_", _no_build)
    loaded = model.spectrum_matched(0)
    _assert_identical(loaded.hf_model, first.hf_model)
    _assert_identical(loaded.hf_model, _fresh(model, 0))
    assert loaded.identity.key() == first.identity.key()


def test_tied_embeddings_stay_tied_after_a_load(tiny_models):
    model = tiny_models["llama"]
    model.spectrum_matched(0)
    spectrum_cache.clear_memo()
    hf = model.spectrum_matched(0).hf_model
    if hf.config.tie_word_embeddings:
        assert hf.get_output_embeddings().weight is hf.get_input_embeddings().weight


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_file_is_rebuilt_not_trusted(tiny_models, tmp_path, damage):
    model = tiny_models["gpt2"]
    model.spectrum_matched(0)
    [path] = _cache_files(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-5] ^= 0xFF  # a byte of the last tensor's payload: the header still parses
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    spectrum_cache.clear_memo()
    _assert_identical(model.spectrum_matched(0).hf_model, _fresh(model, 0))
    key = replace(model.identity, spectrum_seed=0).key()
    expected = spectrum_cache._metadata(key, 0, spectrum_cache.source_fingerprint(model.hf_model), "")
    repaired = spectrum_cache._load(path, expected, spectrum_cache._parameters(model.hf_model))
    assert repaired is not None  # the rebuild rewrote a whole file that verifies


def test_a_file_for_other_weights_is_not_served(tiny_model_dirs, tmp_path):
    """Weights edited after loading keep the file's sha256 but are another model: the cached control of the
    unedited weights must not be served for them, and the edited model's control is its own fresh build."""
    model = load_model(str(tiny_model_dirs["llama"]))
    model.spectrum_matched(0)
    with torch.no_grad():
        for parameter in model.hf_model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.linspace(0.1, 1.0, parameter.numel()))
    spectrum_cache.clear_memo()
    _assert_identical(model.spectrum_matched(0).hf_model, _fresh(model, 0))
    # and the memo, keyed by the same identity, does not serve the edited model's control for the original
    original = load_model(str(tiny_model_dirs["llama"]))
    _assert_identical(original.spectrum_matched(0).hf_model, _fresh(original, 0))


def test_a_model_without_a_weights_hash_is_not_cached(tiny_model_dirs, tmp_path):
    model = load_model(str(tiny_model_dirs["bert"]))
    model.identity = replace(model.identity, weights_sha256=None)
    control = model.spectrum_matched(0)
    _assert_identical(control.hf_model, _fresh(model, 0))
    assert _cache_files(tmp_path) == [] and spectrum_cache.memo_size() == 0


def test_the_memo_holds_at_most_two_controls_and_hands_out_copies(tiny_models):
    model = tiny_models["llama"]
    first = model.spectrum_matched(0)
    with torch.no_grad():
        next(first.hf_model.parameters()).add_(1.0)  # a caller editing its control must not change the next one
    for seed in (0, 1, 2):
        model.spectrum_matched(seed)
    assert spectrum_cache.memo_size() == spectrum_cache.MEMO_SIZE == 2
    _assert_identical(model.spectrum_matched(0).hf_model, _fresh(model, 0))
    spectrum_cache.clear_memo()
    from_disk = model.spectrum_matched(1)  # the memo now holds the tensors read from the file
    with torch.no_grad():
        next(from_disk.hf_model.parameters()).mul_(2.0)
    _assert_identical(model.spectrum_matched(1).hf_model, _fresh(model, 1))


def test_an_unwritable_cache_only_costs_the_rebuild(tiny_models, tmp_path, monkeypatch):
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CONCEPTSPACE_MODEL_CACHE", str(blocker / "models"))
    _assert_identical(tiny_models["gpt2"].spectrum_matched(0).hf_model, _fresh(tiny_models["gpt2"], 0))
