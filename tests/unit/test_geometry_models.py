"""Geometry on tiny random models: logit-lens identity, the twin beside the model, spans and token counts."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.activations._extract import extract
from conceptspace.analyses.geometry import (
    concept_vectors,
    run_analogies,
    run_clustering,
    run_proximity_probability,
    run_relations,
    run_similarity,
    select_rows,
)
from conceptspace.analyses.geometry._logit_lens import _final_norm, token_zipf
from conceptspace.concepts import load_concepts
from conceptspace.errors import InvalidInputError

CONTEXTS = ["The capital of France is", "Dogs bark and cats", "The quick brown fox", "A queen and a king"]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_logit_lens_identity_and_twin(tiny_models: dict, arch: str) -> None:
    model = tiny_models[arch]
    res = run_proximity_probability(model, CONTEXTS, layers=[0, model.n_layers - 1], n_permutations=50, n_bootstrap=50)
    identity = res.filter(control="identity")
    assert len(identity) == 2  # model and twin
    for r in identity:
        assert r.extra["sanity_check"] is True and r.p_value == 1.0
        assert r.statistic == pytest.approx(1.0, abs=1e-6)
    evidence = res.filter(control=None)
    assert {r.method for r in evidence} == {"cosine_vs_logp", "cosine_vs_logp_partial_frequency"}
    assert len(res.filter(control="untrained")) == len(evidence)
    for r in res:
        assert 0 < r.p_value <= 1 and np.isfinite(r.statistic)
    again = run_proximity_probability(model, CONTEXTS, layers=[0, model.n_layers - 1], n_permutations=50,
                                      n_bootstrap=50)
    assert again == res


def test_logit_lens_at_last_layer_equals_final_norm_site(tiny_models: dict) -> None:
    model = tiny_models["llama"]
    last = f"layer.{model.n_layers - 1}"
    acts = extract(model, CONTEXTS, sites=[last, "final_norm"], position="last", progress=False)
    lens = _final_norm(model, np.asarray(acts[last]))
    assert np.allclose(lens, acts["final_norm"], atol=1e-5)
    assert token_zipf(model.tokenizer, 50).shape == (50,)


def test_word_set_runners_record_tokenization_and_twin(tiny_models: dict) -> None:
    model = tiny_models["llama"]
    cs = load_concepts("function_vectors/categories")
    rows = select_rows(cs, classes=["animal", "color", "fruit"], max_per_class=6, seed=0)
    res = run_clustering(model, cs, ["embed", "layer.1"], rows=rows, methods=("kmeans",), n_permutations=30,
                         n_bootstrap=30)
    assert {r.control for r in res} == {None, "untrained"}
    tok = res[0].extra["tokenization"]
    assert tok["n_words"] == len(rows)
    assert tok["span_single_token_in_context"] + tok["span_multi_token_in_context"] == len(rows)
    rsa = run_similarity(model, cs, ["unembed"], rows=rows, n_permutations=30, n_bootstrap=20, twin=False)
    assert len(rsa) == 1 and rsa[0].layer is None and rsa[0].extra["site"] == "unembed"


def test_pairs_runners(tiny_models: dict) -> None:
    model = tiny_models["gpt2"]
    cs = load_concepts("google_analogy/family")
    res = run_analogies(model, cs, ["layer.0"], n_permutations=30, n_bootstrap=30)
    assert len(res) == 2 * 2 + 1  # two methods, model + twin, one relation; the model's only-b baseline
    assert [r.extra["baseline"] for r in res if r.control == "only_b"] == [True]
    assert all("only_b_accuracy" in r.extra and r.extra["tokenization"]["n_words"] == 2 * len(cs) for r in res)
    rel = run_relations(model, cs, ["embed"], n_permutations=20, n_bootstrap=20, twin=False)
    assert {r.extra["inner_product"] for r in rel} == {"euclidean", "causal"}


def test_span_vectors_average_the_word_pieces(tiny_models: dict) -> None:
    model = tiny_models["llama"]
    cs = load_concepts("google_analogy/family")
    X = concept_vectors(model, cs, "embed", rows=[0])
    text, (s, e) = cs.texts[0], cs.spans[0]
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [i for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True) if b > s and a < e]
    E = model.embedding_matrix().float().numpy()
    assert np.allclose(X[0], E[ids].mean(axis=0), atol=1e-5)
    with pytest.raises(InvalidInputError):
        concept_vectors(model, cs, "embed", side="c")
