"""Steered generation on the planted model: strength 0 is plain Hugging Face greedy generation token for token,
steering along the planted direction writes the planted words, and a seed makes sampling repeatable."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from conceptspace.analyses.causal import SteeredModel, steer
from conceptspace.errors import InvalidInputError
from conceptspace.models._load import load_model
from tests.unit.planted import BAD, GOOD, NEUTRAL, make_planted_model, prompts

PROMPTS = prompts(NEUTRAL[:4])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # k = 4: the target words' v-component beats any random unembedding row's, so moving along v makes them the
    # most likely next words, not just likelier
    info = make_planted_model(Path(tmp_path_factory.mktemp("planted")), k=4.0)
    return info, load_model(str(info.folder))


def _hf_greedy(model, prompt: str, n: int, **kwargs):  # type: ignore[no-untyped-def]
    encoded = model.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        return model.hf_model.generate(**encoded, max_new_tokens=n, do_sample=False, **kwargs)


def _words(text: str) -> list[str]:
    return text.split()


def test_strength_zero_is_hugging_face_greedy_token_for_token(planted):
    info, model = planted
    steered = steer(model, info.v, 0.0, "layer.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one warning escapes
        for prompt in PROMPTS:
            assert torch.equal(steered.generate_ids(prompt, max_new_tokens=6), _hf_greedy(model, prompt, 6))


def test_early_end_of_text_stops_like_hugging_face_without_a_warning(planted):
    info, model = planted
    steered = steer(model, info.v, 3.0, "layer.0")
    first = steered.generate_ids(PROMPTS[0], max_new_tokens=6)
    stop_id = int(first[0, -4])  # the second new token: make it the end of text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = steered.generate_ids(PROMPTS[0], max_new_tokens=6, eos_token_id=stop_id)
    assert short.shape[1] < first.shape[1] and torch.equal(short[0], first[0, : short.shape[1]])
    assert torch.equal(steer(model, info.v, 0.0, "layer.0").generate_ids(PROMPTS[0], max_new_tokens=6,
                                                                          eos_token_id=stop_id),
                       _hf_greedy(model, PROMPTS[0], 6, eos_token_id=stop_id))


def test_steering_along_the_planted_direction_writes_the_planted_words(planted):
    info, model = planted
    counts = {}
    for strength in (-3.0, 0.0, 3.0):
        steered = steer(model, info.v, strength, "layer.0")
        words = [w for p in PROMPTS for w in _words(steered.generate(p, max_new_tokens=5))]
        counts[strength] = (sum(w in GOOD for w in words), sum(w in BAD for w in words), len(words))
    good, bad, n = counts[3.0]
    assert good >= 0.6 * n and bad == 0
    good, bad, n = counts[-3.0]
    assert bad >= 0.6 * n and good == 0
    good, bad, n = counts[0.0]
    assert good + bad <= 0.1 * n  # unsteered, the planted words are rare (one bad word in 18 here)
    # the null direction u touches nothing the unembedding reads: no more planted words than unsteered
    null = steer(model, info.u, 3.0, "layer.0")
    null_words = [w for p in PROMPTS for w in _words(null.generate(p, max_new_tokens=5))]
    assert sum(w in GOOD or w in BAD for w in null_words) <= 0.1 * len(null_words)


def test_greedy_is_deterministic_and_sampling_repeats_with_its_seed(planted):
    info, model = planted
    steered = steer(model, info.v, 1.0, "layer.0")
    assert steered.generate(PROMPTS[1], max_new_tokens=8) == steered.generate(PROMPTS[1], max_new_tokens=8)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    runs = {seed: [steered.generate(PROMPTS[1], max_new_tokens=8, do_sample=True, seed=seed, temperature=3.0)
                   for _ in range(2)] for seed in (0, 1, 2)}
    assert torch.equal(torch.rand(3), before)  # the caller's random state is left alone
    assert all(a == b for a, b in runs.values())
    assert len({texts[0] for texts in runs.values()}) > 1  # hot sampling with different seeds differs


def test_scale_is_the_median_prompt_norm_unless_given(planted):
    info, model = planted
    ids = model.tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"][0]
    embedded = model.hf_model.get_input_embeddings().weight[ids].detach()  # blocks are identities here
    steered = steer(model, info.v, 1.0, "layer.0")
    assert steered.scale_for(PROMPTS[0]) == pytest.approx(float(embedded.norm(dim=-1).median()), rel=1e-5)
    assert steer(model, info.v, 1.0, 0, scale=2.5).scale_for(PROMPTS[0]) == 2.5
    assert isinstance(steered, SteeredModel) and "strength=1" in repr(steered)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"direction": [1.0, 2.0]}, "d=32"),
    ({"strength": float("nan")}, "finite"),
    ({"strength": "strong"}, "must be a number"),
    ({"scale": -1.0}, "positive"),
    ({"site": "layer.9"}, "layer"),
])
def test_bad_arguments_say_what_to_fix(planted, kwargs, message):
    info, model = planted
    args = {"direction": info.v, "strength": 1.0, "site": "layer.0", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        steer(model, args.pop("direction"), args.pop("strength"), args.pop("site"), **args)
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        steer(model, info.v, 1.0, "layer.0").generate("the word is", max_new_tokens=0)
