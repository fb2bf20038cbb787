"""Shared pytest setup: a throw-away activation cache per session and the integration marker switch."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test read or write the user's real activation cache.

    The dequantized bundled model is the exception: converting the GGUF costs ~30 s per process, so it is kept
    in a per-session folder shared by every test (CONCEPTSPACE_MODEL_CACHE), unless the caller set one already.
    """
    monkeypatch.setenv("CONCEPTSPACE_CACHE", str(tmp_path_factory.mktemp("activation-cache")))
    if "CONCEPTSPACE_MODEL_CACHE" not in os.environ:
        monkeypatch.setenv("CONCEPTSPACE_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))
