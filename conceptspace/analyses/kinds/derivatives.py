"""C5: TCAV-style directional derivatives: does moving along the concept direction raise the target score,
more often than along random directions? (model and twin)"""

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
from conceptspace.analyses.causal import directional_derivative_test
from conceptspace.analyses.probes import MassMeanProbe
from conceptspace.concepts import load_concepts
from conceptspace.stats import ResultSet


@dataclass(frozen=True)
class DerivativesParams:
    dataset: str = param(check=is_str, type_name="string", doc="a binary concept set (its mass-mean direction)")
    layer: int | float = param(check=is_layer, type_name=LAYER_TYPE)
    positive: list[str] = param(check=list_of(is_str), type_name="list of strings")
    negative: list[str] = param(check=list_of(is_str), type_name="list of strings")
    prompts: list[str] = param(check=list_of(is_str), type_name="list of strings")
    n_random: int = param(50, check=is_int, type_name="integer", doc="random directions (placebo CAVs)")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")


@register
class DerivativesAnalysis(Analysis):
    kind = "derivatives"
    claims = ("C5",)
    Params = DerivativesParams
    description = "TCAV-style directional derivatives of the target score along the concept vs random directions"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "vader_lexicon/polarity",
        "layer": 1,
        "max_items": 24,
        "positive": ["a", "e"],
        "negative": ["o", "u"],
        "prompts": ["The movie was", "Today I feel", "The food is", "My day was"],
        "n_random": 4,
    }

    def run(self, context: RunContext, params: DerivativesParams) -> AnalysisOutput:
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
            direction = MassMeanProbe().fit(X, cs.labels).direction_
            tcav = directional_derivative_test(
                m, direction, params.prompts, (params.positive, params.negative), site=site,
                n_random=params.n_random, n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=cs.name,
                claim=context.claim,
            )
            results = results + tcav.results
        return AnalysisOutput(results)
