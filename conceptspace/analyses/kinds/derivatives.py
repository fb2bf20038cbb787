"""C5: TCAV-style directional derivatives: does moving along the concept direction raise the target score,
more often than along random directions? (model and twin)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses._base import (
    CAUSAL_SMOKE_PARAMS,
    Analysis,
    AnalysisOutput,
    ConceptPromptParams,
    RunContext,
    concept_at_layer,
    is_int,
    param,
    register,
)
from conceptspace.analyses.causal import directional_derivative_test
from conceptspace.stats import ResultSet


@dataclass(frozen=True)
class DerivativesParams(ConceptPromptParams):
    n_random: int = param(50, check=is_int, type_name="integer", doc="random directions (placebo CAVs)")


@register
class DerivativesAnalysis(Analysis):
    kind = "derivatives"
    claims = ("C5",)
    Params = DerivativesParams
    description = "TCAV-style directional derivatives of the target score along the concept vs random directions"
    smoke_params: ClassVar[dict[str, Any]] = {**CAUSAL_SMOKE_PARAMS}

    def run(self, context: RunContext, params: DerivativesParams) -> AnalysisOutput:
        results = ResultSet()
        for at in concept_at_layer(context, params):
            tcav = directional_derivative_test(
                at.model, at.mass_mean_direction(), params.prompts, (params.positive, params.negative), site=at.site,
                n_random=params.n_random, n_bootstrap=context.n_bootstrap, seed=context.seed,
                dataset=at.concept_set.name, claim=context.claim,
            )
            results = results + tcav.results
        return AnalysisOutput(results)
