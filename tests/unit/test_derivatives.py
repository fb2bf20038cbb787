"""Directional derivatives (TCAV-style) on a planted model; gradients checked against plain torch autograd."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conceptspace.analyses.causal._derivatives import directional_derivative_test, tcav_p_value, tcav_scores
from conceptspace.analyses.causal._inputs import prepare_prompts
from conceptspace.analyses.causal._trace import run_gradients
from conceptspace.errors import InvalidInputError
from conceptspace.models import load_model
from tests.unit.planted import BAD, GOOD, NEUTRAL, make_planted_model, prompts

PROMPTS = prompts(NEUTRAL[:24])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    info = make_planted_model(Path(tmp_path_factory.mktemp("planted")))
    return info, load_model(str(info.folder))


def test_planted_direction_is_detected(planted):
    info, model = planted
    result = directional_derivative_test(model, info.v, PROMPTS, (GOOD, BAD), site="layer.0", dataset="planted")
    assert result.tcav_score == 1.0 and (result.derivatives > 0).all()
    score = result.results.filter(method="tcav_score", control=None)[0]
    mean = result.results.filter(method="directional_derivative", control=None)[0]
    assert score.p_value <= 0.05
    assert mean.p_value == pytest.approx(1 / 51) and mean.ci_low > 0
    assert result.random_scores.shape == (50,)
    assert 0.1 < float(np.median(result.random_scores)) < 0.9
    for row in result.results.filter(control="random_direction"):
        assert row.p_value > 0.05


def test_null_direction_is_not_detected(planted):
    info, model = planted
    result = directional_derivative_test(model, info.u, PROMPTS, (GOOD, BAD), site="layer.0", dataset="null")
    assert result.tcav_score == 0.5  # every derivative is zero up to float noise: ties count half
    for row in result.results.filter(control=None):
        assert row.p_value > 0.5


def test_derivatives_match_torch_autograd(tiny_models):
    model = tiny_models["gpt2"]
    prepared = prepare_prompts(model, ["The capital of France is", "Dogs bark, cats", "A queen"], "all")
    grads = run_gradients(model, prepared, "layer.1", (5, 6), (9,), max_rows=2)
    store: dict[str, torch.Tensor] = {}

    def hook(mod, inp, out):  # type: ignore[no-untyped-def]
        hidden = out[0] if isinstance(out, tuple) else out
        hidden.retain_grad()
        store["h"] = hidden

    handle = model.hf_model.transformer.h[1].register_forward_hook(hook)
    try:
        b = prepared.batch
        logits = model.hf_model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids)
        last = logits.logits[:, -1]
        (last[:, [5, 6]].logsumexp(-1) - last[:, [9]].logsumexp(-1)).sum().backward()
    finally:
        handle.remove()
        model.hf_model.zero_grad(set_to_none=True)
    expected = (store["h"].grad * prepared.edit_mask[..., None]).sum(1)
    torch.testing.assert_close(grads, expected, atol=1e-5, rtol=1e-4)


def test_gradient_pass_leaves_the_model_as_it_was(tiny_models):
    model = tiny_models["llama"]
    flags = [p.requires_grad for p in model.hf_model.parameters()]
    prepared = prepare_prompts(model, ["Dogs bark"], "last")
    run_gradients(model, prepared, "layer.0", (5,), ())
    assert [p.requires_grad for p in model.hf_model.parameters()] == flags
    assert all(p.grad is None for p in model.hf_model.parameters())


def test_same_seed_same_numbers(planted):
    info, model = planted
    a = directional_derivative_test(model, info.v, PROMPTS[:6], (GOOD, BAD), site=0, n_random=40, seed=1)
    b = directional_derivative_test(model, info.v, PROMPTS[:6], (GOOD, BAD), site=0, n_random=40, seed=1)
    assert a.results == b.results
    c = directional_derivative_test(model, info.v, PROMPTS[:6], (GOOD, BAD), site=0, n_random=40, seed=2)
    assert not np.array_equal(a.random_derivatives, c.random_derivatives)


def test_tcav_score_and_two_sided_p():
    d = np.array([[1.0, -1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(tcav_scores(d, np.full(4, 1e-9)), [0.625, 1.0])
    null = np.array([0.5, 0.4, 0.6, 0.1, 0.9])
    assert tcav_p_value(1.0, null) == tcav_p_value(0.0, null) == pytest.approx(1 / 6)  # symmetric about 1/2
    assert tcav_p_value(0.5, null) == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"direction": np.zeros(32)}, "zero vector"),
        ({"prompts": []}, "no prompts"),
        ({"site": "final"}, "unknown site"),
        ({"targets": (["zebra"], [])}, "not in the vocabulary"),
        ({"n_random": 1}, "n_random"),
    ],
)
def test_bad_input_says_what_to_fix(planted, change, message):
    info, model = planted
    args = {"direction": info.v, "prompts": PROMPTS[:2], "targets": (GOOD, BAD), "site": "layer.0"}
    args.update(change)
    with pytest.raises(InvalidInputError, match=message):
        directional_derivative_test(model, args.pop("direction"), args.pop("prompts"), args.pop("targets"), **args)
