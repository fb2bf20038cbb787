"""Hugging Face folders and Hub ids: tokenizers, weights files and their content hash, the model classes.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from conceptspace.errors import ModelNotFoundError
from conceptspace.models._bundled import BUNDLED_MODELS
from conceptspace.models._model import _auto_class, _is_causal_config


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


def _load_tokenizer_from(folder: str | Path, gguf_file: str | None = None, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if gguf_file is not None:
            return AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file, **kwargs)
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)


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
