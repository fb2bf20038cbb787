"""C5: LEACE erasure of a binary concept at one layer: the probe falls to chance; do predictions move more
than under erasure of random subspaces? (model and twin)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.activations import extract
from conceptspace.analyses._base import (
    LAYER_TYPE,
    Analysis,
    AnalysisOutput,
    RunContext,
    block_indices,
    is_int,
    is_layer,
    is_str,
    list_of,
    optional,
    param,
    register,
    subsample_rows,
    subset,
)
from conceptspace.analyses.causal import erasure_test
from conceptspace.concepts import load_concepts
from conceptspace.stats import ResultSet


@dataclass(frozen=True)
class ErasureParams:
    dataset: str = param(check=is_str, type_name="string", doc="a binary concept set")
    layer: int | float = param(check=is_layer, type_name=LAYER_TYPE)
    positive: list[str] = param(check=list_of(is_str), type_name="list of strings")
    negative: list[str] = param(check=list_of(is_str), type_name="list of strings")
    prompts: list[str] = param(check=list_of(is_str), type_name="list of strings")
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    n_random: int = param(20, check=is_int, type_name="integer", doc="random subspaces erased as placebos")
    n_splits: int = param(5, check=is_int, type_name="integer")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")


@register
class ErasureAnalysis(Analysis):
    kind = "erasure"
    claims = ("C5",)
    Params = ErasureParams
    description = "LEACE erasure: probe accuracy before/after, prediction change vs erasure of random subspaces"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "vader_lexicon/polarity",
        "layer": 1,
        "max_items": 24,
        "positive": ["a", "e"],
        "negative": ["o", "u"],
        "prompts": ["The movie was", "Today I feel", "The food is", "My day was"],
        "n_random": 4,
        "n_splits": 3,
    }

    def run(self, context: RunContext, params: ErasureParams) -> AnalysisOutput:
        full = load_concepts(params.dataset)
        cs = subset(full, subsample_rows(full, params.max_items, context.seed))
        site = f"layer.{block_indices(context.model, [params.layer])[0]}"
        spans = cs.spans
        position = "span:mean" if spans is not None else "last"
        results = ResultSet()
        for m in (context.model, context.twin):
            if m is None:
                continue
            X = np.asarray(extract(m, cs.texts, sites=[site], position=position, spans=spans,
                                   progress=context.progress)[site], dtype=np.float64)
            erased = erasure_test(
                m, X, cs.labels, cs.groups, site=site, prompts=params.prompts,
                targets=(params.positive, params.negative), off_target_prompts=params.off_target_prompts,
                n_random=params.n_random, n_splits=params.n_splits, n_permutations=context.n_permutations,
                n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=cs.name, claim=context.claim,
            )
            results = results + erased.results
        return AnalysisOutput(results)
