"""The one place conceptspace imports nnsight.

nnsight 0.8 mounts a ``save`` method on ``object`` at import time. Classes defined *after* that whose metaclass
checks every attribute for an annotation then fail to build: anyio's ``TypedAttributeSet`` subclasses raise
"Attribute 'save' is missing its type annotation", and anyio is imported lazily by httpx/huggingface_hub when a
Hub model is loaded. Importing anyio's class-defining modules first avoids this without taking ``.save()`` away
from users who like that syntax.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: every anyio module that defines a ``TypedAttributeSet`` subclass (abc: socket attributes; streams.tls and
#: streams.file: their stream attributes), and the ones that import them. ``anyio.streams.file`` was missing: a
#: fresh process that reached it after nnsight (the main job's remote dry run, in CI) failed with the error above.
_ANYIO_MODULES = ("anyio", "anyio.abc", "anyio._backends._asyncio", "anyio.streams.memory", "anyio.streams.tls",
                  "anyio.streams.file")


def _preload_anyio() -> None:
    for name in _ANYIO_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return


def import_nnsight() -> ModuleType:
    """nnsight, imported after the modules its ``save`` mount would break."""
    _preload_anyio()
    import nnsight

    return nnsight
