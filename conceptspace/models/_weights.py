"""Static weights the analyses read (token vectors, the output head, the final norm), local or remote.

Why a module of its own: most analyses need a few rows of the embedding or unembedding matrix (a word's
static vector, the lexical baseline, a bag of embeddings), and the logit lens needs the output head and the
final norm. For a local model those are plain reads. For a remote model (NDIF, or the ``remote="local"`` dry
run) the client holds only a weightless skeleton, so every read goes through a trace whose body slices the
parameter *server-side* and downloads only the rows asked for; whole matrices are downloaded once in chunks
and kept in the on-disk cache (``<cache>/weights/<model identity>/``, ``.npy`` plus a JSON note), so a second
run pays nothing. Analyses call these functions and never touch ``hf_model`` parameters themselves.

An architecture control built on demand (:class:`~conceptspace.models._lazy_control.LazyControl`: the untrained
twins, the spectrum-matched twin) stores the matrices it is read from in the same place, keyed by its identity,
the first time one is read. Why: a warm run reads the controls' activations from the cache without building
them, but C1-C3's word vectors, A6's embedding rows and P5's token rows read weights, and each such read rebuilt
a released control (about 2 s each: 42 builds, 88 s, in a warm ``--quick`` at load 2). A stored matrix is the
built control's own float32 values (bit-identical reads); one whose file cannot be read or whose width is not
the model's is rebuilt and stored again.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models._model import ConceptModel
from conceptspace.models._nnsight import import_nnsight
from conceptspace.models._sites import get_submodule
from conceptspace.paths import activation_cache_dir
from conceptspace.utils.atomic import atomic_write_json

# Rows per download when a whole matrix is fetched: about 64 MiB of float32 per trace whatever d is.
CHUNK_BYTES = 1 << 26


def _fetch(model: ConceptModel, module_path: str, name: str, rows: torch.Tensor | None = None) -> torch.Tensor:
    """One parameter or buffer (or some of its rows) of a module, read inside a trace (server-side slicing).

    The trace feeds one token and stops before the first layer runs: the request exists only to reach the
    weights. The body is torch-only, as a remote worker requires; values come back in their stored dtype
    (bf16 stays bf16 on the wire) and are widened here.
    """
    nnsight = import_nnsight()
    traced = model.traced()
    envoy = model.module_envoy(module_path)
    with torch.inference_mode():
        with traced.trace(input_ids=torch.zeros((1, 1), dtype=torch.long), remote=model.remote) as tracer:
            value = getattr(envoy, name)
            if rows is not None:
                value = value[rows.to(value.device)]
            saved = nnsight.save(value.detach().cpu())
            tracer.stop()
    model.record_download(saved)
    return saved.float()


def _cache_folder(model: ConceptModel) -> Path:
    return activation_cache_dir() / "weights" / model.identity.key()


def _store_path(model: ConceptModel, module_path: str, name: str) -> Path:
    """Where one whole parameter of ``model`` is kept (``.npy``; its JSON note beside it)."""
    return _cache_folder(model) / f"{module_path}.{name}.npy"


def _cached_matrix(model: ConceptModel, module_path: str, name: str) -> np.ndarray:
    """A whole remote parameter, downloaded in row chunks once and then read from the on-disk cache."""
    target = _store_path(model, module_path, name)
    if target.exists():
        return np.load(target, mmap_mode="r")
    shape = tuple(_weight(model, module_path, name).shape)
    if len(shape) == 1:
        out = _fetch(model, module_path, name).numpy()
    else:
        step = max(1, CHUNK_BYTES // (4 * int(np.prod(shape[1:]))))
        out = np.empty(shape, dtype=np.float32)
        for start in range(0, shape[0], step):
            rows = torch.arange(start, min(start + step, shape[0]))
            out[start : start + len(rows)] = _fetch(model, module_path, name, rows).numpy()
    _publish(model, module_path, name, out)
    return out


def _publish(model: ConceptModel, module_path: str, name: str, out: np.ndarray) -> None:
    """Write one whole parameter to the store: the note first, the matrix last by rename, so a reader sees all
    of it or nothing (two runs storing the same matrix at once each write their own temporary file)."""
    target = _store_path(model, module_path, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    note = {"model": model.describe(), "parameter": f"{module_path}.{name}", "shape": list(out.shape),
            "dtype": "float32"}
    tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
    try:
        atomic_write_json(target.with_suffix(".json"), note)
        np.save(tmp, out)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def stores_weight_reads(model: ConceptModel) -> bool:
    """Whether ``model``'s whole-matrix reads go through the store (an architecture control built on demand)."""
    return bool(getattr(model, "stores_weight_reads", False))


def _stored_matrix(model: ConceptModel, module_path: str, name: str = "weight") -> np.ndarray:
    """A control's whole parameter from the store (see module doc), stored from the built control on first use."""
    target = _store_path(model, module_path, name)
    if target.exists():
        try:
            stored = np.load(target, mmap_mode="r")
        except (OSError, ValueError):  # damaged: rebuilt below
            stored = None
        if stored is not None and stored.dtype == np.float32 and stored.ndim == 2 and stored.shape[1] == model.d_model:
            return stored
    out = getattr(get_submodule(model.hf_model, module_path), name).detach().float().cpu().numpy()
    _publish(model, module_path, name, out)
    return out


def _weight(model: ConceptModel, module_path: str, name: str = "weight") -> torch.Tensor:
    """A module's tensor as this side holds it (real for a local model, meta for a remote one)."""
    tensor: torch.Tensor = getattr(get_submodule(model.hf_model, module_path), name)
    return tensor


def _rows(model: ConceptModel, module_path: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    index = np.asarray(ids, dtype=np.int64).reshape(-1)
    if stores_weight_reads(model):
        stored = _stored_matrix(model, module_path)
        _check_ids(index, int(stored.shape[0]))
        return np.array(stored[index], dtype=np.float32)
    weight = _weight(model, module_path).detach()  # meta (shapes only) for a remote model
    vocab, width = (int(n) for n in weight.shape)
    _check_ids(index, vocab)
    if model.weights_are_local:
        return weight[torch.from_numpy(index).to(weight.device)].float().cpu().numpy()
    if not index.size:
        return np.zeros((0, width), dtype=np.float32)
    unique, inverse = np.unique(index, return_inverse=True)
    fetched = _fetch(model, module_path, "weight", torch.from_numpy(unique)).numpy()
    return fetched[inverse]


def _check_ids(index: np.ndarray, vocab: int) -> None:
    if index.size and (index.min() < 0 or index.max() >= vocab):
        raise InvalidInputError(f"token ids must lie in 0..{vocab - 1}; got {index.min()}..{index.max()}")


def vocab_size(model: ConceptModel) -> int:
    """Rows of the input embedding (known from the skeleton's shapes; no weights needed)."""
    return int(model.embedding_matrix().shape[0])


def embedding_rows(model: ConceptModel, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """(n, d) float32 input token vectors for ``ids`` (repeats allowed); a remote model downloads each once."""
    return _rows(model, model.site_map.embed, ids)


def unembedding_rows(model: ConceptModel, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """(n, d) output token vectors (the LM head's rows; the embedding for a model without a head)."""
    path = model.head_path()
    return _rows(model, model.site_map.embed if path is None else path, ids)


def unembedding_matrix(model: ConceptModel) -> np.ndarray:
    """(vocab, d) output token vectors (the embedding for a model without a head), e.g. for Cov(U).

    Remote: the whole matrix is downloaded once (vocab x d values; 2 GiB in bf16 for a 70B Llama 3) and cached.
    """
    path = model.head_path() or model.site_map.embed
    if stores_weight_reads(model):
        return np.array(_stored_matrix(model, path))  # a writable copy, as a local read gives
    if model.weights_are_local:
        return _weight(model, path).detach().float().cpu().numpy()
    return _cached_matrix(model, path, "weight")


def output_head(model: ConceptModel) -> tuple[np.ndarray, np.ndarray | None]:
    """The LM head's weight (vocab, d) and bias (or None): what logits are read with."""
    path = model.head_path()
    if path is None:
        raise NotApplicableError(f"{model.name} has no language-model head; this analysis needs logits")
    head = get_submodule(model.hf_model, path)
    bias_tensor: torch.Tensor | None = getattr(head, "bias", None)
    weight_tensor: torch.Tensor = getattr(head, "weight")  # noqa: B009
    has_bias = bias_tensor is not None
    if model.weights_are_local:
        bias = None if bias_tensor is None else bias_tensor.detach().float().cpu().numpy()
        return weight_tensor.detach().float().cpu().numpy(), bias
    weight = _cached_matrix(model, path, "weight")
    return weight, (np.asarray(_cached_matrix(model, path, "bias")) if has_bias else None)


def final_norm(model: ConceptModel) -> torch.nn.Module:
    """The final norm as a module that runs here (a remote model's copy is rebuilt from downloaded tensors)."""
    path = model.site_map.final_norm
    if path is None:
        raise NotApplicableError(f"{model.name} has no final norm (BERT-style encoders normalise in every block)")
    module = get_submodule(model.hf_model, path)
    if model.weights_are_local:
        return module
    local = copy.deepcopy(module).to_empty(device="cpu").float()
    with torch.no_grad():
        for name, tensor in [*local.named_parameters(recurse=False), *local.named_buffers(recurse=False)]:
            tensor.copy_(torch.from_numpy(np.array(_cached_matrix(model, path, name))))
    return local.eval()
