"""Remote models on NDIF, and the in-process dry run that stands in for an NDIF client.

Why a dry run: a remote client holds only a weightless (meta) skeleton, so any code that reads weights directly
instead of through a trace would fail on NDIF; the dry run fails the same way, offline, in the tests.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from conceptspace.errors import ModelNotFoundError, RemoteError
from conceptspace.models._bundled import BUNDLED_MODELS
from conceptspace.models._hf import _load_tokenizer_from
from conceptspace.models._model import ConceptModel, ModelIdentity, _auto_class, _is_causal_config
from conceptspace.models._nnsight import import_nnsight


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
