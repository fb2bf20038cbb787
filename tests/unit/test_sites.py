"""The standard site vocabulary maps three architectures and rejects what it cannot map, with reasons."""

from __future__ import annotations

import pytest
import torch

from conceptspace.errors import InvalidInputError, UnsupportedArchitectureError
from conceptspace.models._sites import discover_sites, module_path, parse_site, parse_sites


@pytest.mark.parametrize(
    ("arch", "embed", "layers", "final_norm"),
    [
        ("llama", "model.embed_tokens", "model.layers", "model.norm"),
        ("gpt2", "transformer.wte", "transformer.h", "transformer.ln_f"),
        ("bert", "embeddings.word_embeddings", "encoder.layer", None),
    ],
)
def test_discover_sites_per_architecture(tiny_models, arch, embed, layers, final_norm):
    site_map = tiny_models[arch].site_map
    assert (site_map.embed, site_map.layers, site_map.final_norm, site_map.n_layers) == (embed, layers, final_norm, 3)
    expected = ["embed", "layer.0", "layer.1", "layer.2"] + (["final_norm"] if final_norm else [])
    assert list(site_map.available()) == expected


def test_unsupported_architecture_names_missing_sites():
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Linear(2, 2)

    with pytest.raises(UnsupportedArchitectureError) as info:
        discover_sites(Odd())
    message = str(info.value)
    assert "embed, layers" in message and "stem" in message


def test_parse_site_accepts_ints_strings_and_negative_indices(tiny_models):
    site_map = tiny_models["llama"].site_map
    assert parse_site(0, site_map) == "layer.0"
    assert parse_site(-1, site_map) == "layer.2"
    assert parse_site("layer.-3", site_map) == "layer.0"
    assert parse_site(" 1 ", site_map) == "layer.1"
    assert parse_sites(["final_norm", 2, "embed", "layer.2"], site_map) == ("embed", "layer.2", "final_norm")
    assert module_path("layer.1", site_map) == "model.layers.1"


@pytest.mark.parametrize("bad", [3, -4, "layer.7", "layers.1", True, 1.5])
def test_parse_site_out_of_range_or_unknown_explains(tiny_models, bad):
    with pytest.raises(InvalidInputError) as info:
        parse_site(bad, tiny_models["llama"].site_map)
    assert "0..2" in str(info.value) or "site" in str(info.value)


def test_layer_out_of_range_states_valid_range(tiny_models):
    with pytest.raises(InvalidInputError, match=r"valid indices are 0\.\.2"):
        parse_site(5, tiny_models["gpt2"].site_map)


def test_encoder_has_no_final_norm_and_says_what_to_use(tiny_models):
    with pytest.raises(InvalidInputError, match=r"layer\.2"):
        parse_site("final_norm", tiny_models["bert"].site_map)
