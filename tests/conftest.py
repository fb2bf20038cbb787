"""Shared pytest setup: a throw-away activation cache per session and the integration marker switch."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

# Tests never reach the Hugging Face Hub (nothing can be downloaded here; a timeout would cost 20-40 s each).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from conceptspace.models._nnsight import import_nnsight

# Keep the code on nnsight's current API: any deprecated call fails the test that makes it.
warnings.simplefilter("error", import_nnsight().NNsightDeprecationWarning)


# ------------------------------------------------------------------ the remote dry run's simulated server
# A trace body is shipped to the worker, which has no conceptspace. nnsight's dry run deserializes it with
# non-server modules hidden, but an *installed* conceptspace (tox's wheel) is re-imported from site-packages
# instead of failing, so a body naming a conceptspace object passes here and fails on NDIF (in CI it failed
# later, in that fresh import). Every test that runs a dry-run trace checks that nothing of conceptspace was
# imported while the body was rebuilt.
from nnsight.intervention.backends import local as _nnsight_local  # noqa: E402


class ShippedConceptspaceError(AssertionError):
    """A trace body referred to conceptspace code, which a remote worker does not have."""


def _guard_simulated_server() -> None:
    import sys

    backend = _nnsight_local.LocalSimulationBackend
    hide, restore = backend._hide_local_modules, backend._restore

    def hide_and_remember(self):  # type: ignore[no-untyped-def]
        hidden = hide(self)
        hidden["_before"] = set(sys.modules)
        return hidden

    def restore_and_check(self, hidden):  # type: ignore[no-untyped-def]
        imported = sorted(name for name in set(sys.modules) - hidden.pop("_before", set())
                          if name.split(".")[0] == "conceptspace")
        restore(self, hidden)
        if imported:
            raise ShippedConceptspaceError(
                f"a trace body shipped conceptspace objects by reference (rebuilding it imported {imported[:5]}); "
                "resolve envoys and values before the trace, so the body names only torch, nnsight and envoys")

    backend._hide_local_modules, backend._restore = hide_and_remember, restore_and_check


_guard_simulated_server()


# ------------------------------------------------------------------------------------------- test tiers
# Every tier marker is set here, from the test's folder or from this table, never in the test files:
#   integration  everything under tests/integration/ (the real bundled models)
#   slow         a unit test that takes over ~10 s on the 2-core machine: it runs with the integration tier
#   calibration  long statistical calibration (minutes): its own tox env, `tox -e calibration`
# The unit tier (`tox -e py311`) is what is left; it stays under 3 minutes.
SLOW = {
    "tests/unit/test_cache.py::test_killed_extraction_resumes_from_whole_shards":
        "kills a real extraction subprocess twice and resumes it",
    "tests/unit/test_icl_claims.py::test_calibration_on_pure_noise_and_planted_truth[_n2_once]":
        "N2 statistic on 400 synthetic data sets (~12 s)",
    "tests/unit/test_icl_claims.py::test_calibration_on_pure_noise_and_planted_truth[_n3_once]":
        "N3 statistic on 400 synthetic data sets (~12 s)",
    "tests/integration/test_self_mapping_filtering_real.py": "N5 and N7 quick on SmolLM2 with the twin (~1-2 min)",
    "tests/integration/test_attention_pattern_real.py": "N6 quick on SmolLM2 with the twins (~45 s)",
    "tests/unit/test_geometry_calibration.py::test_planted_relation_ci_covers_the_mean_effect_over_data_sets":
        "120 planted relation data sets (~17 s)",
}
CALIBRATION = {
    "tests/unit/test_stats_calibration.py::test_realistic_null_calibration_30_layers":
        "200 label sets x 30 layers at d=576 (3-6 minutes)",
    "tests/integration/test_calibration_real.py": "null rates on real SmolLM2 activations (3-10 minutes)",
    "tests/unit/test_probe_intervals.py::test_planted_classes_the_interval_covers_the_expected_cv_score":
        "300 planted data sets x 50 nested CVs and 200 refit-bootstrap replicates, at 40 and 100 groups (10-13 min)",
    "tests/unit/test_probe_intervals.py::test_pure_noise_the_interval_covers_zero_and_p_is_uniform":
        "300 random label sets x 50 nested CVs and 200 refit-bootstrap replicates (~10 minutes)",
    "tests/unit/test_ncv_interval.py::test_pure_noise_the_paired_interval_covers_zero":
        "200 pure-noise data sets x 3 controls x 50 paired nested CVs (~5 minutes)",
    "tests/unit/test_probe_intervals.py::test_pure_noise_paired_differences_with_controls_cover_zero":
        "300 pure-noise data sets, a task and two controls, 200 refit-bootstrap replicates each (~1-2 minutes)",
    "tests/unit/test_probe_intervals.py::test_planted_targets_the_r2_interval_covers_the_expected_cv_score":
        "300 planted regression data sets x 400 signal-world draws, nested penalty, 100 groups (~1-2 minutes)",
    "tests/unit/test_probe_intervals.py::test_pure_noise_the_r2_interval_covers_zero_and_p_is_uniform":
        "700 pure-noise regression data sets x 199 null and 400 signal-world draws, nested penalty (~3 minutes)",
    "tests/unit/test_probe_intervals.py::test_pure_noise_the_r2_paired_interval_covers_zero":
        "1,400 pure-noise regression data sets, a task and an untrained stand-in, 400 signal-world draws each (~5 min)",
    "tests/unit/test_calibration_proximity_aggregation.py": "P5 and A6 intervals and p-values, thousands of "
    "synthetic data sets at several sizes (3-5 minutes)",
    **{f"tests/unit/test_geometry_calibration.py::test_calibration_noise_ci_covers_zero_93_to_97_percent_and_p_is_"
       f"exact[{case}]": "300-400 pure-noise data sets of one geometry kind (0.5-4 minutes)"
       for case in ("relations-400", "clustering-400", "analogies-300", "similarity-300")},
    "tests/unit/test_causal_calibration.py::test_pure_noise_calibration_many_draws":
        "3000 placebo directions through a tiny model, 3000 noise concepts (~40 s)",
}
_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        file_id = item.nodeid.split("::")[0]
        if Path(item.path).is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)
        if item.nodeid in SLOW or file_id in SLOW:
            item.add_marker(pytest.mark.slow)
        if item.nodeid.split("[")[0] in CALIBRATION or file_id in CALIBRATION:  # every parametrization
            item.add_marker(pytest.mark.calibration)


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
    from conceptspace.models import load_model

    return {arch: load_model(str(folder)) for arch, folder in tiny_model_dirs.items()}
