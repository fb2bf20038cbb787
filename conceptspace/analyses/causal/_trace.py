"""The nnsight traces behind the causal tests: edit a site and read next-token log-probs, or read gradients.

Why the code looks like this:

* Everything inside a ``with traced.trace(...)`` block is torch on tensors prepared beforehand: under
  ``remote=True`` / ``"local"`` the block is serialised and runs where conceptspace is not installed.
* One edit form covers steering and erasure: ``h + mask * (delta - ((h - bias) @ right^T) @ left^T)`` with a
  per-row ``delta`` (d,), ``left`` (d, k), ``right`` (k, d), ``bias`` (d,). Steering is ``k = 0``; a LEACE
  eraser is ``left = proj_left``, ``right = proj_right``; erasing a random orthonormal subspace U is
  ``left = U``, ``right = U^T``. Many edits of the same prompts run as one batch (prompts repeated per edit).
* Prompts are left-padded with explicit position ids (see :func:`conceptspace.analyses.causal._inputs.prepare_prompts`),
  so ``logits_to_keep=1`` gives every row's real last token and the 49k-row unembedding runs once per row,
  not once per position.
* Gradients come from nnsight's ``with loss.backward():`` inside the trace (the same code path a remote run
  takes); a unit test checks them against plain torch autograd on the Hugging Face model. Parameters are
  frozen for the duration so the backward pass does not fill ``.grad`` on every weight of a local model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from conceptspace.activations import memoized
from conceptspace.analyses.causal._inputs import PreparedPrompts
from conceptspace.analyses.causal._prefix import PrefixCache, prefix_applies
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.models._nnsight import import_nnsight

#: The forward memo's version of :func:`run_edits`: bump it when its outputs for the same inputs change.
RUN_EDITS_VERSION = "1"


def _head_envoy(model: ConceptModel) -> Any:
    """The nnsight envoy of the LM head (the module ``get_output_embeddings`` returns)."""
    path = model.head_path()
    if path is None:
        raise InvalidInputError(f"{model.name} has no language-model head; interventions read its logits")
    return model.module_envoy(path)


@dataclass(frozen=True)
class Edits:
    """``c`` edits of the prompts: additive ``delta`` (c, d) and an affine projection of rank ``k``."""

    delta: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    bias: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.delta.shape[0])

    @classmethod
    def additive(cls, delta: torch.Tensor) -> Edits:
        c, d = delta.shape
        return cls(delta, torch.zeros(c, d, 0), torch.zeros(c, 0, d), torch.zeros(c, d))

    @classmethod
    def projections(cls, left: torch.Tensor, right: torch.Tensor, bias: torch.Tensor) -> Edits:
        return cls(torch.zeros_like(bias), left, right, bias)

    def chunk(self, start: int, stop: int) -> Edits:
        return Edits(self.delta[start:stop], self.left[start:stop], self.right[start:stop], self.bias[start:stop])


@dataclass(frozen=True)
class EditOutputs:
    """Per edit and prompt: log-probs of the target ids (c, n, t), KL from the reference (c, n) if asked."""

    target_logp: torch.Tensor
    kl: torch.Tensor | None
    full_logp: torch.Tensor | None
    norms: torch.Tensor  # (n, seq) unedited activation norms at the site (from the first chunk)


def run_edits(
    model: ConceptModel,
    prompts: PreparedPrompts,
    site: str,
    edits: Edits,
    target_ids: tuple[int, ...],
    *,
    reference: torch.Tensor | None = None,
    keep_full: bool = False,
    max_rows: int = 256,
    reuse_prefix: bool = True,
    memo: bool = True,
) -> EditOutputs:
    """Run every edit on every prompt (batched, ``max_rows`` rows per forward) and read the last token.

    ``reuse_prefix``: when only the last token is edited and the weights are here, run each prompt's prefix
    once and every edited row as one more token on its cached keys and values
    (:mod:`~conceptspace.analyses.causal._prefix`; the same numbers to float rounding, several times faster);
    False forces the nnsight trace (which a remote model always takes).
    ``memo``: serve the outputs from the forward memo (:mod:`conceptspace.activations._forward_memo`) when the
    same model ran the same prompts, site, edits, targets and reference before; a caller that asks for full
    distributions of many rows (``keep_full``) passes False and memoizes what it reduces them to."""
    if not memo:
        return _run_edits(model, prompts, site, edits, target_ids, reference, keep_full, max_rows, reuse_prefix)
    spec = {
        "input_ids": prompts.batch.input_ids, "attention_mask": prompts.batch.attention_mask,
        "position_ids": prompts.batch.position_ids, "edit_mask": prompts.edit_mask, "where": prompts.where,
        "site": site, "delta": edits.delta, "left": edits.left, "right": edits.right, "bias": edits.bias,
        "target_ids": list(target_ids), "reference": reference, "keep_full": keep_full, "max_rows": max_rows,
        "reuse_prefix": reuse_prefix,
    }

    def compute() -> dict[str, torch.Tensor]:
        out = _run_edits(model, prompts, site, edits, target_ids, reference, keep_full, max_rows, reuse_prefix)
        arrays = {"target_logp": out.target_logp, "norms": out.norms}
        if out.kl is not None:
            arrays["kl"] = out.kl
        if out.full_logp is not None:
            arrays["full_logp"] = out.full_logp
        return arrays

    arrays = {name: torch.from_numpy(array) for name, array in
              memoized(model, "causal.run_edits", spec, compute, version=RUN_EDITS_VERSION).items()}
    return EditOutputs(target_logp=arrays["target_logp"], kl=arrays.get("kl"), full_logp=arrays.get("full_logp"),
                       norms=arrays["norms"])


def _run_edits(
    model: ConceptModel,
    prompts: PreparedPrompts,
    site: str,
    edits: Edits,
    target_ids: tuple[int, ...],
    reference: torch.Tensor | None,
    keep_full: bool,
    max_rows: int,
    reuse_prefix: bool,
) -> EditOutputs:
    """:func:`run_edits` without the memo: the forwards themselves."""
    n = prompts.n
    per_chunk = max(1, max_rows // n)
    logps, kls, fulls = [], [], []
    norms: torch.Tensor | None = None
    prefix = PrefixCache(model, prompts, site) if reuse_prefix and prefix_applies(model, prompts) else None
    for start in range(0, edits.count, per_chunk):
        chunk = edits.chunk(start, min(start + per_chunk, edits.count))
        if prefix is not None:
            out = _prefix_chunk(prefix, chunk, target_ids, reference, keep_full)
        else:
            out = _trace_chunk(model, prompts, site, chunk, target_ids, reference, keep_full)
        logps.append(out[0].reshape(chunk.count, n, -1))
        if out[1] is not None:
            kls.append(out[1].reshape(chunk.count, n))
        if out[2] is not None:
            fulls.append(out[2].reshape(chunk.count, n, -1))
        if norms is None:
            norms = out[3][:n]
    assert norms is not None
    return EditOutputs(
        target_logp=torch.cat(logps),
        kl=torch.cat(kls) if kls else None,
        full_logp=torch.cat(fulls) if fulls else None,
        norms=norms,
    )


def _prefix_chunk(
    prefix: PrefixCache,
    edits: Edits,
    target_ids: tuple[int, ...],
    reference: torch.Tensor | None,
    keep_full: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """:func:`_trace_chunk`'s outputs (edit-major rows) from the prefix cache."""
    logp, norms = prefix.run(edits.delta, edits.left, edits.right, edits.bias)
    rows = logp.reshape(-1, logp.shape[-1])  # row r = edit r // n on prompt r % n, as in the trace
    gathered = rows[:, list(target_ids)]
    kl = None
    if reference is not None:
        ref = reference.repeat(edits.count, 1)
        kl = (ref.exp() * (ref - rows)).sum(-1)
    return gathered, kl, rows if keep_full else None, norms


def _trace_chunk(
    model: ConceptModel,
    prompts: PreparedPrompts,
    site: str,
    edits: Edits,
    target_ids: tuple[int, ...],
    reference: torch.Tensor | None,
    keep_full: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    nnsight = import_nnsight()
    traced = model.traced()
    envoy = model.envoy(site)
    head = _head_envoy(model)
    device, dtype = model.device, model.dtype
    c, n = edits.count, prompts.n
    batch = prompts.batch
    # Plain tensors for the trace body: row r is edit r // n applied to prompt r % n.
    input_ids = batch.input_ids.repeat(c, 1)
    attention_mask = batch.attention_mask.repeat(c, 1)
    position_ids = batch.position_ids.repeat(c, 1)
    mask = prompts.edit_mask.repeat(c, 1).to(device)[..., None].to(dtype)
    delta = edits.delta.repeat_interleave(n, 0).to(device, dtype)[:, None, :]
    left = edits.left.repeat_interleave(n, 0).to(device, dtype)
    right = edits.right.repeat_interleave(n, 0).to(device, dtype)
    bias = edits.bias.repeat_interleave(n, 0).to(device, dtype)[:, None, :]
    ids = torch.tensor(target_ids, dtype=torch.long, device=device)
    ref = None if reference is None else reference.repeat(c, 1).to(device)
    kl: torch.Tensor | None = None  # only values saved inside the block come back; these stay None otherwise
    full: torch.Tensor | None = None
    with torch.inference_mode():
        with traced.trace(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=1,
            remote=model.remote,
        ):
            hidden = envoy.output
            is_tuple = isinstance(hidden, tuple)
            h = hidden[0] if is_tuple else hidden
            norms = nnsight.save(h.norm(dim=-1).float().cpu())
            # client tensors follow the hidden state (a no-op here; on NDIF the weights sit on a GPU)
            coords = torch.einsum("rsd,rkd->rsk", h - bias.to(h.device), right.to(h.device))
            change = delta.to(h.device) - torch.einsum("rsk,rdk->rsd", coords, left.to(h.device))
            edited = h + mask.to(h.device) * change
            if is_tuple:
                envoy.output = (edited, *hidden[1:])
            else:
                envoy.output = edited
            logp = head.output[:, -1].float().log_softmax(-1)
            gathered = nnsight.save(logp[:, ids.to(logp.device)].cpu())
            if ref is not None:
                here = ref.to(logp.device)
                kl = nnsight.save((here.exp() * (here - logp)).sum(-1).cpu())
            if keep_full:
                full = nnsight.save(logp.cpu())
    model.record_download(gathered, kl, full, norms)
    return gathered, kl, full, norms


@contextmanager
def _frozen_parameters(model: ConceptModel) -> Iterator[None]:
    """Turn off parameter gradients while a backward pass runs (restored afterwards, even on error)."""
    if model.remote is True:  # the weights are on NDIF, which runs its own backward
        yield
        return
    params = list(model.traced()._module.parameters())  # the weights the trace runs on (a dry run's real ones)
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


def run_gradients(
    model: ConceptModel,
    prompts: PreparedPrompts,
    site: str,
    positive_ids: tuple[int, ...],
    negative_ids: tuple[int, ...],
    *,
    max_rows: int = 32,
) -> torch.Tensor:
    """(n, d): gradient of each prompt's target logit score w.r.t. the site, summed over the edit positions.

    The score is ``logsumexp(logits[positive]) - logsumexp(logits[negative])`` (or the first term alone), so
    a directional derivative ``grad @ v`` is the slope of steering along v at alpha = 0 at the same positions.
    """
    pieces = []
    for start in range(0, prompts.n, max_rows):
        rows = slice(start, min(start + max_rows, prompts.n))
        pieces.append(_gradient_chunk(model, prompts, rows, site, positive_ids, negative_ids))
    return torch.cat(pieces)


def _gradient_chunk(
    model: ConceptModel,
    prompts: PreparedPrompts,
    rows: slice,
    site: str,
    positive_ids: tuple[int, ...],
    negative_ids: tuple[int, ...],
) -> torch.Tensor:
    nnsight = import_nnsight()
    traced = model.traced()
    envoy = model.envoy(site)
    head = _head_envoy(model)
    device, dtype = model.device, model.dtype
    batch = prompts.batch
    mask = prompts.edit_mask[rows].to(device)[..., None].to(dtype)
    pos = torch.tensor(positive_ids, dtype=torch.long, device=device)
    neg = torch.tensor(negative_ids, dtype=torch.long, device=device)
    has_negative = len(negative_ids) > 0
    with _frozen_parameters(model), torch.enable_grad():
        with traced.trace(
            input_ids=batch.input_ids[rows],
            attention_mask=batch.attention_mask[rows],
            position_ids=batch.position_ids[rows],
            logits_to_keep=1,
            remote=model.remote,
        ):
            hidden = envoy.output
            h = hidden[0] if isinstance(hidden, tuple) else hidden
            h.requires_grad_(True)
            logits = head.output[:, -1].float()
            score = logits[:, pos.to(logits.device)].logsumexp(-1)
            if has_negative:
                score = score - logits[:, neg.to(logits.device)].logsumexp(-1)
            total = score.sum()
            with total.backward():
                summed = nnsight.save((h.grad * mask.to(h.device)).sum(1).float().cpu())
    model.record_download(summed)
    return summed
