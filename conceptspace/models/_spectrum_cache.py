"""The spectrum-matched control, built once and kept: on disk in the model cache and, briefly, in the process.

Why: building the control of SmolLM2-135M costs about 36 s of one core (160 s wall on a loaded machine) and every
run needs it, while its weights are a pure function of (trained weights, seed, construction). So the first build
writes the control's parameters as one safetensors file next to the dequantized GGUF models
(``CONCEPTSPACE_MODEL_CACHE``), and later processes load it in about a second; a process that asks for the same
control again (``benchmarks/null_battery.py`` runs the battery 20 times) gets it from a small in-memory memo.

What makes a served control trustworthy:

* the file name is the control's :meth:`ModelIdentity.key` (trained weights' sha256, seed, dtype and
  :data:`SPECTRUM_METHOD`) plus the device type the arithmetic ran on (a GPU rounds differently from a CPU);
* the file records a fingerprint of the trained parameters *as they are in memory* (a model edited after
  loading has the same file sha256 but other weights) and a sha256 of its own payload; a file that fails to
  parse, whose payload hash, fingerprint, names, shapes or dtypes disagree, is rebuilt, never trusted;
* it is written atomically (:func:`conceptspace.utils.atomic.atomic_write_bytes`), so a killed run leaves either
  nothing or a whole file. No pickle: safetensors only.

Parameters are stored in the model's own dtype (float32 for the bundled models), so a load is bit-identical to
the build that wrote it. A model without a weights hash (a Hub model, an untrained one) is built every time.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

import torch

from conceptspace.models._spectrum import SPECTRUM_METHOD, randomize_singular_vectors_
from conceptspace.paths import model_cache_dir
from conceptspace.utils.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

#: Controls kept in the process: a SmolLM2-sized control is ~540 MB, so only the last two are held.
MEMO_SIZE = 2

Tensors = dict[str, torch.Tensor]
_MEMO: OrderedDict[tuple[str, str, str], Tensors] = OrderedDict()


def clear_memo() -> None:
    """Forget the controls held in this process (tests; or to give the memory back)."""
    _MEMO.clear()


def memo_size() -> int:
    return len(_MEMO)


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a tensor as stored (any dtype, bfloat16 included), without a copy for a CPU tensor."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def _digest(tensors: Tensors) -> str:
    """sha256 over names, dtypes, shapes and bytes, in name order (about 0.3 s for SmolLM2's 540 MB)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(_raw_bytes(tensor))
    return digest.hexdigest()


def _parameters(module: torch.nn.Module) -> Tensors:
    """The parameters a control changes (tied ones once, as ``named_parameters`` lists them)."""
    return {name: parameter.detach() for name, parameter in module.named_parameters() if parameter.dim() > 0}


def source_fingerprint(module: torch.nn.Module) -> str:
    """What the trained parameters are in memory now; the file sha256 alone misses edits made after loading."""
    return _digest(_parameters(module))


def cache_path(identity_key: str, device: torch.device) -> Path:
    return model_cache_dir() / f"spectrum-matched-{identity_key}-{device.type}.safetensors"


def _metadata(identity_key: str, seed: int, fingerprint: str, payload: str) -> dict[str, str]:
    return {
        "format": "pt",
        "identity_key": identity_key,
        "spectrum_method": SPECTRUM_METHOD,
        "spectrum_seed": str(seed),
        "source_fingerprint": fingerprint,
        "payload_sha256": payload,
    }


def _save(path: Path, tensors: Tensors, metadata: dict[str, str]) -> None:
    """Publish the control's parameters atomically; a cache that cannot be written only costs the next build."""
    from safetensors.torch import save

    cpu = {name: tensor.to("cpu").contiguous() for name, tensor in tensors.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(cpu, metadata=metadata))
    except OSError as error:
        log.info("could not keep the spectrum-matched control in %s (%s); it will be rebuilt next time", path, error)


def _load(path: Path, expected: dict[str, str], reference: Tensors) -> Tensors | None:
    """The cached parameters if the file is whole and describes exactly this control, else None (rebuild)."""
    if not path.exists():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # a truncated or garbled file raises from the parser: rebuild it
        log.info("rebuilding the spectrum-matched control: %s is unreadable (%s)", path, error)
        return None
    problem = _mismatch(metadata, expected, tensors, reference)
    if problem is not None:
        log.info("rebuilding the spectrum-matched control: %s %s", path, problem)
        return None
    return tensors


def _mismatch(metadata: dict[str, str], expected: dict[str, str], tensors: Tensors, reference: Tensors) -> str | None:
    """Why a loaded file cannot be used for this control, or None when it can."""
    for field, value in expected.items():
        if field != "payload_sha256" and metadata.get(field) != value:
            return f"has {field}={metadata.get(field)!r}, expected {value!r}"
    if tensors.keys() != reference.keys():
        return "holds other parameters than the model"
    for name, tensor in tensors.items():
        if tensor.shape != reference[name].shape or tensor.dtype != reference[name].dtype:
            return f"has {name} as {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(reference[name].shape)}"
    if _digest(tensors) != metadata.get("payload_sha256"):
        return "is damaged (its payload sha256 does not match)"
    return None


def _fill(module: torch.nn.Module, tensors: Tensors) -> None:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name in tensors:
                parameter.copy_(tensors[name])


def _remember(slot: tuple[str, str, str], tensors: Tensors) -> None:
    """Keep a control's parameters (tensors no module owns: a caller's edits must never reach the memo)."""
    _MEMO[slot] = tensors
    _MEMO.move_to_end(slot)
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)


def build_spectrum_matched(
    source: torch.nn.Module, seed: int, target: torch.device, identity_key: str | None, *, remember: bool = True
) -> torch.nn.Module:
    """A fresh copy of ``source`` on ``target`` with spectrum-matched parameters: memo, then disk, then build.

    ``identity_key`` is the control's :meth:`ModelIdentity.key`, or None for a model without a weights hash
    (then nothing is cached). Every call returns its own module, so a caller may edit it freely.
    ``remember=False`` leaves the memo as it was: the memo's copy is a second model's worth of memory, which a
    caller that rebuilds on demand from the model cache does not want held.
    """
    control = copy.deepcopy(source).to(target)
    if identity_key is None:
        randomize_singular_vectors_(control, seed)
        return control.eval()
    fingerprint = source_fingerprint(source)
    slot = (identity_key, target.type, fingerprint)
    remembered = _MEMO.get(slot)
    if remembered is not None:
        _MEMO.move_to_end(slot)
        _fill(control, remembered)
        return control.eval()
    path = cache_path(identity_key, target)
    expected = _metadata(identity_key, seed, fingerprint, "")
    loaded = _load(path, expected, _parameters(control))
    if loaded is not None:
        _fill(control, loaded)  # copies: the loaded tensors stay the memo's own
    else:
        randomize_singular_vectors_(control, seed)
        loaded = {name: tensor.to("cpu", copy=True) for name, tensor in _parameters(control).items()}
        _save(path, loaded, {**expected, "payload_sha256": _digest(loaded)})
    if remember:
        _remember(slot, loaded)
    return control.eval()
