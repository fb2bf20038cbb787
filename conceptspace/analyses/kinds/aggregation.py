"""A6: does the context vector depend on which tokens are present more than on their order?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses._aggregation import aggregation_tests
from conceptspace.analyses._base import (
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_number,
    is_str,
    list_of,
    optional,
    param,
    register,
)
from conceptspace.concepts import load_concepts


@dataclass(frozen=True)
class AggregationParams:
    datasets: list[str] = param(check=list_of(is_str), type_name="list of dataset names")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")
    decay: float = param(0.7, check=is_number, type_name="number")
    penalty: float = param(1.0, check=is_number, type_name="number", doc="ridge strength")


@register
class AggregationAnalysis(Analysis):
    kind = "aggregation"
    claims = ("A6",)
    Params = AggregationParams
    description = ("order (permuted non-final tokens) vs content (frequency-matched replacements); "
                   "bag-of-embeddings R^2")
    smoke_params: ClassVar[dict[str, Any]] = {
        "datasets": ["truth_is_universal/animal_class"],
        "max_items": 24,
    }

    def run(self, context: RunContext, params: AggregationParams) -> AnalysisOutput:
        texts: list[str] = []
        groups: list[str] = []
        for name in params.datasets:
            cs = load_concepts(name)
            texts.extend(cs.texts)
            groups.extend(f"{name}:{g}" for g in cs.groups)
        order = np.random.default_rng(context.seed).permutation(len(texts))
        if params.max_items is not None:
            order = order[: params.max_items]
        order = np.sort(order)
        label = "+".join(n.split("/")[-1] for n in params.datasets)
        results, details = aggregation_tests(
            context.model, [texts[i] for i in order], twin=context.twin, dataset=label,
            groups=[groups[i] for i in order], decay=params.decay, penalty=params.penalty,
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
            claim=context.claim,
        )
        return AnalysisOutput(results, {"aggregation": details})
