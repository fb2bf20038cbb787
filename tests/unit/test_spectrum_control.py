"""The spectrum-matched control: spectra and norms kept, singular vectors random, seeded, cache-separated."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict

import numpy as np
import pytest
import torch

from conceptspace.activations._extract import extract
from conceptspace.errors import InvalidInputError, RemoteError
from conceptspace.models import load_model
from conceptspace.models._spectrum import haar_columns, parameter_generator, spectrum_matched_matrix

ARCHES = ["llama", "gpt2", "bert"]
TEXTS = ["The capital of France is Paris.", "A queen and a king walked into the old castle."]


@pytest.fixture(scope="module")
def controls(tiny_models, tmp_path_factory):
    """Each tiny model's spectrum-matched control (seed 0), built once. A module fixture runs before the autouse
    cache isolation, so it points the model cache (where controls are kept) at a temporary folder itself."""
    with pytest.MonkeyPatch.context() as patch:
        if "CONCEPTSPACE_MODEL_CACHE" not in os.environ:
            patch.setenv("CONCEPTSPACE_MODEL_CACHE", str(tmp_path_factory.mktemp("spectrum-model-cache")))
        return {arch: tiny_models[arch].spectrum_matched(0) for arch in ARCHES}


def _pairs(model, control):
    trained = dict(model.hf_model.named_parameters())
    changed = dict(control.hf_model.named_parameters())
    assert trained.keys() == changed.keys()
    return [(name, trained[name].detach(), changed[name].detach()) for name in trained]


@pytest.mark.parametrize("arch", ARCHES)
def test_every_matrix_keeps_its_singular_values_and_norm(tiny_models, controls, arch):
    matrices = 0
    for name, before, after in _pairs(tiny_models[arch], controls[arch]):
        assert after.shape == before.shape and after.dtype == before.dtype, name
        if before.dim() != 2:
            continue
        matrices += 1
        s_before = torch.linalg.svdvals(before.double())
        s_after = torch.linalg.svdvals(after.double())
        torch.testing.assert_close(s_after, s_before, rtol=1e-5, atol=1e-6 * float(s_before[0]), msg=name)
        torch.testing.assert_close(after.double().norm(), before.double().norm(), rtol=1e-6, atol=0.0, msg=name)
        assert not torch.allclose(after, before), name
    assert matrices >= 10  # embeddings, attention and MLP projections of three blocks


@pytest.mark.parametrize("arch", ARCHES)
def test_gains_and_biases_are_permuted(tiny_model_dirs, arch):
    """Every 1-D parameter keeps its entries in a new order. The tiny models' gains are all 1 (as initialised),
    so every vector gets distinct values first: a vector left in place would then show."""
    model = load_model(str(tiny_model_dirs[arch]))
    with torch.no_grad():
        for parameter in model.hf_model.parameters():
            if parameter.dim() == 1:
                parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    vectors = 0
    for name, before, after in _pairs(model, model.spectrum_matched(0)):
        if before.dim() != 1:
            continue
        vectors += 1
        torch.testing.assert_close(torch.sort(after).values, torch.sort(before).values, rtol=0, atol=0, msg=name)
        assert not torch.equal(after, before), name  # the identity permutation of >= 32 entries: p < 1e-35
    assert vectors >= 7  # the norms of three blocks and the final norm, at least


@pytest.mark.parametrize("arch", ARCHES)
def test_singular_vectors_are_new(tiny_models, controls, arch):
    """The top singular vectors of the control are unrelated to the trained ones: for a Haar vector in R^m,
    |<u1, u1'>| is about 1/sqrt(m) (m >= 8 here), against 1 for the matrix itself."""
    overlaps = []
    for name, before, after in _pairs(tiny_models[arch], controls[arch]):
        if before.dim() != 2 or min(before.shape) < 8:
            continue
        u, _, vt = torch.linalg.svd(before.double(), full_matrices=False)
        u2, _, vt2 = torch.linalg.svd(after.double(), full_matrices=False)
        left, right = abs(float(u[:, 0] @ u2[:, 0])), abs(float(vt[0] @ vt2[0]))
        assert left < 0.9 and right < 0.9, (name, left, right)
        overlaps += [left, right]
    assert len(overlaps) >= 10
    assert float(np.mean(overlaps)) < 0.3, overlaps


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_tied_embeddings_stay_tied(controls, arch):
    hf = controls[arch].hf_model
    assert hf.get_output_embeddings().weight is hf.get_input_embeddings().weight


def test_trained_model_is_left_unchanged(tiny_model_dirs):
    model = load_model(str(tiny_model_dirs["llama"]))
    before = {name: value.clone() for name, value in model.hf_model.state_dict().items()}
    model.spectrum_matched(1)
    for name, value in model.hf_model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("arch", ARCHES)
def test_same_seed_same_weights_other_seed_other_weights(tiny_models, controls, arch):
    again = tiny_models[arch].spectrum_matched(0)
    other = tiny_models[arch].spectrum_matched(1)
    for (name, a), (_, b), (_, c) in zip(controls[arch].hf_model.state_dict().items(),
                                         again.hf_model.state_dict().items(),
                                         other.hf_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
        if a.dim() == 2:
            assert not torch.allclose(a, c), name


def test_global_random_state_is_untouched(tiny_models):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_models["gpt2"].spectrum_matched(5)
    assert torch.equal(torch.rand(3), expected)


def test_identity_and_description_say_what_it_is(tiny_models, controls):
    model, control = tiny_models["llama"], controls["llama"]
    assert control.identity.spectrum_seed == 0 and control.identity.untrained_seed is None
    assert control.control == "spectrum_matched" and control.control_seed == 0
    assert model.control is None and model.untrained(0).control == "untrained"
    description = control.describe()
    assert description["control"] == "spectrum_matched" and description["spectrum_seed"] == 0
    assert description["spectrum_method"].startswith("haar")
    assert description["parameters"] == model.describe()["parameters"]
    assert "spectrum_matched" in repr(control)
    assert control.tokenizer is model.tokenizer and control.n_layers == model.n_layers


def test_identity_keys_never_collide_and_old_keys_stay(tiny_models, controls):
    model = tiny_models["llama"]
    keys = {
        "trained": model.identity.key(),
        "untrained 0": model.untrained(0).identity.key(),
        "spectrum 0": controls["llama"].identity.key(),
        "spectrum 1": model.spectrum_matched(1).identity.key(),
    }
    assert len(set(keys.values())) == len(keys), keys
    # a model that is no spectrum control keeps the key it had before the field existed (its cache stays valid)
    old_fields = {k: v for k, v in asdict(model.identity).items() if k != "spectrum_seed"}
    old_key = hashlib.sha256(json.dumps(old_fields, sort_keys=True).encode()).hexdigest()[:24]
    assert keys["trained"] == old_key


def test_activation_cache_keeps_controls_apart(tiny_models, controls):
    """Trained, untrained twin and two spectrum-matched seeds land in four cache entries; rebuilding a control
    with the same seed finds its entry again with the same values."""
    model = tiny_models["llama"]
    runs = {
        "trained": model,
        "untrained 0": model.untrained(0),
        "spectrum 0": controls["llama"],
        "spectrum 1": model.spectrum_matched(1),
    }
    acts = {label: extract(m, TEXTS, sites=[1], progress=False) for label, m in runs.items()}
    folders = {label: a.folder for label, a in acts.items()}
    assert None not in folders.values() and len(set(folders.values())) == len(folders), folders
    for label in ("trained", "untrained 0", "spectrum 1"):
        assert not np.allclose(acts["spectrum 0"]["layer.1"], acts[label]["layer.1"]), label
    rebuilt = extract(model.spectrum_matched(0), TEXTS, sites=[1], progress=False)
    assert rebuilt.folder == folders["spectrum 0"]
    fresh = extract(model.spectrum_matched(0), TEXTS, sites=[1], cache=False, progress=False)
    np.testing.assert_array_equal(fresh["layer.1"], acts["spectrum 0"]["layer.1"])


def test_control_of_a_control_and_remote_models_are_refused(tiny_models, tiny_model_dirs):
    with pytest.raises(InvalidInputError, match="already a control"):
        tiny_models["gpt2"].untrained(0).spectrum_matched(0)
    with pytest.raises(InvalidInputError, match="already a control"):
        tiny_models["gpt2"].spectrum_matched(0).spectrum_matched(1)
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        tiny_models["gpt2"].spectrum_matched(1.5)  # type: ignore[arg-type]
    dry = load_model(str(tiny_model_dirs["gpt2"]), remote="local")
    with pytest.raises(RemoteError, match="needs its trained weights on this machine"):
        dry.spectrum_matched(0)


def test_low_precision_model_keeps_its_dtype(tiny_model_dirs):
    model = load_model(str(tiny_model_dirs["llama"]), dtype="bfloat16")
    control = model.spectrum_matched(0)
    assert control.dtype == torch.bfloat16
    before = model.hf_model.model.layers[0].mlp.up_proj.weight.double()
    after = control.hf_model.model.layers[0].mlp.up_proj.weight.double()
    torch.testing.assert_close(torch.linalg.svdvals(after), torch.linalg.svdvals(before), rtol=2e-2, atol=1e-3)


# -------------------------------------------------------------------------------- the construction itself
@pytest.mark.parametrize("shape", [(40, 8), (9, 6), (6, 6)])  # Cholesky path (tall), Householder path
def test_haar_columns_are_orthonormal_and_both_paths_agree(shape):
    rows, cols = shape
    q = haar_columns(rows, cols, torch.Generator().manual_seed(0), torch.device("cpu"))
    torch.testing.assert_close(q.T @ q, torch.eye(cols, dtype=torch.float64), rtol=0, atol=1e-12)
    gaussian = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    householder, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r))
    torch.testing.assert_close(q, householder * signs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(16, 4), (4, 4)])
def test_haar_columns_are_unbiased(shape):
    """Haar columns have mean 0 and E[q_ij^2] = 1/rows. Plain QR, without the sign fix, fails the first check
    by about 45 standard errors on these draws (its Q's entries lean to one sign)."""
    rows, cols = shape
    generator = torch.Generator().manual_seed(7)
    draws = torch.stack([haar_columns(rows, cols, generator, torch.device("cpu")) for _ in range(3000)])
    standard_error = (1.0 / rows / len(draws)) ** 0.5
    assert float(draws.mean(0).abs().max()) < 4.5 * standard_error
    torch.testing.assert_close((draws**2).mean(0), torch.full((rows, cols), 1.0 / rows, dtype=torch.float64),
                               rtol=0.15, atol=0)


def test_spectrum_matched_matrix_keeps_singular_values_of_a_wide_matrix():
    weight = torch.randn(5, 30, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 3.0, 30)
    new = spectrum_matched_matrix(weight, parameter_generator(0, "w"))
    assert new.shape == (5, 30)
    torch.testing.assert_close(torch.linalg.svdvals(new), torch.linalg.svdvals(weight.double()), rtol=1e-12, atol=0)


def test_each_parameter_has_its_own_stream():
    a = torch.rand(3, generator=parameter_generator(0, "model.layers.0.mlp.up_proj.weight"))
    b = torch.rand(3, generator=parameter_generator(0, "model.layers.1.mlp.up_proj.weight"))
    c = torch.rand(3, generator=parameter_generator(1, "model.layers.0.mlp.up_proj.weight"))
    again = torch.rand(3, generator=parameter_generator(0, "model.layers.0.mlp.up_proj.weight"))
    assert torch.equal(a, again) and not torch.equal(a, b) and not torch.equal(a, c)
