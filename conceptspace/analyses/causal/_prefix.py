"""Last-token edits on top of a key/value cache of the unedited prefix: the local fast path of ``run_edits``.

Why. Steering and function-vector tests edit only each prompt's last token (``where="last"``), and thousands
of edits (placebo directions x strengths) run on the same few prompts. In a causal model an edit at the last
position cannot change any earlier position, at any layer, so the prefix (every token but the last) is the
same in every edited row: it is run once per prompt, its keys and values cached, and each edited row costs one
token's forward instead of the whole prompt's (a prompt of s tokens: about s times fewer backbone FLOPs; the
unembedding of the last row is the same either way). The edit is applied by a forward hook on the site's
module, with the same formula as the nnsight trace (:mod:`conceptspace.analyses.causal._trace`), so the two
paths agree to float rounding (a unit test compares them).

Blocks before the site are skipped too (:func:`skipped_blocks`). Up to the edited block, the last token's
states are those of the unedited prompt in every edited row, so they are computed once per prompt (the site's
output kept) and each edited row runs only the blocks after the site, started from the edited state. At C5's
site (block 15 of SmolLM2's 30) that is half the backbone per row; the unembedding is unchanged. This needs a
model whose decoder takes a block's output as the next block's input with nothing added in between and whose
``inputs_embeds`` reach the first block unchanged: checked per architecture (Llama-style models, the bundled
default; :data:`_BLOCKS_SKIPPABLE`), and only for a site that is a block's output. Others run every block.

When it applies (:func:`prefix_applies`): weights here (not NDIF: a remote run keeps the nnsight trace), a
causal LM, an edit mask that is exactly every row's last column, and at least two real tokens in every prompt
(a prompt of one token has an empty prefix). Anything else takes the trace.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from conceptspace.analyses.causal._inputs import PreparedPrompts
from conceptspace.models import ConceptModel
from conceptspace.models._sites import get_submodule, module_path, parse_site

#: architectures (``config.model_type``) whose decoder feeds ``inputs_embeds`` to its first block unscaled, adds
#: no position embedding to them, and passes each block's output straight to the next (checked against the full
#: forward in tests/unit/test_prefix_cache.py); Gemma (scaled embeddings) and GPT-2 (added positions) are not
_BLOCKS_SKIPPABLE = frozenset({"llama"})


def skipped_blocks(model: ConceptModel, module: torch.nn.Module) -> int | None:
    """Index of the decoder block whose output ``module`` is, when the edited rows may start after it; else None
    (the edited rows then run every block)."""
    hf = model.hf_model
    inner = getattr(hf, "model", None)
    layers = getattr(inner, "layers", None)
    if getattr(hf.config, "model_type", None) not in _BLOCKS_SKIPPABLE or not isinstance(layers, torch.nn.ModuleList):
        return None
    return next((i for i, layer in enumerate(layers) if layer is module), None)


def prefix_applies(model: ConceptModel, prompts: PreparedPrompts) -> bool:
    """Whether :class:`PrefixCache` can run these edits (see module doc)."""
    if model.remote or not model.weights_are_local or not model.is_causal:
        return False
    mask = prompts.edit_mask.bool()
    if mask.shape[1] < 2 or not bool(mask[:, -1].all()) or bool(mask[:, :-1].any()):
        return False
    real = prompts.batch.attention_mask.sum(dim=1)
    return bool((real >= 2).all())


@dataclass
class PrefixCache:
    """The prompts' prefixes run once; :meth:`run` evaluates edits of the last token on copies of the cache."""

    model: ConceptModel
    prompts: PreparedPrompts
    site: str

    def __post_init__(self) -> None:
        hf = self.model.hf_model
        self.module = get_submodule(hf, module_path(parse_site(self.site, self.model.site_map), self.model.site_map))
        batch = self.prompts.batch
        device = self.model.device
        self.mask = batch.attention_mask.to(device)
        self.last_ids = batch.input_ids[:, -1:].to(device)
        self.last_pos = batch.position_ids[:, -1:].to(device)
        captured: list[torch.Tensor] = []
        with torch.inference_mode(), _hooked(self.module, lambda h: captured.append(h.norm(dim=-1).float().cpu())):
            out = hf(input_ids=batch.input_ids[:, :-1].to(device), attention_mask=self.mask[:, :-1],
                     position_ids=batch.position_ids[:, :-1].to(device), use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        self.prefix_norms = captured[0]  # (n, seq - 1)
        self.block = skipped_blocks(self.model, self.module)
        if self.block is not None:  # the unedited last token's state at the site, once per prompt
            states: list[torch.Tensor] = []
            with torch.inference_mode(), _hooked(self.module, lambda h: states.append(h[:, -1].clone())):
                hf(input_ids=self.last_ids, attention_mask=self.mask, position_ids=self.last_pos,
                   cache=copy.deepcopy(self.cache), use_cache=True, logits_to_keep=1)
            self.site_state = states[0]  # (n, d)

    def run(self, delta: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
            bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-token log-probabilities (c, n, V) of ``c`` edits (rows as in :class:`Edits`), and the unedited
        site norms (n, seq)."""
        c, n = int(delta.shape[0]), self.prompts.n
        device, dtype = self.model.device, self.model.dtype
        # Prompt-major rows (prompt i, edit j at row i * c + j): the cache is repeated row by row.
        d_rows = delta.to(device, dtype).repeat(n, 1)
        l_rows = left.to(device, dtype).repeat(n, 1, 1)
        r_rows = right.to(device, dtype).repeat(n, 1, 1)
        b_rows = bias.to(device, dtype).repeat(n, 1)
        seen: list[torch.Tensor] = []

        def edited(state: torch.Tensor) -> torch.Tensor:  # (n c, d) -> (n c, d), the formula of the trace
            coords = torch.einsum("rd,rkd->rk", state - b_rows, r_rows)
            return state + (d_rows - torch.einsum("rk,rdk->rd", coords, l_rows))

        def edit(h: torch.Tensor) -> torch.Tensor:
            seen.append(h[::c, -1].norm(dim=-1).float().cpu())
            out = h.clone()
            out[:, -1] = edited(h[:, -1])
            return out

        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(c)
        rows = {"attention_mask": self.mask.repeat_interleave(c, 0),
                "position_ids": self.last_pos.repeat_interleave(c, 0), "cache": cache, "use_cache": True,
                "logits_to_keep": 1}
        with torch.inference_mode():
            if self.block is None:
                with _hooked(self.module, edit):
                    out = self.model.hf_model(input_ids=self.last_ids.repeat_interleave(c, 0), **rows)
            else:
                seen.append(self.site_state.norm(dim=-1).float().cpu())
                start = edited(self.site_state.repeat_interleave(c, 0))[:, None]
                with _blocks_after(self.model.hf_model, self.block):
                    out = self.model.hf_model(inputs_embeds=start, **rows)
        logp = out.logits[:, -1].float().log_softmax(-1).cpu()
        norms = torch.cat([self.prefix_norms, seen[0][:, None]], dim=1)
        return logp.reshape(n, c, -1).transpose(0, 1), norms


@contextmanager
def _blocks_after(hf: torch.nn.Module, block: int) -> Iterator[None]:
    """The decoder with only the blocks after ``block`` (each keeps its index, so it reads and extends its own
    layer of the key/value cache), restored on exit."""
    inner: Any = hf.model
    every = inner.layers
    inner.layers = torch.nn.ModuleList(list(every)[block + 1:])
    try:
        yield
    finally:
        inner.layers = every


@contextmanager
def _hooked(module: torch.nn.Module, change: Any) -> Iterator[None]:
    """A forward hook that passes the module's hidden-state output (a tensor, or a tuple's first element)
    through ``change`` (which returns the new tensor, or None to leave it)."""

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        new = change(hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
