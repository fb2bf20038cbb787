"""Steering dose-response on a tiny model with a planted causal direction v and a null direction u."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conceptspace.analyses.causal._inputs import prepare_prompts, random_directions, resolve_targets, unit_direction
from conceptspace.analyses.causal._steering import steering_test
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError
from conceptspace.models import load_model
from tests.unit.planted import BAD, GOOD, NEUTRAL, make_planted_model, prompts

PROMPTS = prompts(NEUTRAL[:24])
OFF_TARGET = prompts(NEUTRAL[32:38])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    info = make_planted_model(Path(tmp_path_factory.mktemp("planted")))
    return info, load_model(str(info.folder))


def _run(model, direction, **kwargs):  # type: ignore[no-untyped-def]
    options = {"site": "layer.0", "off_target_prompts": OFF_TARGET, "n_random": 20, "n_orthogonal": 10}
    options.update(kwargs)
    return steering_test(model, direction, PROMPTS, (GOOD, BAD), **options)


def test_planted_direction_beats_every_placebo(planted):
    info, model = planted
    result = _run(model, info.v, dataset="planted")
    vs_random = result.results.filter(method="steering_vs_random", control=None)[0]
    vs_orth = result.results.filter(method="steering_vs_orthogonal")[0]
    assert vs_random.p_value == pytest.approx(1 / 201)  # the smallest p 200 placebo draws allow
    assert vs_random.extra["n_permutations"] == 200 and vs_random.extra["role"] == "primary"
    assert vs_orth.p_value == pytest.approx(1 / 21)  # 10 orthogonal directions as +/-u pairs
    assert vs_random.statistic > 0 and vs_random.ci_low > 0
    curve = result.dose_response()
    assert list(curve["alpha"]) == [-1.0, -0.5, 0.5, 1.0]
    assert np.all(np.diff(curve["concept"]) > 0)  # dose-response: more alpha, more positive words
    assert (curve["concept_ci_low"] <= curve["concept"]).all() and (curve["concept"] <= curve["concept_ci_high"]).all()
    assert result.kl is not None and (result.kl >= 0).all()


def test_null_direction_does_not_fire(planted):
    info, model = planted
    result = _run(model, info.u, dataset="null")
    row = result.results.filter(method="steering_vs_random", control=None)[0]
    assert abs(row.statistic) < 1e-4  # u only changes the norm: an even function of alpha, zero slope
    assert row.p_value > 0.2
    assert row.ci_low < 0 < row.ci_high or abs(row.effect_size) < 0.5
    # u touches nothing the unembedding reads, so off-target damage is far below a random direction's
    kl = result.results[0].extra["off_target_kl_at_max_alpha"]
    assert kl["concept"] < 0.1 * kl["random_median"]


def test_random_direction_control_row_is_in_the_family(planted):
    info, model = planted
    result = _run(model, info.v, n_orthogonal=0)
    controls = result.results.filter(control="random_direction")
    assert len(controls) == 1 and controls[0].p_value > 0.05
    assert len(result.results.correct("holm")) == 2


def test_same_seed_same_numbers_and_batching_does_not_matter(planted):
    info, model = planted
    a = _run(model, info.v, n_random=4, n_orthogonal=2, seed=3)
    b = _run(model, info.v, n_random=4, n_orthogonal=2, seed=3, max_rows=50)
    np.testing.assert_allclose(a.delta, b.delta, atol=1e-4)
    assert a.results[0].p_value == b.results[0].p_value
    c = _run(model, info.v, n_random=4, n_orthogonal=2, seed=4)
    assert not np.allclose(a.delta[1:], c.delta[1:])


def test_additive_edit_matches_a_plain_torch_hook(tiny_models):
    """The nnsight edit is the same as adding delta at the edited positions with an ordinary forward hook."""
    model = tiny_models["llama"]
    texts = ["The capital of France is", "Dogs bark"]
    prepared = prepare_prompts(model, texts, "all")
    delta = torch.randn(1, model.d_model, generator=torch.Generator().manual_seed(0))
    out = run_edits(model, prepared, "layer.1", Edits.additive(delta), (5, 7), keep_full=True)
    layer = model.hf_model.model.layers[1]
    mask = prepared.edit_mask[..., None].float()
    handle = layer.register_forward_hook(lambda mod, inp, o: o + mask * delta)
    try:
        with torch.no_grad():
            b = prepared.batch
            logits = model.hf_model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids)
    finally:
        handle.remove()
    expected = logits.logits[:, -1].log_softmax(-1)
    assert out.full_logp is not None
    torch.testing.assert_close(out.full_logp[0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.target_logp[0], expected[:, [5, 7]], atol=1e-5, rtol=1e-5)


def test_span_positions_edit_only_the_span(planted):
    _, model = planted
    texts = ["the word is neutral1", "a neutral2 say"]
    spans = [(4, 8), (2, 10)]  # "word", "neutral2"
    prepared = prepare_prompts(model, texts, spans)
    width = prepared.batch.input_ids.shape[1]
    assert prepared.edit_mask.sum(1).tolist() == [1, 1]
    assert prepared.edit_mask[0, width - 3] and prepared.edit_mask[1, width - 2]


def test_placebos_are_unit_seeded_and_orthogonal():
    v = unit_direction(np.arange(1.0, 9.0), 8)
    a = random_directions(8, 5, 1, orthogonal_to=v)
    b = random_directions(8, 5, 1, orthogonal_to=v)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(5))
    assert float((a @ v).abs().max()) < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": np.zeros(32)}, "zero vector"),
        ({"direction": np.ones(31)}, "d=32"),
        ({"direction": [np.nan] * 32}, "NaN"),
        ({"site": "layer.9"}, "out of range"),
        ({"site": "attn"}, "unknown site"),
        ({"prompts": []}, "no prompts"),
        ({"prompts": "the word is"}, "not one string"),
        ({"targets": (["good0 good1"], BAD)}, "2 tokens"),
        ({"targets": (["zebra"], BAD)}, "not in the vocabulary"),
        ({"targets": (GOOD, GOOD)}, "both the positive and the negative"),
        ({"strengths": [0.0, 1.0]}, "non-zero"),
        ({"n_random": 1}, "n_random"),
        ({"where": "middle"}, "where must be"),
        ({"where": [(0, 3)]}, "1 spans for 2 prompts"),
        ({"p_method": "bayes"}, "p_method must be one of"),
        ({"p_method": "parametric", "n_random": 3}, "n_random >= 4"),
    ],
)
def test_bad_input_says_what_to_fix(planted, kwargs, message):
    info, model = planted
    args = {"direction": info.v, "prompts": PROMPTS[:2], "targets": (GOOD, BAD), "site": "layer.0"}
    args.update(kwargs)
    direction, texts, targets = args.pop("direction"), args.pop("prompts"), args.pop("targets")
    with pytest.raises(InvalidInputError, match=message):
        steering_test(model, direction, texts, targets, n_orthogonal=0, **args)


def test_encoder_is_refused_with_a_reason(tiny_models):
    with pytest.raises(InvalidInputError, match="causal language model"):
        steering_test(tiny_models["bert"], np.ones(32), ["a b"], ([1], [2]), site=1)


def test_multi_token_word_error_suggests_a_leading_space(tiny_models):
    model = tiny_models["llama"]
    with pytest.raises(InvalidInputError, match="try ' queen'"):
        resolve_targets(model, ["queen"], [])


def test_parametric_placebo_p_value_detects_an_outlier_and_is_calibrated_under_the_null():
    from conceptspace.analyses.causal._steering import parametric_p_value

    rng = np.random.default_rng(0)
    placebos = rng.normal(size=20)
    assert parametric_p_value(6.0, placebos) < 1e-3 < 1 / 21  # below the rank method's floor
    # concept drawn from the placebo distribution itself: p is roughly uniform
    null_p = [parametric_p_value(rng.normal(), rng.normal(size=20)) for _ in range(400)]
    assert 0.02 <= float(np.mean(np.asarray(null_p) < 0.05)) <= 0.09
