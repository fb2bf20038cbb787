"""Generate text while steering: read what a direction does to the model's words, not only to two log-odds.

Why it is built this way:

* The steering vector is ``strength * scale * v`` with ``v`` the unit direction, added at ``site`` on every
  position the model runs: all prompt tokens in the first forward, then each new token. ``strength`` is in the
  units the steering test uses (multiples of the site's activation scale), so a strength that moved the
  dose-response curve can be read here as text. ``scale`` is the median activation norm at the site over the
  prompt's own tokens (one plain trace), unless given: pass ``SteeringResult.scale`` to use exactly the step a
  steering test used.
* It runs through nnsight's ``generate`` (so ``remote=True`` models work like the other causal tests), with one
  invoke that edits each decode step and a second that reads the token ids: a generation that ends early at
  the end-of-text token leaves the edit loop one step short, which nnsight reports as a warning by design; the
  ids are still read, and only that expected warning is silenced.
* Greedy by default, so a steered generation is a deterministic function of (prompt, strength). Sampling takes
  a ``seed`` and draws from a forked RNG, so it neither depends on nor disturbs the caller's random state. At
  strength 0 the edit adds zeros and the result equals Hugging Face ``generate`` token for token (tested).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from conceptspace.analyses.causal._inputs import check_site, require_causal, unit_direction
from conceptspace.errors import InvalidInputError
from conceptspace.models._load import ConceptModel
from conceptspace.models._nnsight import import_nnsight

_EARLY_STOP = ".*was never reached.*"  # nnsight: the edit loop asked for a step an early-stopped generation skipped


@dataclass(frozen=True)
class SteeredModel:
    """``model`` with ``strength * scale * direction`` added at ``site`` while it generates (see :func:`steer`)."""

    model: ConceptModel
    direction: torch.Tensor  # unit vector (d,)
    strength: float
    site: str
    scale: float | None = None

    def __repr__(self) -> str:
        scale = "median prompt norm" if self.scale is None else f"{self.scale:.4g}"
        return f"SteeredModel({self.model.name}, site={self.site}, strength={self.strength:g}, scale={scale})"

    def scale_for(self, prompt: str) -> float:
        """The activation scale a generation from ``prompt`` uses (``scale`` if given, else the median norm of
        the unedited activations at the site over the prompt's tokens)."""
        if self.scale is not None:
            return self.scale
        nnsight = import_nnsight()
        encoded = _encode(self.model, prompt)
        envoy = self.model.envoy(self.site)
        with torch.inference_mode():
            with self.model.traced().trace(**encoded, remote=self.model.remote) as tracer:
                hidden = envoy.output
                h = hidden[0] if isinstance(hidden, tuple) else hidden
                norms = nnsight.save(h[0].norm(dim=-1).float().cpu())
                tracer.stop()
        self.model.record_download(norms)
        return float(norms.median())

    def generate_ids(self, prompt: str, *, max_new_tokens: int = 20, seed: int = 0, do_sample: bool = False,
                     **generate_kwargs: Any) -> torch.Tensor:
        """Token ids (1, prompt + new) of a steered generation; ``generate_kwargs`` go to Hugging Face
        ``generate`` (``temperature``, ``top_p``...)."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}")
        if do_sample and self.model.remote:
            raise InvalidInputError("seeded sampling runs locally only (the seed cannot reach NDIF's RNG); "
                                    "use do_sample=False (greedy) on a remote model")
        delta = self.strength * self.scale_for(prompt) * self.direction
        delta = delta.to(self.model.device, self.model.dtype) if not self.model.remote else delta
        encoded = _encode(self.model, prompt)
        options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **generate_kwargs}
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            ids = _generate(self.model, self.site, encoded, delta, options)
        return ids

    def generate(self, prompt: str, *, max_new_tokens: int = 20, seed: int = 0, do_sample: bool = False,
                 **generate_kwargs: Any) -> str:
        """The steered continuation of ``prompt`` (new text only, special tokens dropped)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError(f"prompt must be a non-empty string; got {prompt!r}")
        ids = self.generate_ids(prompt, max_new_tokens=max_new_tokens, seed=seed, do_sample=do_sample,
                                **generate_kwargs)
        n_prompt = _encode(self.model, prompt)["input_ids"].shape[1]
        return str(self.model.tokenizer.decode(ids[0, n_prompt:], skip_special_tokens=True))


def _encode(model: ConceptModel, prompt: str) -> dict[str, torch.Tensor]:
    """The prompt as Hugging Face ``generate`` would get it from the tokenizer (one row, no padding)."""
    encoded = model.tokenizer(prompt, return_tensors="pt")
    if encoded["input_ids"].shape[1] == 0:
        raise InvalidInputError(f"the prompt {prompt!r} has no tokens")
    device = model.device if not model.remote else torch.device("cpu")
    return {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device)}


def _generate(model: ConceptModel, site: str, encoded: dict[str, torch.Tensor], delta: torch.Tensor,
              options: dict[str, Any]) -> torch.Tensor:
    """One nnsight generation with ``delta`` added at ``site`` on every decode step; the full token ids."""
    nnsight = import_nnsight()
    envoy = model.envoy(site)
    steps = int(options["max_new_tokens"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EARLY_STOP, category=UserWarning)
        with torch.inference_mode():
            with model.traced().generate(remote=model.remote, **options) as tracer:
                with tracer.invoke(**encoded):
                    for _ in tracer.iter[:steps]:  # one forward per new token; fewer when EOS ends it early
                        hidden = envoy.output
                        if isinstance(hidden, tuple):
                            envoy.output = (hidden[0] + delta.to(hidden[0].device), *hidden[1:])
                        else:
                            envoy.output = hidden + delta.to(hidden.device)
                with tracer.invoke():
                    ids = nnsight.save(tracer.result.cpu())
    model.record_download(ids)
    return ids


def steer(model: ConceptModel, direction: Any, strength: float, site: str | int, *,
          scale: float | None = None) -> SteeredModel:
    """``model`` steered along ``direction`` by ``strength`` at ``site``, ready to ``.generate(prompt)``.

    ``strength`` is a multiple of the site's activation scale (as in ``steering_test``); ``scale`` fixes that
    scale (e.g. ``SteeringResult.scale``) instead of reading it from each prompt. ``direction`` is normalised;
    a probe's ``direction_`` points from class 0 to class 1, so a positive strength moves towards class 1::

        steered = steer(model, probe.direction_, 4.0, "layer.15")
        steered.generate("The movie was", max_new_tokens=12)      # greedy: same text every time
    """
    require_causal(model, "steered generation")
    site_name = check_site(model, site)
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise InvalidInputError(f"strength must be a number; got {strength!r}") from None
    if not torch.isfinite(torch.tensor(value)):
        raise InvalidInputError(f"strength must be finite; got {strength!r}")
    if scale is not None and not (float(scale) > 0 and torch.isfinite(torch.tensor(float(scale)))):
        raise InvalidInputError(f"scale must be a positive finite number; got {scale!r}")
    return SteeredModel(model, unit_direction(direction, model.d_model), value, site_name,
                        None if scale is None else float(scale))
