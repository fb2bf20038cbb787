"""nnsight mounts ``save`` on ``object``; anyio classes defined after that fail to build. conceptspace's one
nnsight import preloads them, so a later lazy import of any anyio module must still work (a fresh interpreter:
in this test process everything may already be imported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _anyio_modules_with_typed_attributes() -> list[str]:
    anyio = pytest.importorskip("anyio")
    root = Path(anyio.__file__).parent
    out = []
    for path in sorted(root.rglob("*.py")):
        if "(TypedAttributeSet)" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(root.parent).with_suffix("").parts
            out.append(".".join(p for p in parts if p != "__init__"))
    return out


def test_every_anyio_attribute_module_imports_after_nnsight():
    modules = _anyio_modules_with_typed_attributes()
    assert "anyio.streams.file" in modules  # the one CI met
    code = ("from conceptspace.models._nnsight import import_nnsight; import_nnsight(); import importlib; "
            f"[importlib.import_module(m) for m in {modules!r}]; print('ok')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
