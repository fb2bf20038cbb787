"""conceptspace: test whether directions in a transformer's embedding space act as semantic concepts.

The public API is re-exported lazily so that ``import conceptspace`` stays cheap (no torch import) for the
CLI's ``--help`` and for tools that only read results.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "conceptspace.models",
    "ConceptModel": "conceptspace.models",
    "extract": "conceptspace.activations",
    "Activations": "conceptspace.activations",
    "Position": "conceptspace.activations",
    "load_results": "conceptspace.suite",
    "ResultSet": "conceptspace.stats",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conceptspace' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["__version__", *_LAZY]
