"""C5: steer along the mass-mean direction of a binary concept set, against placebo directions (model and twin)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from conceptspace.analyses._base import (
    CAUSAL_SMOKE_PARAMS,
    Analysis,
    AnalysisOutput,
    ConceptPromptParams,
    RunContext,
    concept_at_layer,
    is_int,
    is_number,
    is_str,
    list_of,
    optional,
    param,
    register,
)
from conceptspace.analyses._figures import Figure, dose_response, to_png
from conceptspace.analyses.causal import steering_test
from conceptspace.analyses.causal._inputs import require_causal
from conceptspace.stats import ResultSet, TestResult


@dataclass(frozen=True)
class SteeringParams(ConceptPromptParams):
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    strengths: list[float] = param([-1.0, -0.5, 0.5, 1.0], check=list_of(is_number), type_name="list of numbers",
                                   doc="multiples of the site's activation scale added along the direction")
    n_random: int = param(20, check=is_int, type_name="integer")
    p_method: str = param("rank", check=is_str, type_name="string")


@register
class SteeringAnalysis(Analysis):
    kind = "steering"
    claims = ("C5",)
    Params = SteeringParams
    description = "steering dose-response along a mass-mean direction vs norm-matched random and orthogonal directions"
    renamed_params: ClassVar[dict[str, str]] = {"alphas": "strengths"}
    smoke_params: ClassVar[dict[str, Any]] = {**CAUSAL_SMOKE_PARAMS, "strengths": [-1.0, 1.0]}

    def run(self, context: RunContext, params: SteeringParams) -> AnalysisOutput:
        require_causal(context.model, "steering")  # before extracting anything: an encoder has no next token
        results = ResultSet()
        curves: dict[str, pd.DataFrame] = {}  # legend label -> SteeringResult.dose_response()
        for at in concept_at_layer(context, params):
            steer = steering_test(
                at.model, at.mass_mean_direction(), params.prompts, (params.positive, params.negative), site=at.site,
                off_target_prompts=params.off_target_prompts, strengths=params.strengths, n_random=params.n_random,
                n_orthogonal=params.n_random, n_bootstrap=context.n_bootstrap, seed=context.seed,
                dataset=at.concept_set.name, claim=context.claim, p_method=params.p_method,
            )
            results = results + steer.results
            curves[at.label] = steer.dose_response()
        return AnalysisOutput(results, {"dose_response": curves})

    def figures(self, name: str, title: str, results: Sequence[TestResult],
                figure_data: Mapping[str, Any]) -> list[Figure]:
        out = super().figures(name, title, results, figure_data)
        curves = figure_data.get("dose_response")
        if curves:
            png = to_png(dose_response(curves, title=f"{title}: dose-response"))
            out.append(Figure(f"{name}-dose-response.png", f"{name}: steering dose-response (95% CI band) vs the "
                              "placebo band of random directions (hatched; dashed: their median)", png))
        return out
