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


def test_edited_rows_start_after_the_edited_block_on_llama_only(tiny_models):  # type: ignore[no-untyped-def]
    """Rows per call of each block while run_edits evaluates edits at layer.0: with Llama the edited rows run only
    the blocks after the site (block 0 sees each prompt once, never an edited row); GPT-2 runs every block."""
    from conceptspace.analyses.causal._prefix import skipped_blocks
    from conceptspace.models._sites import get_submodule, module_path, parse_site

    for arch, skips in (("llama", True), ("gpt2", False)):
        model = tiny_models[arch]
        prepared = prepare_prompts(model, PROMPTS, "last")
        blocks = [get_submodule(model.hf_model, module_path(parse_site(f"layer.{i}", model.site_map),
                                                            model.site_map)) for i in range(2)]
        assert (skipped_blocks(model, blocks[0]) == 0) is skips
        embed = get_submodule(model.hf_model, module_path(parse_site("embed", model.site_map), model.site_map))
        assert skipped_blocks(model, embed) is None
        rows: dict[int, list[int]] = {0: [], 1: []}
        handles = [block.register_forward_hook(lambda _m, args, _o, seen=rows[i]: seen.append(int(args[0].shape[0])))
                   for i, block in enumerate(blocks)]
        try:
            run_edits(model, prepared, "layer.0", _edits(model.d_model, 1), (1, 2), reuse_prefix=True)
        finally:
            for handle in handles:
                handle.remove()
        assert max(rows[1]) == len(PROMPTS) * 5  # the block after the site: every edited row (one strength a call)
        assert (max(rows[0]) <= len(PROMPTS)) is skips  # the site's block: each prompt once, or every edited row
