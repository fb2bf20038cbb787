"""Architecture controls built on first use and released when another is built: a run holds at most one.

Why: the full battery compares the model with three untrained twins and a spectrum-matched twin. Built up front,
the five SmolLM2-135M copies (about 540 MB each in float32, plus the spectrum memo's copy) made the main job peak
at 5 GB, and in a warm run (activation cache and forward memo warm) most analyses never run a control forward:
they read the control's activations and memoized outputs by the control's *identity*, which is known from the
trained model, the control's kind and its seed without building any weights.

So a :class:`LazyControl` is a :class:`~conceptspace.models.ConceptModel` whose identity, tokenizer, sites,
device, dtype and shape are answered from the trained model, and whose module is built the first time something
reads it (``hf_model``, a trace, a weight matrix). A :class:`ControlSlot` shared by a run's controls keeps at most
one of them built: building one releases the one held before (its module and its nnsight wrapper), so memory is
one model plus one control, whatever the number of seeds. A released control rebuilds on its next use, and the
rebuild is the same network: an untrained twin is a pure function of config and seed (torch's global random
state untouched), a spectrum-matched twin is loaded bit-identically from the model cache. Nothing a run reports
changes; a cold run pays a rebuild (about 2 s) each time an analysis moves from one control to another.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from conceptspace.models._model import ConceptModel, ModelIdentity
from conceptspace.models._sites import discover_sites


class ControlSlot:
    """The one built control of a run: :meth:`hold` releases the previous holder before a new one is kept.

    ``after_release`` runs after a control was released (the runner returns the freed heap to the system with
    it: without that the allocator keeps the pages and the process's memory does not go down). ``builds`` counts
    every build, rebuilds included, and ``build_seconds`` their wall time: the time a run pays for the memory it
    saves (results.json ``timings.controls_built``).
    """

    def __init__(self, after_release: Callable[[], object] | None = None) -> None:
        self._held: LazyControl | None = None
        self._after_release = after_release
        self.builds = 0
        self.build_seconds = 0.0

    def summary(self) -> dict[str, float]:
        """Builds and their seconds, for a run's timings."""
        return {"builds": self.builds, "seconds": round(self.build_seconds, 2)}

    @property
    def held(self) -> LazyControl | None:
        """The control whose module is built now, or None."""
        return self._held

    def hold(self, control: LazyControl) -> None:
        """Make ``control`` the one built control (called by it just before it builds)."""
        if self._held is not None and self._held is not control:
            self._held.release()
        self._held = control
        self.builds += 1

    def release(self) -> None:
        """Release the held control, if any (the end of a run, or a caller that wants the memory back now)."""
        if self._held is not None:
            self._held.release()

    def forget(self, control: LazyControl) -> None:
        """Called by a control that released itself: the slot is free, and the freed memory goes back."""
        if self._held is control:
            self._held = None
        gc.collect()  # nnsight's wrapper and envoys reference each other: only the cycle collector frees them
        if self._after_release is not None:
            self._after_release()


class LazyControl(ConceptModel):
    """An architecture control of ``parent`` (an untrained twin or the spectrum-matched twin) whose module is
    built by ``build`` on first use and dropped by :meth:`release`; see the module docstring.

    Everything the activation cache and the forward memo key on (identity, device, dtype, sites, shape) is known
    without building, so a warm run never builds it. The first build checks those answers against the built
    module and refuses a mismatch (the cache would otherwise have been read under a wrong key).
    """

    #: whole-matrix weight reads go through the on-disk store (:mod:`conceptspace.models._weights`), so that a
    #: warm run reading a control's token vectors does not build it
    stores_weight_reads = True

    def __init__(self, parent: ConceptModel, identity: ModelIdentity, target: torch.device,
                 build: Callable[[], torch.nn.Module], slot: ControlSlot | None = None) -> None:
        # ConceptModel.__init__ is not called: it needs the module, which is exactly what is not built yet
        self.tokenizer = parent.tokenizer
        self.identity = identity
        self.is_causal = parent.is_causal
        self.remote = False  # a control always runs here, even the twin of a remote model
        self.repo_id = parent.repo_id
        self.trust_remote_code = False
        self.site_map = parent.site_map
        self._nnsight = None
        self.downloaded_bytes = 0
        self._module: torch.nn.Module | None = None
        self._build = build
        self._slot = slot
        self._facts: dict[str, Any] = {"device": target, "dtype": parent.dtype, "d_model": parent.d_model,
                       "max_length": parent.max_length, "parameters": parent.parameter_count(),
                       "architecture": parent.architecture, "head_path": parent.head_path(),
                       "output_vocab_size": parent.output_vocab_size()}

    # -- the module, on demand -----------------------------------------------------------------------------
    @property
    def hf_model(self) -> torch.nn.Module:  # type: ignore[override]
        """The control's module, built now if it is not held (releasing the slot's previous control)."""
        if self._module is None:
            if self._slot is not None:
                self._slot.hold(self)
            start = time.perf_counter()
            module = self._build()
            self._check(module)
            self._module = module
            if self._slot is not None:
                self._slot.build_seconds += time.perf_counter() - start
        return self._module

    @hf_model.setter
    def hf_model(self, module: torch.nn.Module) -> None:
        self._module = module

    @property
    def is_built(self) -> bool:
        """Whether the module is in memory now."""
        return self._module is not None

    def release(self) -> None:
        """Drop the module and its nnsight wrapper (a later use rebuilds the same network)."""
        if self._module is None:
            return
        self._module, self._nnsight = None, None
        if self._slot is not None:
            self._slot.forget(self)

    def _check(self, module: torch.nn.Module) -> None:
        first = next(module.parameters())
        built = {"device": first.device, "dtype": first.dtype, "architecture": type(module).__name__,
                 "parameters": sum({id(p): p.numel() for p in module.parameters()}.values()),
                 "head_path": _head_path(module), "output_vocab_size": _output_rows(module)}
        wrong = {k: (self._facts[k], v) for k, v in built.items() if self._facts[k] != v}
        if discover_sites(module) != self.site_map:
            wrong["sites"] = (self.site_map, discover_sites(module))
        if wrong:
            raise RuntimeError(f"the {self.control} control of {self.name} (seed {self.control_seed}) was built "
                               f"unlike the trained model it was described from: {wrong} (expected, built); "
                               "this is a bug of conceptspace: report it, and run with --twin none meanwhile")

    # -- what is known without the module -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device(self._facts["device"])

    @property
    def weights_are_local(self) -> bool:
        return True

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = self._facts["dtype"]
        return dtype

    @property
    def d_model(self) -> int:
        return int(self._facts["d_model"])

    @property
    def max_length(self) -> int:
        return int(self._facts["max_length"])

    @property
    def architecture(self) -> str:
        return str(self._facts["architecture"])

    def parameter_count(self) -> int:
        return int(self._facts["parameters"])

    def head_path(self) -> str | None:
        path: str | None = self._facts["head_path"]
        return path

    def output_vocab_size(self) -> int | None:
        rows: int | None = self._facts["output_vocab_size"]
        return rows


def lazy_untrained(model: ConceptModel, seed: int, device: str | torch.device | None = None,
                   slot: ControlSlot | None = None) -> LazyControl:
    """:meth:`ConceptModel.untrained` on demand: the same twin, built when first used."""
    target = model.untrained_target(device)  # a remote model's twin that cannot fit is refused now, not later
    return LazyControl(model, replace(model.identity, untrained_seed=seed), target,
                       lambda: model.untrained_module(seed, target), slot)


def lazy_spectrum_matched(model: ConceptModel, seed: int, device: str | torch.device | None = None,
                          slot: ControlSlot | None = None) -> LazyControl:
    """:meth:`ConceptModel.spectrum_matched` on demand: the same control, built (or loaded from the model cache)
    when first used; the in-process memo keeps no copy of it (that copy would be held for the whole run)."""
    target = model.spectrum_target(seed, device)
    return LazyControl(model, replace(model.identity, spectrum_seed=seed), target,
                       lambda: model.spectrum_module(seed, target, remember=False), slot)


def _head_path(module: torch.nn.Module) -> str | None:
    """The LM head's module path in a built module, as :meth:`ConceptModel.head_path` finds it."""
    get_output = getattr(module, "get_output_embeddings", None)
    head = get_output() if callable(get_output) else None
    return None if head is None else next(name for name, m in module.named_modules() if m is head)


def _output_rows(module: torch.nn.Module) -> int | None:
    """Rows of a built module's LM head, as :meth:`ConceptModel.output_vocab_size` reads them."""
    get_output = getattr(module, "get_output_embeddings", None)
    head = get_output() if callable(get_output) else None
    return None if head is None else int(head.weight.shape[0])
