"""The prefix-cache fast path of run_edits gives the nnsight trace's numbers, and is taken only when it may be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptspace.analyses.causal._inputs import prepare_prompts
from conceptspace.analyses.causal._prefix import prefix_applies
from conceptspace.analyses.causal._trace import Edits, run_edits

PROMPTS = ["the cat sat on", "a dog", "one two three four five six seven", "hello there world"]


def _edits(d: int, seed: int) -> Edits:
    """Three additive edits and two rank-2 affine projections (the erasure form), mixed in one batch."""
    g = torch.Generator().manual_seed(seed)
    delta = torch.randn(5, d, generator=g)
    delta[3:] = 0.0
    left = torch.zeros(5, d, 2)
    right = torch.zeros(5, 2, d)
    q, _ = torch.linalg.qr(torch.randn(d, 2, generator=g))
    left[3:], right[3:] = q, q.T
    bias = torch.zeros(5, d)
    bias[3:] = torch.randn(2, d, generator=g)
    return Edits(delta, left, right, bias)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("site", ["layer.0", "layer.1", "embed"])
def test_prefix_cache_matches_the_trace(tiny_models, arch, site):  # type: ignore[no-untyped-def]
    model = tiny_models[arch]
    prepared = prepare_prompts(model, PROMPTS, "last")
    assert prefix_applies(model, prepared)
    edits = _edits(model.d_model, 0)
    reference = run_edits(model, prepared, site, Edits.additive(torch.zeros(1, model.d_model)), (1, 2),
                          keep_full=True, reuse_prefix=False).full_logp[0]
    kwargs = {"reference": reference, "keep_full": True, "max_rows": 8}  # 8 rows: edits split over chunks
    fast = run_edits(model, prepared, site, edits, (1, 2, 3), reuse_prefix=True, **kwargs)
    slow = run_edits(model, prepared, site, edits, (1, 2, 3), reuse_prefix=False, **kwargs)
    assert fast.full_logp is not None and slow.full_logp is not None
    np.testing.assert_allclose(fast.full_logp.numpy(), slow.full_logp.numpy(), atol=2e-5)
    np.testing.assert_allclose(fast.target_logp.numpy(), slow.target_logp.numpy(), atol=2e-5)
    assert fast.kl is not None and slow.kl is not None
    np.testing.assert_allclose(fast.kl.numpy(), slow.kl.numpy(), atol=2e-5)
    real = prepared.batch.attention_mask.bool()
    np.testing.assert_allclose(fast.norms[real].numpy(), slow.norms[real].numpy(), rtol=1e-5)
    assert not torch.allclose(fast.full_logp[0], fast.full_logp[3])  # the edits did something


def test_prefix_cache_is_not_used_when_it_cannot_apply(tiny_models):  # type: ignore[no-untyped-def]
    model = tiny_models["llama"]
    assert not prefix_applies(model, prepare_prompts(model, PROMPTS, "all"))  # earlier positions edited
    one_token = model.tokenizer.decode(model.tokenizer("cat", add_special_tokens=False)["input_ids"][:1])
    single = prepare_prompts(model, [one_token, "the cat sat"], "last")
    if int(single.batch.attention_mask.sum(dim=1).min()) < 2:  # no BOS: a one-token prompt has no prefix
        assert not prefix_applies(model, single)
    assert not prefix_applies(tiny_models["bert"], prepare_prompts(tiny_models["bert"], PROMPTS, "last"))
