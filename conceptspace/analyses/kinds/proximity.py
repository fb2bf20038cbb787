"""P5: logit-lens rank correlation of proximity and log-probability across layers, frequency-controlled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses import geometry
from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
    LayerCurveFigures,
    RunContext,
    block_indices,
    is_int,
    is_layers,
    is_str,
    list_of,
    optional,
    param,
    register,
    subsample_rows,
    subset,
)
from conceptspace.concepts import load_concepts
from conceptspace.stats import ResultSet, is_sanity_check


@dataclass(frozen=True)
class ProximityParams:
    dataset: str = param(check=is_str, type_name="string")
    layers: Any = param("all", check=is_layers, type_name=LAYERS_TYPE)
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")
    methods: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")


@register
class ProximityAnalysis(LayerCurveFigures, Analysis):
    kind = "proximity"
    claims = ("P5",)
    Params = ProximityParams
    description = "logit-lens rank correlation of proximity and log-probability across layers, frequency-controlled"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "truth_is_universal/animal_class",
        "layers": [0, -1],
        "max_items": 12,
    }

    def run(self, context: RunContext, params: ProximityParams) -> AnalysisOutput:
        full = load_concepts(params.dataset)
        cs = subset(full, subsample_rows(full, params.max_items, context.seed))
        results = geometry.run_proximity_probability(
            context.model, cs.texts, layers=block_indices(context.model, params.layers), dataset=cs.name,
            twin=context.twin, n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap,
            seed=context.seed,
        )
        if params.methods is not None:
            results = ResultSet(r for r in results if r.method in params.methods or is_sanity_check(r))
        return AnalysisOutput(results)
