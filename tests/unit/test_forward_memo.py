"""The forward memo (conceptspace.activations._forward_memo): keys, hits without forwards, damage, interruption.

Every test runs in its own CONCEPTSPACE_CACHE (tests/conftest.py), so the memo starts empty in each.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conceptspace.activations import _forward_memo as fm
from conceptspace.activations import memo_counts, memoized, memoized_record
from conceptspace.activations._cache import CacheWarning
from conceptspace.analyses.causal._inputs import prepare_prompts
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError

PROMPTS = ["the cat sat on the", "a dog ran to", "one two three four"]


@pytest.fixture
def llama(tiny_models):
    return tiny_models["llama"]


class Calls:
    """A ``compute`` that counts its calls and returns fixed arrays."""

    def __init__(self, value: float = 1.0) -> None:
        self.n = 0
        self.value = value

    def __call__(self) -> dict[str, np.ndarray]:
        self.n += 1
        return {"a": np.arange(6, dtype=np.float32).reshape(2, 3) * self.value, "b": np.array([1, 2], dtype=np.int64)}


def _entry(model, name="test.site", spec=None, version="1"):
    return fm.memo_root() / fm.memo_key(model, name, version, spec if spec is not None else {"x": 1})


@pytest.fixture
def forwards(llama, monkeypatch):
    """Counts forwards of the tiny llama's decoder (replacing ``forward``: torch hooks do not fire under nnsight)."""
    inner = llama.hf_model.model
    original = inner.forward
    counter = SimpleNamespace(n=0)

    def counting(*args, **kwargs):
        counter.n += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(inner, "forward", counting)
    return counter


# -------------------------------------------------------------------------------------------- hits and keys
def test_a_second_run_edits_call_returns_the_same_bits_without_a_forward(llama, forwards):
    prepared = prepare_prompts(llama, PROMPTS)
    edits = Edits.additive(torch.randn(5, llama.d_model, generator=torch.Generator().manual_seed(0)))
    before = memo_counts()
    first = run_edits(llama, prepared, "layer.1", edits, (3, 7, 11))
    ran = forwards.n
    assert ran > 0
    second = run_edits(llama, prepared, "layer.1", edits, (3, 7, 11))
    assert forwards.n == ran  # no forward at all the second time
    assert torch.equal(first.target_logp, second.target_logp) and torch.equal(first.norms, second.norms)
    assert first.target_logp.dtype == second.target_logp.dtype
    assert (memo_counts() - before).counts == {"causal.run_edits": (1, 1)}
    unmemoized = run_edits(llama, prepared, "layer.1", edits, (3, 7, 11), memo=False)
    assert forwards.n > ran and torch.equal(unmemoized.target_logp, first.target_logp)


def test_a_different_edit_vector_or_prompt_is_computed_again(llama, forwards):
    prepared = prepare_prompts(llama, PROMPTS)
    delta = torch.randn(2, llama.d_model, generator=torch.Generator().manual_seed(1))
    base = run_edits(llama, prepared, "layer.1", Edits.additive(delta), (3,))
    ran = forwards.n
    nudged = delta.clone()
    nudged[0, 0] += 1e-3
    other = run_edits(llama, prepared, "layer.1", Edits.additive(nudged), (3,))
    assert forwards.n > ran and not torch.equal(base.target_logp, other.target_logp)
    ran = forwards.n
    run_edits(llama, prepare_prompts(llama, PROMPTS[:2]), "layer.1", Edits.additive(delta), (3,))
    assert forwards.n > ran


def test_keys_separate_models_twin_seeds_texts_vectors_and_versions(llama):
    twins = [llama.untrained(0), llama.untrained(1)]
    vector = np.linspace(0, 1, 12, dtype=np.float32)
    spec = {"texts": ["a b"], "vector": vector, "strength": 1.0}
    keys = {
        fm.memo_key(llama, "s", "1", spec),
        fm.memo_key(twins[0], "s", "1", spec),
        fm.memo_key(twins[1], "s", "1", spec),
        fm.memo_key(llama, "s", "2", spec),
        fm.memo_key(llama, "t", "1", spec),
        fm.memo_key(llama, "s", "1", {**spec, "texts": ["a c"]}),
        fm.memo_key(llama, "s", "1", {**spec, "vector": vector.reshape(3, 4)}),  # same bytes, other shape
        fm.memo_key(llama, "s", "1", {**spec, "vector": vector.astype(np.float64)}),
        fm.memo_key(llama, "s", "1", {**spec, "strength": 2.0}),
    }
    assert len(keys) == 9
    same = fm.memo_key(llama, "s", "1", spec)
    assert same == fm.memo_key(llama, "s", "1", {**spec, "vector": vector.copy()})
    assert same == fm.memo_key(llama, "s", "1", {**spec, "vector": torch.from_numpy(vector)})


def test_vectors_enter_the_key_as_hashes_and_undescribable_specs_are_refused():
    vector = np.ones(1000, dtype=np.float32)
    text = fm.spec_json({"v": vector})
    assert len(text) < 200 and "sha256" in text
    for bad in (object(), {1: "a"}, {"x": {1, 2}}, np.array(["a"], dtype=object)):
        with pytest.raises(InvalidInputError, match="forward memo spec"):
            fm.fingerprint(bad)


def test_two_twin_seeds_never_share_an_entry(llama):
    calls = Calls()
    for seed in (0, 1):
        memoized(llama.untrained(seed), "test.twins", {"x": 1}, calls, version="1")
    assert calls.n == 2
    memoized(llama.untrained(1), "test.twins", {"x": 1}, calls, version="1")
    assert calls.n == 2


def test_records_round_trip_with_their_fields(llama):
    @dataclass(frozen=True)
    class Measured:
        gain: np.ndarray
        ok: np.ndarray
        maybe: np.ndarray | None

    def compute() -> Measured:
        return Measured(np.array([0.5, -1.25]), np.array([True, False]), None)

    first = memoized_record(llama, "test.record", {"n": 2}, Measured, compute, version="1")
    second = memoized_record(llama, "test.record", {"n": 2}, Measured, lambda: pytest.fail("recomputed"),
                             version="1")
    assert second.maybe is None and second.ok.dtype == bool
    assert np.array_equal(first.gain, second.gain) and np.array_equal(first.ok, second.ok)


def test_object_arrays_are_never_stored(llama):
    with pytest.raises(InvalidInputError, match="nothing is pickled"):
        memoized(llama, "test.objects", {}, lambda: {"a": np.array([{"x": 1}], dtype=object)}, version="1")


# ----------------------------------------------------------------------------------------- damage and faults
def _corrupt_npy(path):
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["npy_bytes", "npy_truncated", "manifest_garbled", "manifest_edited",
                                    "npy_missing", "manifest_missing"])
def test_a_damaged_entry_is_set_aside_and_recomputed(llama, monkeypatch, damage):
    monkeypatch.setenv("CONCEPTSPACE_CACHE_VERIFY", "always")
    calls = Calls()
    memoized(llama, "test.site", {"x": 1}, calls, version="1")
    folder = _entry(llama)
    if damage == "npy_bytes":
        _corrupt_npy(folder / "a.npy")
    elif damage == "npy_truncated":
        (folder / "a.npy").write_bytes((folder / "a.npy").read_bytes()[:-4])
    elif damage == "manifest_garbled":
        (folder / "manifest.json").write_text('{"arrays": ["a", ')
    elif damage == "manifest_edited":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["arrays"] = ["a"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "npy_missing":
        (folder / "b.npy").unlink()
    else:
        (folder / "manifest.json").unlink()
    with pytest.warns(CacheWarning, match="damaged"):
        again = memoized(llama, "test.site", {"x": 1}, calls, version="1")
    assert calls.n == 2
    assert np.array_equal(again["a"], Calls()()["a"])
    assert len(list(folder.parent.glob(f"{folder.name}.damaged-*"))) == 1
    fresh = memoized(llama, "test.site", {"x": 1}, calls, version="1")  # the recomputed entry is sound
    assert calls.n == 2 and np.array_equal(fresh["b"], [1, 2])


def test_an_interrupted_write_leaves_nothing_a_later_read_trusts(llama, monkeypatch):
    calls = Calls()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the arrays, before the manifest

    monkeypatch.setattr(fm, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        memoized(llama, "test.site", {"x": 1}, calls, version="1")
    folder = _entry(llama)
    assert not folder.exists() and (folder.parent / f"{folder.name}.partial" / "a.npy").exists()
    monkeypatch.undo()
    monkeypatch.setenv("CONCEPTSPACE_CACHE", str(folder.parent.parent))  # undo() restored the conftest value too
    assert fm.memo_root() == folder.parent
    memoized(llama, "test.site", {"x": 1}, calls, version="1")
    assert calls.n == 2 and folder.exists() and not (folder.parent / f"{folder.name}.partial").exists()
    memoized(llama, "test.site", {"x": 1}, calls, version="1")
    assert calls.n == 2


def test_a_full_disk_warns_and_returns_the_values_unstored(llama, monkeypatch):
    calls = Calls()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fm, "atomic_write_bytes", full)
    with pytest.warns(CacheWarning, match="not stored.*no space left"):
        values = memoized(llama, "test.site", {"x": 1}, calls, version="1")
    assert np.array_equal(values["a"], Calls()()["a"])
    folder = _entry(llama)
    assert not folder.exists() and not (folder.parent / f"{folder.name}.partial").exists()


def test_the_switch_turns_the_memo_off(llama, monkeypatch):
    monkeypatch.setenv(fm.SWITCH_ENV, "0")
    calls = Calls()
    for _ in range(2):
        memoized(llama, "test.site", {"x": 1}, calls, version="1")
    assert calls.n == 2 and not fm.memo_root().exists()


def test_cache_clear_leaves_the_memo_area_alone(llama):
    from conceptspace.activations import cache_clear, cache_info

    memoized(llama, "test.site", {"x": 1}, Calls(), version="1")
    assert any(area["name"] == fm.AREA for area in cache_info()["areas"])
    cache_clear()
    assert _entry(llama).exists()


# ------------------------------------------------------------------------------------------ through the runner
SUITE = """\
[suite]
name = "memo"
model = "{model}"
seed = 0
twin_seeds = [0]
n_permutations = 99
max_permutations = 199
n_bootstrap = 100

[claims.N6]
min_effect = 0.8
margin = 0.0
beat = []

[[analysis]]
id = "n6"
claim = "N6"
kind = "attention_pattern"
primary = "layer@0.5"
datasets = ["truth_is_universal/animal_class"]
layers = [1]
n_sequences = 12
sequence_tokens = 12
"""


def test_a_second_suite_run_gives_the_same_statistics_from_the_memo(tiny_model_dirs, monkeypatch):
    from conceptspace.analyses import _attention_pattern
    from conceptspace.analyses.kinds import attention_pattern
    from conceptspace.suite import parse_suite, results_document
    from conceptspace.suite._runner import run_suite
    from tests.unit.planted_ops import sentences

    monkeypatch.setattr(attention_pattern, "load_concepts", lambda name: SimpleNamespace(texts=sentences(40)))
    passes = SimpleNamespace(n=0)
    original = _attention_pattern._run_conditions

    def counted(*args, **kwargs):
        passes.n += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(_attention_pattern, "_run_conditions", counted)
    suite = parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "memo.toml").for_run()
    documents = []
    for _ in range(2):
        outcome = run_suite(suite, progress=False)
        assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
        documents.append(results_document(outcome))
    cold, warm = (doc["timings"]["forward_memo"]["n6"] for doc in documents)
    assert cold["misses"] > 0 and cold["hits"] == 0
    assert warm == {"hits": cold["misses"], "misses": 0, "by_name": {"attention_pattern.runs": [cold["misses"], 0]}}
    assert passes.n == cold["misses"]  # the warm run ran no attention forward
    for document in documents:
        del document["timings"]
    assert json.dumps(documents[0], sort_keys=True) == json.dumps(documents[1], sort_keys=True)


# ------------------------------------------------------------------------------- every wired call site, twice
def _same(a, b) -> bool:
    """Equal bits, recursing through dataclasses, dicts, tuples and arrays (NaN equals NaN)."""
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray | torch.Tensor):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and (a == b or (a != a and b != b))


def _narrowing(model):
    from conceptspace.analyses.kinds.icl_narrowing import Items, measure_narrowing

    demos = ((("cat", "cats"), ("dog", "dogs")), (("red", "RED"), ("blue", "BLUE")))
    items = Items(("plural", "upper"), np.array([0, 1]), ("cow", "green"), ("cows", "GREEN"), demos,
                  tuple(tuple(reversed(d)) for d in demos))
    return measure_narrowing(model, items)


def _composition(model):
    from conceptspace.analyses import _composition as comp

    phrases = comp.Phrases(("red", "hot"), ("herring", "dog"), np.array([True, False]), np.array([0, 1]))
    return comp.measure(model, phrases, comp.FRAMES, top_k=5)


def _feeds(model):
    from conceptspace.analyses._self_mapping import measure_feeds

    return measure_feeds(model, PROMPTS, [0, 1], vector="final_norm", seed=0)


def _attention(model):
    from conceptspace.analyses._attention_pattern import plans, run_conditions

    ids = np.random.default_rng(0).integers(3, 60, size=(4, 8))
    return run_conditions(model, ids, np.array([0, 1, 0, 1]), plans([1], model.n_layers))


def _filtering(model):
    from conceptspace.analyses._filtering import measure_blocks

    rows = np.random.default_rng(1).integers(3, 60, size=(6, 10)).tolist()
    return measure_blocks(model, rows, [0, 1], np.array([0, 1] * 3), lags=1, penalties=[0.1, 10.0])


def _lens(model):
    from conceptspace.analyses.geometry._logit_lens import context_matrices

    return context_matrices(model, PROMPTS, layers=[0, 1])


@pytest.mark.parametrize("measure", [_narrowing, _composition, _feeds, _attention, _filtering, _lens],
                         ids=lambda f: f.__name__.strip("_"))
def test_every_wired_measurement_is_served_the_second_time_without_a_forward(llama, forwards, measure):
    first = measure(llama)
    ran = forwards.n
    assert ran > 0
    before = memo_counts()
    second = measure(llama)
    assert forwards.n == ran and _same(first, second)
    assert (memo_counts() - before).misses == 0 and (memo_counts() - before).hits >= 1
