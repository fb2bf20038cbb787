"""``ConceptModel``: a loaded model with what every analysis needs from it, and its architecture controls.

Why a wrapper at all: every later analysis needs the same four things from a model (its tokenizer, a standard
map of activation sites, a stable identity for the activation cache, and architecture controls: the untrained
twin and the spectrum-matched model), and none of them should meet nnsight's tracing rules. ``ConceptModel``
carries those; ``activations`` is the only module that traces it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch

from conceptspace.errors import InvalidInputError, RemoteError
from conceptspace.models._nnsight import import_nnsight
from conceptspace.models._sites import SiteMap, discover_sites, get_submodule, module_path, parse_site
from conceptspace.models._spectrum import SPECTRUM_METHOD
from conceptspace.models._spectrum_cache import build_spectrum_matched

RemoteMode = bool | Literal["local"]

#: The names of the architecture controls, as they appear in ``ConceptModel.control`` and ``describe()``.
UNTRAINED_CONTROL = "untrained"
SPECTRUM_CONTROL = "spectrum_matched"


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two models' activations interchangeable; the activation cache is keyed on it."""

    name: str
    source: str
    weights_sha256: str | None
    revision: str | None
    dtype: str
    untrained_seed: int | None = None
    spectrum_seed: int | None = None

    def key(self) -> str:
        """A short stable hash of every field (and, for a spectrum-matched control, of its construction).

        ``spectrum_seed`` enters only when it is set, so the keys of every other model (and their cached
        activations) are the same as before the field existed; when it is set, :data:`SPECTRUM_METHOD` enters
        too, so a change of the construction can never serve activations of the old one.
        """
        fields: dict[str, object] = asdict(self)
        if self.spectrum_seed is None:
            del fields["spectrum_seed"]
        else:
            fields["spectrum_method"] = SPECTRUM_METHOD
        payload = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:24]


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(table)}")
    return table[dtype]


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "cpu":
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU; use device='cpu'")
    return resolved


def _is_causal_config(config: Any) -> bool:
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures):
        return True
    return bool(getattr(config, "is_decoder", False)) and not getattr(config, "is_encoder_decoder", False)


def _auto_class(causal: bool) -> Any:
    import transformers

    return transformers.AutoModelForCausalLM if causal else transformers.AutoModel


class ConceptModel:
    """A loaded model with its tokenizer, standard sites, identity, and the ways to get its controls
    (:meth:`untrained`, :meth:`spectrum_matched`).

    ``tokenizer`` is left exactly as the checkpoint configured it; extraction pads by itself (nnsight would
    switch a tokenizer to left padding in place, so it only ever gets a copy).
    """

    def __init__(
        self,
        *,
        hf_model: torch.nn.Module,
        tokenizer: Any,
        identity: ModelIdentity,
        is_causal: bool,
        remote: RemoteMode = False,
        repo_id: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.identity = identity
        self.is_causal = is_causal
        self.remote = remote
        self.repo_id = repo_id
        self.trust_remote_code = trust_remote_code
        self.site_map: SiteMap = discover_sites(hf_model)
        self._nnsight: Any = None
        self.downloaded_bytes = 0  # what remote traces sent back (see record_download)

    # -- description ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def control(self) -> str | None:
        """Which architecture control this model is: ``"untrained"``, ``"spectrum_matched"``, or None (the
        model itself)."""
        if self.identity.untrained_seed is not None:
            return UNTRAINED_CONTROL
        if self.identity.spectrum_seed is not None:
            return SPECTRUM_CONTROL
        return None

    @property
    def control_seed(self) -> int | None:
        """The seed the control was drawn with (None for the model itself)."""
        if self.identity.untrained_seed is not None:
            return self.identity.untrained_seed
        return self.identity.spectrum_seed

    @property
    def n_layers(self) -> int:
        return self.site_map.n_layers

    @property
    def d_model(self) -> int:
        return int(self.embedding_matrix().shape[1])

    @property
    def sites(self) -> tuple[str, ...]:
        return self.site_map.available()

    @property
    def device(self) -> torch.device:
        """Where inputs are built: the weights' device, or the CPU when the weights live on NDIF (meta here)."""
        device = next(self.hf_model.parameters()).device
        return torch.device("cpu") if device.type == "meta" else device

    @property
    def weights_are_local(self) -> bool:
        """False for a remote model (and its dry run): weights are read through a trace, never from here."""
        return next(self.hf_model.parameters()).device.type != "meta"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    @property
    def max_length(self) -> int:
        """Longest input in tokens the model accepts (its position table), used to reject over-long texts."""
        config = self.hf_model.config  # type: ignore[union-attr]
        for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        return int(getattr(self.tokenizer, "model_max_length", 1 << 30))

    @property
    def architecture(self) -> str:
        """The model class's name (``LlamaForCausalLM``), as reports and cache manifests record it."""
        return type(self.hf_model).__name__

    def parameter_count(self) -> int:
        """Distinct parameters (tied matrices counted once)."""
        seen = {id(p): p.numel() for p in self.hf_model.parameters()}
        return int(sum(seen.values()))

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for reports and cache manifests (never any credential)."""
        return {
            **asdict(self.identity),
            "identity_key": self.identity.key(),
            "control": self.control,
            **({"spectrum_method": SPECTRUM_METHOD} if self.control == SPECTRUM_CONTROL else {}),
            "architecture": self.architecture,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "parameters": self.parameter_count(),
            "causal": self.is_causal,
            "remote": self.remote,
        }

    def __repr__(self) -> str:
        return (
            f"ConceptModel({self.name!r}, {type(self.hf_model).__name__}, layers={self.n_layers}, "
            f"d={self.d_model}, control={self.control!r}, seed={self.control_seed}, remote={self.remote!r})"
        )

    # -- matrices ------------------------------------------------------------------------------------------
    def embedding_matrix(self) -> torch.Tensor:
        """Input token vectors, shape (vocab, d); weightless (meta) for a remote model: read values through
        :mod:`conceptspace.models._weights`, which works for both."""
        weight: torch.Tensor = getattr(get_submodule(self.hf_model, self.site_map.embed), "weight")  # noqa: B009
        return weight.detach()

    def unembedding(self) -> torch.Tensor | None:
        """Output token vectors (vocab, d) that logits are read with, or None for a model without an LM head.

        Meta for a remote model (shapes only); values through :mod:`conceptspace.models._weights`.
        """
        head = self._head()
        return None if head is None else head.weight.detach()

    def output_vocab_size(self) -> int | None:
        """Rows of the LM head (the token ids a next-token test can name), None without a head; from the shape
        alone, so an unbuilt control (:mod:`conceptspace.models._lazy_control`) answers it without its weights."""
        head = self.unembedding()
        return None if head is None else int(head.shape[0])

    def _head(self) -> Any:
        get_output = getattr(self.hf_model, "get_output_embeddings", None)
        return get_output() if callable(get_output) else None

    def head_path(self) -> str | None:
        """Module path of the LM head (what ``get_output_embeddings`` returns), or None for a model without one."""
        head = self._head()
        if head is None:
            return None
        return next(name for name, module in self.hf_model.named_modules() if module is head)

    # -- controls ------------------------------------------------------------------------------------------
    def untrained(self, seed: int = 0, *, device: str | torch.device | None = None) -> ConceptModel:
        """The same architecture, config and tokenizer with weights re-initialised from ``seed``.

        Ties are rebuilt from the config, so a model that ties its input and output embeddings keeps them tied.
        The twin is the universal control: anything it also shows is a property of the architecture or the
        data, not of training. It needs only the config, so a remote model's twin is built and run here
        (always locally, on ``device``); a twin too large for this machine's memory is refused with a clear
        error rather than swapping.
        """
        target = self.untrained_target(device)
        return self._local_control(self.untrained_module(seed, target), replace(self.identity, untrained_seed=seed))

    def _local_control(self, module: torch.nn.Module, identity: ModelIdentity) -> ConceptModel:
        """A control network beside this model: same tokenizer and kind, always run here."""
        return ConceptModel(hf_model=module, tokenizer=self.tokenizer, identity=identity, is_causal=self.is_causal,
                            remote=False, repo_id=self.repo_id)

    def untrained_target(self, device: str | torch.device | None = None) -> torch.device:
        """Where :meth:`untrained` puts the twin: the model's device, or ``device`` (always local; a remote
        model's twin must fit this machine, else a clear error)."""
        target = self.device if device is None and self.weights_are_local else _device(device)
        if not self.weights_are_local:
            _check_twin_fits(self, target)
        return target

    def untrained_module(self, seed: int, target: torch.device) -> torch.nn.Module:
        """The twin's module alone: the config re-initialised from ``seed`` on ``target`` (torch's global random
        state is left as it was), so a run can rebuild the same twin whenever it needs it again."""
        config = copy.deepcopy(self.hf_model.config)  # type: ignore[union-attr]
        generator_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            twin = _auto_class(self.is_causal).from_config(config, dtype=self.dtype)
        finally:
            torch.random.set_rng_state(generator_state)
        return twin.to(target).eval()

    def spectrum_matched(self, seed: int, *, device: str | torch.device | None = None) -> ConceptModel:
        """The same architecture, config and tokenizer, with every weight matrix's singular values kept and its
        singular vectors drawn at random (Haar) from ``seed``; gains and biases have their entries permuted.

        Why: the untrained twin is near-identity (its small initialisation barely moves the residual stream),
        so it is a control that can hardly fail; this one keeps the trained model's norms and spectra, so
        signals carried by scale alone survive in it and only learned directions are destroyed. Ties stay tied.
        Same seed, same weights; torch's global random state is left untouched. Needs the weights here, so a
        remote (NDIF) model is refused. See :mod:`conceptspace.models._spectrum` for the construction.
        A model with a weights hash builds it once: later calls load it from the model cache (about 1 s) or, in
        the same process, from a memo of the last two (:mod:`conceptspace.models._spectrum_cache`).
        """
        target = self.spectrum_target(seed, device)
        return self._local_control(self.spectrum_module(seed, target), replace(self.identity, spectrum_seed=seed))

    def spectrum_target(self, seed: int, device: str | torch.device | None = None) -> torch.device:
        """Where :meth:`spectrum_matched` puts the control, after refusing what cannot have one (a remote model,
        a model that is itself a control, a seed that is not an integer)."""
        if not self.weights_are_local:
            raise RemoteError(
                f"the spectrum-matched control of {self.name} needs its trained weights on this machine, and a "
                "remote model keeps them on NDIF: load the model locally (remote=False) to build it, or use the "
                "untrained twin only"
            )
        if self.control is not None:
            raise InvalidInputError(
                f"{self.name} is already a control ({self.control}, seed {self.control_seed}); build the "
                "spectrum-matched control from the trained model"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an integer; got {seed!r}")
        return self.device if device is None else _device(device)

    def spectrum_module(self, seed: int, target: torch.device, *, remember: bool = True) -> torch.nn.Module:
        """The spectrum-matched control's module alone (checked by :meth:`spectrum_target` first): from the
        in-process memo, the model cache, or built. ``remember=False`` keeps no copy in the memo (a run that
        rebuilds its controls on demand holds one model's worth of memory less)."""
        identity = replace(self.identity, spectrum_seed=seed)
        cache_key = identity.key() if identity.weights_sha256 is not None else None
        return build_spectrum_matched(self.hf_model, seed, target, cache_key, remember=remember)

    def record_download(self, *values: Any) -> None:
        """Count the bytes a remote trace sent back (its saved tensors); a no-op for a local model.

        Why: on NDIF the download is the cost of a run, so the runner reports it per analysis and a user can
        see which analysis to trim before paying for a 70B run. Bytes are counted before any compression.
        """
        if not self.remote:
            return
        for value in values:
            if isinstance(value, torch.Tensor):
                self.downloaded_bytes += value.element_size() * value.numel()
            elif isinstance(value, (list, tuple)):
                self.record_download(*value)
            elif isinstance(value, dict):
                self.record_download(*value.values())

    # -- nnsight -------------------------------------------------------------------------------------------
    def traced(self) -> Any:
        """The nnsight ``TransformersModel`` around this model (built once, with a tokenizer copy)."""
        if self._nnsight is None:
            TransformersModel = import_nnsight().TransformersModel

            task = "text-generation" if self.is_causal else "feature-extraction"
            with warnings.catch_warnings():
                # BERT blocks have a submodule called `output`; nnsight warns that it renames it. We never use it.
                warnings.filterwarnings("ignore", message=".*has a submodule named 'output'.*")
                self._nnsight = TransformersModel(self.hf_model, tokenizer=copy.deepcopy(self.tokenizer), task=task)
        return self._nnsight

    def envoy(self, site: str | int) -> Any:
        """The nnsight envoy whose ``.output`` is a standard site (for interventions inside a trace)."""
        return self.module_envoy(module_path(parse_site(site, self.site_map), self.site_map))

    def module_envoy(self, path: str) -> Any:
        """The nnsight envoy of the module at a dotted ``path`` (e.g. ``lm_head``, ``model.layers.3``), found by
        nnsight's own navigation (``Envoy.get``)."""
        return self.traced().get(path)


def _available_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _check_twin_fits(model: ConceptModel, device: torch.device) -> None:
    """Refuse an untrained twin of a remote model that would not fit in this machine's free memory."""
    element = torch.empty((), dtype=model.dtype, device="meta").element_size()
    needed = model.parameter_count() * element
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
        where = f"GPU {device}"
    else:
        free = _available_memory_bytes() or needed + 1
        where = "host memory"
    if needed > 0.8 * free:
        raise RemoteError(
            f"the untrained twin of {model.name} needs about {needed / 2**30:.1f} GiB of {where} and "
            f"{free / 2**30:.1f} GiB is free; run without the twin (--twin none / twin='none'), or use an "
            "untrained smaller model of the same family as the architecture control (--twin <model>)"
        )
