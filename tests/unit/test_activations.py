"""Extraction: batched equals single, every position is the right token, errors are clear, forwards stop early."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptspace.activations._extract import extract, length_sorted_batches, padding_stats
from conceptspace.errors import InvalidInputError, NonFiniteActivationError

TEXTS = [
    "The capital of France is Paris.",
    "Dogs bark.",
    "A queen and a king walked into the old castle by the sea.",
    "Paris",
    "Berlin is a city in Germany and the capital of Germany.",
]


def _reference_hidden(model, text: str) -> list[torch.Tensor]:
    """Per-site hidden states (seq, d) of one unpadded text, straight from Hugging Face, in site order."""
    ids = model.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = model.hf_model(**ids, output_hidden_states=True)
    states = [h[0] for h in out.hidden_states]
    embed = model.embedding_matrix()[ids["input_ids"][0]]
    if model.site_map.final_norm is None:  # encoder: hidden_states[i + 1] is block i's output
        return [embed, *states[1:]]
    # decoders: HF's last entry is after the final norm; block outputs are hidden_states[1:-1] plus the raw last block
    norm = model.hf_model.get_submodule(model.site_map.final_norm)
    captured = {}
    handle = model.hf_model.get_submodule(f"{model.site_map.layers}.{model.n_layers - 1}").register_forward_hook(
        lambda _m, _i, o: captured.setdefault("last", o[0] if isinstance(o, tuple) else o)
    )
    with torch.inference_mode():
        model.hf_model(**ids)
    handle.remove()
    last_block = captured["last"][0]
    with torch.inference_mode():
        normed = norm(last_block[None])[0]
    return [embed, *states[1:-1], last_block, normed]


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batched_matches_one_text_at_a_time(tiny_models, arch, padding_side):
    model = tiny_models[arch]
    batched = extract(model, TEXTS, position="last", batch_size=8, padding_side=padding_side, progress=False)
    for index, text in enumerate(TEXTS):
        single = extract(model, [text], position="last", cache=False, progress=False)
        for site in batched.sites:
            assert _relative_error(batched[site][index], single[site][0]) <= 1e-4, (site, index)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_every_site_matches_hugging_face(tiny_models, arch):
    model = tiny_models[arch]
    acts = extract(model, TEXTS, position="all", batch_size=3, padding_side="left", progress=False)
    assert acts.sites == model.sites
    for index, text in enumerate(TEXTS):
        reference = _reference_hidden(model, text)
        for site, expected in zip(acts.sites, reference, strict=True):
            assert _relative_error(acts.tokens(index, site), expected.numpy()) <= 1e-4, (site, index)


def test_positions_last_mean_span(tiny_models):
    model = tiny_models["llama"]
    text = "A queen and a king walked."
    start = text.index("queen")
    spans = [(start - 1, start + len("queen"))]  # " queen", with its leading space
    every = extract(model, [text], position="all", sites=[1], progress=False)["layer.1"]
    pieces = model.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    covered = [i for i, (a, b) in enumerate(pieces) if b > a and a < spans[0][1] and b > spans[0][0]]
    for name, expected in {
        "last": every[-1],
        "mean": every.mean(0),
        "span:first": every[covered[0]],
        "span:last": every[covered[-1]],
        "span:mean": every[covered].mean(0),
    }.items():
        got = extract(model, [text], position=name, sites=[1], spans=spans, progress=False)["layer.1"][0]
        assert _relative_error(got, expected) <= 1e-5, name


def test_span_positions_batched_equal_single_across_lengths(tiny_models):
    model = tiny_models["gpt2"]
    texts = ["Paris is in France.", "The old castle by the sea is in Spain and is very old."]
    spans = [(0, 5), (8, 14)]
    batched = extract(model, texts, position="span:mean", spans=spans, padding_side="left", progress=False)
    for i in range(2):
        single = extract(model, [texts[i]], position="span:mean", spans=[spans[i]], cache=False, progress=False)
        assert _relative_error(batched["layer.2"][i], single["layer.2"][0]) <= 1e-4


def test_length_sorted_batching_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 40, size=400).tolist()
    naive = [list(range(i, min(i + 16, 400))) for i in range(0, 400, 16)]
    sorted_batches = length_sorted_batches(lengths, 16, 10_000)
    assert sorted(i for b in sorted_batches for i in b) == list(range(400))
    assert padding_stats(lengths, sorted_batches)["padded_over_real"] < 1.1
    assert padding_stats(lengths, naive)["padded_over_real"] > 1.4


def test_batches_respect_token_budget():
    batches = length_sorted_batches([50, 50, 50, 10, 10, 10], batch_size=10, max_batch_tokens=100)
    assert all(max([50, 50, 50, 10, 10, 10][i] for i in b) * len(b) <= 100 for b in batches)


def _count_calls(module: torch.nn.Module, counter: dict[str, int], name: str) -> None:
    """Replace a module's forward with a counting wrapper (nnsight bypasses ordinary forward hooks)."""
    original = module.forward

    def counted(*args, **kwargs):
        counter[name] += 1
        return original(*args, **kwargs)

    module.forward = counted


def test_forward_stops_after_deepest_site(tiny_model_dirs):
    from conceptspace.models import load_model

    model = load_model(str(tiny_model_dirs["llama"]))  # a fresh copy: its modules are patched below
    calls = {"layer1": 0, "layer2": 0, "norm": 0, "head": 0}
    _count_calls(model.hf_model.model.layers[1], calls, "layer1")
    _count_calls(model.hf_model.model.layers[2], calls, "layer2")
    _count_calls(model.hf_model.model.norm, calls, "norm")
    _count_calls(model.hf_model.lm_head, calls, "head")
    extract(model, TEXTS[:2], sites=[0, 1], cache=False, progress=False)
    assert calls == {"layer1": 1, "layer2": 0, "norm": 0, "head": 0}
    extract(model, TEXTS[:2], sites=["final_norm"], cache=False, progress=False)
    assert calls == {"layer1": 2, "layer2": 1, "norm": 1, "head": 0}


def test_remote_local_round_trip_matches_local(tiny_model_dirs):
    from conceptspace.models import load_model

    local = load_model(str(tiny_model_dirs["llama"]))
    dry_run = load_model(str(tiny_model_dirs["llama"]), remote="local")
    a = extract(local, TEXTS, sites=[1, "final_norm"], cache=False, progress=False)
    b = extract(dry_run, TEXTS, sites=[1, "final_norm"], cache=False, progress=False)
    for site in a.sites:
        np.testing.assert_allclose(a[site], b[site], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ("just one string", "not one string"),
        (["fine", 3], "item 1 is int"),
        (["fine", "   "], "item 1 is an empty"),
        (["fine", None], "item 1 is NoneType"),
    ],
)
def test_bad_texts_are_clear_errors(tiny_models, texts, message):
    with pytest.raises(InvalidInputError, match=message):
        extract(tiny_models["llama"], texts, progress=False)


def test_over_long_text_errors_or_truncates_with_warning(tiny_models):
    model = tiny_models["llama"]  # context of 64 tokens
    long_text = "the dog " * 80
    with pytest.raises(InvalidInputError, match="context of 64 tokens"):
        extract(model, ["short", long_text], progress=False)
    with pytest.warns(UserWarning, match="truncated 1"):
        acts = extract(model, ["short", long_text], truncate=True, position="all", sites=[0], progress=False)
    assert int(acts.token_counts[1]) == 64


def test_unknown_position_and_missing_spans(tiny_models):
    with pytest.raises(InvalidInputError, match="unknown position"):
        extract(tiny_models["llama"], ["a b"], position="middle", progress=False)
    with pytest.raises(InvalidInputError, match="needs spans"):
        extract(tiny_models["llama"], ["a b"], position="span:first", progress=False)
    with pytest.raises(InvalidInputError, match="outside its text"):
        extract(tiny_models["llama"], ["a b"], position="span:first", spans=[(1, 9)], progress=False)


def test_non_finite_activations_raise_and_cache_nothing(tiny_model_dirs, tmp_path):
    from conceptspace.models import load_model

    model = load_model(str(tiny_model_dirs["gpt2"]))
    block = model.hf_model.transformer.h[1]
    original = block.forward

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")

    block.forward = poisoned
    with pytest.raises(NonFiniteActivationError, match=r"site layer\.1"):
        extract(model, TEXTS, sites=[0, 1], cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_conceptset_like_input_uses_its_texts_and_spans(tiny_models):
    class Items:
        texts = ("Paris is big.", "Rome is old.")
        spans = ((0, 5), (0, 4))

    acts = extract(tiny_models["llama"], Items(), position="span:last", sites=[0], progress=False)
    assert acts["layer.0"].shape == (2, 32)


@pytest.mark.parametrize("position", ["last", "all", "mean"])
def test_host_staging_path_gives_identical_values(tiny_models, position):
    """The GPU path (copies into reused host buffers) is the same code on the CPU, minus the side stream."""
    model = tiny_models["llama"]
    plain = extract(model, TEXTS, sites="all", position=position, batch_size=2, cache=False, progress=False)
    staged = extract(
        model, TEXTS, sites="all", position=position, batch_size=2, cache=False, progress=False, host_staging=True
    )
    for site in plain.sites:
        np.testing.assert_array_equal(staged[site], plain[site])


def test_host_staging_reuses_buffers_across_batches(tiny_models):
    from conceptspace.activations._extract import build_batch, tokenize, trace_batch
    from conceptspace.activations._positions import Position
    from conceptspace.activations._staging import HostStaging

    model = tiny_models["gpt2"]
    tokens = tokenize(model, TEXTS)
    staging = HostStaging(model.device)
    first = trace_batch(model, build_batch(model, tokens, [2, 4], "right"), ["layer.1"], Position("all"), staging)
    size = staging.bytes_allocated
    kept = first["layer.1"].clone()
    trace_batch(model, build_batch(model, tokens, [0, 1], "right"), ["layer.1"], Position("all"), staging)
    assert staging.bytes_allocated == size  # the shorter batch fits in the same storage
    assert not torch.equal(first["layer.1"], kept)  # ... which is why callers must store a batch before the next
