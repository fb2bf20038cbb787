"""Shared pytest setup: a throw-away activation cache per session and the integration marker switch."""

from __future__ import annotations

import os
import warnings

import pytest

from conceptspace.models._nnsight import import_nnsight

# Keep the code on nnsight's current API: any deprecated call fails the test that makes it.
warnings.simplefilter("error", import_nnsight().NNsightDeprecationWarning)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test read or write the user's real activation cache.

    The dequantized bundled model is the exception: converting the GGUF costs ~30 s per process, so it is kept
    in a per-session folder shared by every test (CONCEPTSPACE_MODEL_CACHE), unless the caller set one already.
    """
    monkeypatch.setenv("CONCEPTSPACE_CACHE", str(tmp_path_factory.mktemp("activation-cache")))
    if "CONCEPTSPACE_MODEL_CACHE" not in os.environ:
        monkeypatch.setenv("CONCEPTSPACE_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Folders of tiny random llama / gpt2 / bert models (built once per test session)."""
    from tests.tiny_models import make_tiny_model

    base = tmp_path_factory.mktemp("tiny-models")
    return {arch: make_tiny_model(base / arch, arch) for arch in ("llama", "gpt2", "bert")}


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs: dict[str, object]) -> dict[str, object]:
    """The tiny models loaded through conceptspace.load_model (the user-folder code path)."""
    from conceptspace.models._load import load_model

    return {arch: load_model(str(folder)) for arch, folder in tiny_model_dirs.items()}
