"""Depth-relative layers: the fraction rule on both bundled models' depths, its edges and errors, site strings,
and the bundled concept_space suite still reading the blocks its committed reference report was run at."""

from __future__ import annotations

import math

import pytest

from conceptspace.depth import (
    block_at,
    block_depth,
    depth_site,
    is_layers,
    is_site_spec,
    resolve_layer,
    resolve_layers,
    site_depth,
    site_fraction,
)
from conceptspace.errors import InvalidInputError
from conceptspace.models._sites import SiteMap, parse_site, parse_sites
from conceptspace.resources import probes_dir
from conceptspace.suite import load_suite

SMOLLM2, MINILM = 30, 6  # blocks of the two bundled models


@pytest.mark.parametrize(
    ("fraction", "smollm2", "minilm"),
    [(0.0, 0, 0), (0.1, 3, 0), (0.25, 7, 1), (0.3, 9, 1), (0.5, 15, 3), (0.7, 21, 4), (0.75, 22, 4),
     (0.9, 27, 5), (0.99, 29, 5), (1.0, 29, 5)],
)
def test_fractions_on_both_bundled_depths(fraction, smollm2, minilm):
    assert block_at(fraction, SMOLLM2) == smollm2
    assert block_at(fraction, MINILM) == minilm


def test_fraction_is_read_as_the_decimal_written():
    # binary floats land just below the product: a naive floor(0.7 * 90) is block 62, not 63
    assert math.floor(0.7 * 90) == 62 and math.floor(0.29 * 100) == 28
    assert block_at(0.7, 90) == 63 and block_at(0.29, 100) == 29


@pytest.mark.parametrize("n_layers", range(1, 65))
def test_reported_depth_selects_its_block_again(n_layers):
    for block in range(n_layers):
        depth = block_depth(block, n_layers)
        assert 0.0 <= depth <= 1.0
        assert block_at(depth, n_layers) == block
    assert block_depth(0, n_layers) == 0.0
    if n_layers > 1:
        assert block_depth(n_layers - 1, n_layers) == 1.0


@pytest.mark.parametrize("bad", [-0.1, 1.0000001, 1.5, 15.0, float("nan"), float("inf")])
def test_out_of_range_fraction_is_a_clear_error(bad):
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        resolve_layer(bad, SMOLLM2)
    assert not is_layers([bad])


def test_a_whole_float_outside_the_range_suggests_the_int():
    with pytest.raises(InvalidInputError, match="Write 15 for block 15"):
        resolve_layer(15.0, SMOLLM2)


def test_ints_are_block_indices_negative_from_the_end():
    assert resolve_layer(1, SMOLLM2) == 1 and resolve_layer(1.0, SMOLLM2) == 29
    assert resolve_layer(-1, MINILM) == 5 and resolve_layer(-6, MINILM) == 0
    with pytest.raises(InvalidInputError, match=r"layer 15 does not exist in minilm-l6 \(blocks 0\.\.5.*0\.5 is the "):
        resolve_layer(15, MINILM, model="minilm-l6")
    with pytest.raises(InvalidInputError, match="neither a block index"):
        resolve_layer(True, MINILM)


def test_layer_lists_all_and_duplicates():
    assert resolve_layers("all", MINILM) == [0, 1, 2, 3, 4, 5]
    assert resolve_layers([0.5, 3, -1, 1.0, 0.0], MINILM) == [3, 5, 0]  # order kept, each block once
    with pytest.raises(InvalidInputError, match="no layers"):
        resolve_layers([], MINILM)
    with pytest.raises(InvalidInputError, match="'all' or a list"):
        resolve_layers("some", MINILM)
    assert is_layers("all") and is_layers([0.5, 3]) and not is_layers([]) and not is_layers(["3"])


def test_depth_sites():
    assert site_fraction("layer@0.5") == 0.5 and site_fraction("layer.5") is None
    assert depth_site("layer@0.5", SMOLLM2) == "layer.15" and depth_site("embed", SMOLLM2) == "embed"
    for ambiguous in ("layer@1", "layer@0"):
        with pytest.raises(InvalidInputError, match="decimal point"):
            site_fraction(ambiguous)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        site_fraction("layer@1.5")
    with pytest.raises(InvalidInputError, match="not a number"):
        site_fraction("layer@0.x")
    assert is_site_spec("layer@1.0") and is_site_spec("unembed") and not is_site_spec("layer@1")
    assert site_depth("layer.15", SMOLLM2) == pytest.approx(15 / 29)
    assert site_depth("layer.-1", SMOLLM2) == 1.0
    assert site_depth("embed", SMOLLM2) is None and site_depth("final_norm", SMOLLM2) is None


def test_model_sites_accept_fractions():
    site_map = SiteMap(embed="embed", layers="layers", final_norm=None, n_layers=MINILM)
    assert parse_site("layer@0.5", site_map) == "layer.3"
    assert parse_site(0.5, site_map) == "layer.3"
    assert parse_site("0.5", site_map) == "layer.3"  # the command line's string
    assert parse_site(1.0, site_map) == "layer.5" and parse_site(1, site_map) == "layer.1"
    assert parse_sites(["layer@1.0", "embed", "layer@0.9"], site_map) == ("embed", "layer.5")
    with pytest.raises(InvalidInputError, match="fraction of depth in"):
        parse_site(2.5, site_map)


# ---------------------------------------------------------------- the README main job keeps its blocks
REFERENCE_BLOCKS = {  # concept_space.toml's layers as committed before depth-relative layers (SmolLM2, 30 blocks)
    "c1_categories": ({"sites": ["unembed", "layer.15"]}, {"sites": ["unembed"]}),
    "c2_relations": ({"sites": ["unembed", "layer.15"]}, {"sites": ["unembed"]}),
    "c3_analogies": ({"sites": ["unembed"]}, {"sites": ["unembed"]}),  # the vocabulary protocol: unembedding only
    "c3_lre": ({"sites": ["unembed"]}, {"sites": ["unembed"]}),  # LRE analogies, added with issue 14's C3
    "c4_truth": ({"layers": [3, 9, 15, 21, 27]}, {"layers": [9, 15, 21]}),
    "c4_sentiment": ({"layers": [3, 9, 15, 21, 27]}, {"layers": [9, 15, 21]}),
    "c4_latitude": ({"layers": [3, 9, 15, 21, 27]}, {"layers": [9, 15, 21]}),
    "c5_sentiment_steering": ({"layer": 15}, {}),
    "c5_sentiment_erasure": ({"layer": 15}, {}),  # C5's secondary evidence (issue 14), the steering test's layer
    "c5_sentiment_derivatives": ({"layer": 15}, {}),
    "p5_logit_lens": ({"layers": [3, 9, 15, 21, 27, 29]}, {"layers": [15, 29]}),
    "p5_corpus_pmi": ({"sites": ["unembed"]}, {}),  # token rows only (added with the PMI test of P5)
    "a6_aggregation": ({}, {}),
    "n2_context_narrows": ({}, {}),
    "n3_function_vectors": ({"layers": [9, 15]}, {"layers": [9]}),
    "n5_self_mapping": ({"layers": [15, 29]}, {"layers": [29]}),  # added with depth-relative layers
    "n7_filtering": ({"layers": [3, 15, 27]}, {"layers": [15]}),
    "n6_attention_pattern": ({"layers": [3, 15, 27]}, {"layers": [15]}),
    "n6b_composition": ({}, {}),  # reads next-token distributions only (unembed)
}


def _on_smollm2(params: dict) -> dict:
    site_map = SiteMap(embed="embed", layers="layers", final_norm="norm", n_layers=SMOLLM2)
    out = {}
    if "sites" in params:
        out["sites"] = [s if s == "unembed" else parse_site(s, site_map) for s in params["sites"]]
    if "layers" in params:
        out["layers"] = resolve_layers(params["layers"], SMOLLM2)
    if "layer" in params:
        out["layer"] = resolve_layer(params["layer"], SMOLLM2)
    return out


def test_concept_space_reads_the_reference_blocks_on_smollm2():
    suite = load_suite(probes_dir() / "concept_space.toml")
    assert {a.id for a in suite.analyses} == set(REFERENCE_BLOCKS)
    for analysis in suite.analyses:
        full, quick = REFERENCE_BLOCKS[analysis.id]
        assert _on_smollm2(analysis.resolved(False, None)) == full, analysis.id
        assert _on_smollm2(analysis.resolved(True, None)) == {**full, **quick}, analysis.id
        written = [*analysis.params.get("layers", []), analysis.params.get("layer", 0.0)]
        assert all(isinstance(x, float) for x in written), f"{analysis.id} names a block, not a depth: {written}"


@pytest.mark.parametrize("path", sorted(probes_dir().glob("*.toml")), ids=lambda p: p.name)
def test_every_bundled_suite_fits_both_bundled_depths(path):
    """No bundled suite names an absolute block any longer: each layer resolves on 6 and on 30 blocks."""
    suite = load_suite(path)
    for analysis in suite.analyses:
        for quick in (False, True):
            params = analysis.resolved(quick, None)
            for n_layers in (MINILM, SMOLLM2):
                site_map = SiteMap(embed="embed", layers="layers", final_norm="norm", n_layers=n_layers)
                if "layers" in params:
                    assert all(isinstance(x, float) for x in params["layers"]), analysis.id
                    resolve_layers(params["layers"], n_layers)
                if "layer" in params:
                    assert isinstance(params["layer"], float), analysis.id
                for site in params.get("sites", []):
                    assert not site.startswith("layer."), (analysis.id, site)
                    if site != "unembed":
                        parse_site(site, site_map)
