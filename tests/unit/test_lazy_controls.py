"""Architecture controls on demand (issue 18's memory budget): a run builds a control only when something reads its
weights or runs it, holds at most one built at a time, and a warm run (every activation cached) builds none; the
lazy control is the same network as the eager one, so nothing a run reports changes."""

from __future__ import annotations

import gc
import json
import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from conceptspace.errors import InvalidInputError
from conceptspace.models import _model, _spectrum_cache
from conceptspace.models._lazy_control import ControlSlot, LazyControl, lazy_spectrum_matched, lazy_untrained

SUITE = """\
[suite]
name = "lazy_controls"
model = "{model}"
seed = 0
twin_seeds = [0, 1]
spectrum_twin = true
n_permutations = 19
max_permutations = 39
n_bootstrap = 20

[claims.C4]
min_effect = 0.1
beat = ["untrained", "spectrum_matched"]

[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = [0, 1]
max_items = 40
n_splits = 3
controls = ["untrained"]
"""


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Builds:
    """Every control module built (untrained from its config, or spectrum-matched), with the most that were
    alive at once: counted where both the old eager code and the lazy code build, so the test means the same
    on either."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.modules: list[weakref.ref[torch.nn.Module]] = []
        self.most_alive = 0
        original_auto, original_spectrum = _model._auto_class, _model.build_spectrum_matched

        def auto_class(causal: bool) -> Any:
            cls = original_auto(causal)
            return SimpleNamespace(from_config=lambda *a, **k: self._built(cls.from_config(*a, **k)))

        def spectrum(*args: Any, **kwargs: Any) -> torch.nn.Module:
            return self._built(original_spectrum(*args, **kwargs))

        monkeypatch.setattr(_model, "_auto_class", auto_class)
        monkeypatch.setattr(_model, "build_spectrum_matched", spectrum)

    def _built(self, module: torch.nn.Module) -> torch.nn.Module:
        gc.collect()
        self.modules.append(weakref.ref(module))
        self.most_alive = max(self.most_alive, sum(ref() is not None for ref in self.modules))
        return module

    @property
    def count(self) -> int:
        return len(self.modules)


def test_a_run_holds_one_control_at_a_time_and_a_warm_run_builds_none(tiny_model_dirs, monkeypatch):
    from conceptspace.suite import parse_suite, results_document
    from conceptspace.suite._runner import run_suite

    suite = parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "lazy.toml").for_run()
    documents, builds = [], []
    for _ in range(2):  # the first run fills the activation cache (the test's own), the second reads it
        counter = _Builds(monkeypatch)
        outcome = run_suite(suite, progress=False)
        assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
        documents.append(results_document(outcome))
        builds.append(counter)
    cold, warm = builds
    assert cold.count >= 3  # two untrained twins and the spectrum twin were each run on the cold cache
    assert cold.most_alive == 1  # ... one at a time: building one released the one before
    assert warm.count == 0  # every control activation came from the cache: no control was built
    assert [c["control"] for c in documents[1]["controls"]] == ["untrained", "untrained", "spectrum_matched"]
    assert [d["timings"]["controls_built"]["builds"] for d in documents] == [cold.count, 0]  # reported as counted
    for document in documents:
        del document["timings"]
    assert json.dumps(documents[0], sort_keys=True) == json.dumps(documents[1], sort_keys=True)


def test_a_lazy_twin_is_described_unbuilt_and_builds_the_eager_twin(tiny_models):
    model = tiny_models["llama"]
    lazy, eager = lazy_untrained(model, 3), model.untrained(3)
    assert lazy.describe() == eager.describe() and not lazy.is_built  # identity, shape, sites: no weights needed
    assert (lazy.device, lazy.dtype, lazy.max_length, lazy.site_map) == (eager.device, eager.dtype,
                                                                         eager.max_length, eager.site_map)
    assert lazy.identity.key() == eager.identity.key() and lazy.head_path() == eager.head_path()
    assert lazy.output_vocab_size() == eager.output_vocab_size() == eager.unembedding().shape[0]
    assert _same_weights(lazy.hf_model, eager.hf_model) and lazy.is_built
    first = weakref.ref(lazy.hf_model)
    lazy.release()
    gc.collect()
    assert first() is None and not lazy.is_built  # released means freed, not kept somewhere
    assert _same_weights(lazy.hf_model, eager.hf_model)  # the rebuild is the same network


def test_a_lazy_spectrum_twin_builds_the_eager_one_and_leaves_the_memo_alone(tiny_models):
    model = tiny_models["llama"]
    _spectrum_cache.clear_memo()
    lazy = lazy_spectrum_matched(model, 5)
    assert lazy.describe() == model.spectrum_matched(5).describe() and not lazy.is_built
    held = _spectrum_cache.memo_size()
    eager = model.spectrum_matched(5)
    assert _same_weights(lazy.hf_model, eager.hf_model)
    assert _spectrum_cache.memo_size() == held  # the lazy build kept no second copy in the memo


def test_a_slot_releases_the_control_it_held_before_building_the_next(tiny_models):
    model = tiny_models["llama"]
    trims: list[int] = []
    slot = ControlSlot(after_release=lambda: trims.append(1))
    a, b = lazy_untrained(model, 0, slot=slot), lazy_spectrum_matched(model, 0, slot=slot)
    module_a = weakref.ref(a.hf_model)
    assert slot.held is a
    b.hf_model  # noqa: B018 (reading it builds it)
    gc.collect()
    assert slot.held is b and not a.is_built and module_a() is None and trims == [1]
    a.traced()  # a trace rebuilds a released control and releases the other one again
    assert slot.held is a and not b.is_built and slot.builds == 3
    slot.release()
    assert slot.held is None and not a.is_built


def test_a_control_built_unlike_its_description_is_refused(tiny_models):
    model = tiny_models["llama"]
    other = tiny_models["gpt2"]
    control = LazyControl(model, model.identity, model.device, lambda: other.hf_model)
    with pytest.raises(RuntimeError, match="built unlike the trained model"):
        control.hf_model  # noqa: B018


def test_a_controls_weight_reads_are_stored_and_need_no_rebuild(tiny_models):
    """Token rows and the output matrix of a control come from the store after the first read: bit-identical
    to the built control's, with no build on a later read (a warm run's C1-C3, A6 and P5 weight reads)."""
    from conceptspace.models._weights import embedding_rows, unembedding_matrix, unembedding_rows

    model = tiny_models["llama"]
    slot = ControlSlot()
    twin = lazy_untrained(model, 4, slot=slot)
    ids = [5, 1, 5, 0]
    built = twin.hf_model.get_input_embeddings().weight.detach().float().numpy()
    first = embedding_rows(twin, ids)
    assert np.array_equal(first, built[ids]) and first.flags.writeable
    head = unembedding_matrix(twin)
    assert np.array_equal(head, twin.unembedding().float().numpy()) and head.flags.writeable
    slot.release()
    again = lazy_untrained(model, 4, slot=slot)  # a later analysis's handle on the same control
    assert np.array_equal(embedding_rows(again, ids), first)
    assert np.array_equal(unembedding_rows(again, [2, 3]), head[[2, 3]])
    assert np.array_equal(unembedding_matrix(again), head)
    assert slot.builds == 1 and not again.is_built
    other = lazy_untrained(model, 5, slot=slot)  # another seed is another network: never served seed 4's rows
    assert not np.array_equal(embedding_rows(other, ids), first) and slot.builds == 2
    with pytest.raises(InvalidInputError, match="token ids must lie"):
        embedding_rows(again, [10**6])


def test_a_damaged_stored_matrix_is_rebuilt(tiny_models):
    from conceptspace.models._weights import _cache_folder, embedding_rows

    model = tiny_models["llama"]
    twin = lazy_untrained(model, 6, slot=ControlSlot())
    expected = embedding_rows(twin, [1, 2])
    twin.release()
    for stored in _cache_folder(twin).glob("*.npy"):
        stored.write_bytes(b"not a matrix")
    assert np.array_equal(embedding_rows(twin, [1, 2]), expected) and twin.is_built
    twin.release()
    assert np.array_equal(embedding_rows(twin, [1, 2]), expected) and not twin.is_built  # stored again, whole
