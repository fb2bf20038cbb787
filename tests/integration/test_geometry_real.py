"""Geometry of concepts on the bundled SmolLM2-135M, with its untrained twin beside it (numbers in docs/RESULTS.md).

Kept small for CI (seeded subsamples, two sites, a few hundred permutations). Set CONCEPTSPACE_GEOMETRY_RESULTS
to a file path to save every result as JSON (how docs/RESULTS.md was filled).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conceptspace.analyses.geometry import (
    run_analogies,
    run_clustering,
    run_proximity_probability,
    run_relations,
    run_similarity,
    select_rows,
)
from conceptspace.concepts import load_concepts
from conceptspace.stats._results import ResultSet

SITES = ["embed", "layer.8"]
RELATIONS = ("family", "gram8-plural", "gram9-plural-verbs", "capital-common-countries")
_collected: list[ResultSet] = []


@pytest.fixture(scope="module")
def models() -> tuple[object, object]:
    from conceptspace.models import load_model

    model = load_model("smollm2-135m")
    return model, model.untrained(0)


@pytest.fixture(scope="module", autouse=True)
def _save_results() -> object:
    yield
    path = os.environ.get("CONCEPTSPACE_GEOMETRY_RESULTS")
    if path and _collected:
        total = ResultSet()
        for rs in _collected:
            total = total + rs
        Path(path).write_text(total.to_json(indent=1))


def _one(results: ResultSet, **fields: object) -> object:
    found = results.filter(**fields)
    assert len(found) == 1, (fields, [r.test_id for r in found])
    return found[0]


def test_word_classes_cluster_by_category(models: tuple) -> None:
    model, twin = models
    cs = load_concepts("function_vectors/categories")
    rows = select_rows(cs, classes=["animal", "color", "fruit", "verb"], max_per_class=15, seed=0)
    res = run_clustering(model, cs, SITES, rows=rows, methods=("kmeans",), twin=twin, n_permutations=200,
                         n_bootstrap=200)
    rsa = run_similarity(model, cs, SITES, rows=rows, twin=twin, n_permutations=200, n_bootstrap=100)
    _collected.extend([res, rsa])
    real = _one(res, layer=8, method="kmeans", statistic_name="ari", control=None)
    untrained = _one(res, layer=8, method="kmeans", statistic_name="ari", control="untrained")
    assert real.p_value <= 0.05 and real.ci_low > 0
    assert real.effect_size > untrained.effect_size + 0.2
    assert real.extra["tokenization"]["n_words"] == len(rows)
    assert _one(rsa, layer=8, control=None).statistic > _one(rsa, layer=8, control="untrained").statistic + 0.1


def test_analogies_and_relation_directions(models: tuple) -> None:
    model, twin = models
    full = load_concepts("google_analogy/all")
    keep = [i for i, r in enumerate(full.relations) if r in RELATIONS]
    cs = full.replace(data=full.data.select(keep), name="google_analogy/subset")
    analogies = run_analogies(model, cs, SITES, twin=twin, max_per_relation=60, n_permutations=200, n_bootstrap=200)
    relations = run_relations(
        model, cs, ["unembed", *SITES], twin=twin, orthogonal=[("family", "gram8-plural")], n_permutations=200,
        n_bootstrap=200,
    )
    _collected.extend([analogies, relations])
    for r in analogies:
        # paired tests: accuracy minus only-b; baselines: only-b accuracy
        assert -1.0 <= r.statistic <= 1.0 and 0.0 <= r.extra.get("accuracy", 0.0) <= 1.0
        assert "only_b_accuracy" in r.extra
        tok = r.extra["tokenization"]
        assert tok["single_token_leading_space"] + tok["single_token_no_space"] + tok["multi_token"] == tok["n_words"]
    plural = [
        r for r in relations
        if r.extra.get("relation") == "gram8-plural" and r.extra["site"] == "unembed"
        and r.statistic_name == "mean_loo_cosine" and r.extra["inner_product"] == "euclidean"
    ]
    by_control = {r.control: r for r in plural}
    assert by_control[None].statistic > by_control["untrained"].statistic
    assert len([r for r in relations if r.test_id.startswith("orthogonality")]) == 2 * 3 * 2


def test_proximity_and_probability(models: tuple) -> None:
    model, twin = models
    cs = load_concepts("trilemma_city_locations/true_false")
    rows = np.random.default_rng(0).choice(len(cs), 16, replace=False)
    texts = [cs.texts[i] for i in rows]
    last = model.n_layers - 1
    res = run_proximity_probability(
        model, texts, layers=[0, 15, last], dataset="trilemma_city_locations/true_false", twin=twin,
        n_permutations=500, n_bootstrap=500,
    )
    _collected.append(res)
    for r in res.filter(control="identity"):
        assert r.extra["sanity_check"] is True and r.statistic == pytest.approx(1.0, abs=1e-4)
    final = _one(res, layer=last, method="cosine_vs_logp", control=None)
    first = _one(res, layer=0, method="cosine_vs_logp", control=None)
    assert final.statistic > 0.5 and final.statistic > first.statistic
    assert final.extra["last_layer"] is True
