"""GGUF files: dequantized once to float32 safetensors in the model cache, loaded from there afterwards.

Why: dequantizing the bundled Q4_1 SmolLM2 takes 20-40 s in every process; the converted folder loads in under a
second with identical logits.
"""

from __future__ import annotations

import copy
import gc
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from conceptspace.models._bundled import bundled_model_path
from conceptspace.models._hf import _load_tokenizer_from, _sha256_files
from conceptspace.paths import model_cache_dir
from conceptspace.utils.heap import release_free_heap

log = logging.getLogger(__name__)


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
    conversion never leaves a half-written model behind. The converting process loads that copy too, so the
    model a run gets is the same object graph (and memory) whether or not it converted.
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
        # Load the copy just written, as every later process does, after returning the conversion's memory:
        # keeping the GGUF-built model held ~500 MB more (948 MB resident against 447 MB from the copy; 785 MB
        # with it dropped but the freed heap kept, 432 MB trimmed), which put a fresh machine's first full run
        # at 3.37 GB against 2.81 GB on the next.
        del model, tokenizer
        gc.collect()
        release_free_heap()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32)
        tokenizer = _load_tokenizer_from(target)
    return model, tokenizer
