"""C5: steer along the mass-mean direction of a binary concept set, against placebo directions (model and twin)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from conceptspace.activations import extract
from conceptspace.analyses._base import (
    LAYER_TYPE,
    Analysis,
    AnalysisOutput,
    RunContext,
    block_indices,
    is_int,
    is_layer,
    is_number,
    is_str,
    list_of,
    optional,
    param,
    register,
    subsample_rows,
    subset,
)
from conceptspace.analyses._figures import Figure, dose_response, to_png
from conceptspace.analyses.causal import steering_test
from conceptspace.analyses.causal._inputs import require_causal
from conceptspace.analyses.probes import MassMeanProbe
from conceptspace.concepts import load_concepts
from conceptspace.stats import ResultSet, TestResult


@dataclass(frozen=True)
class SteeringParams:
    dataset: str = param(check=is_str, type_name="string")
    layer: int | float = param(check=is_layer, type_name=LAYER_TYPE)
    positive: list[str] = param(check=list_of(is_str), type_name="list of strings")
    negative: list[str] = param(check=list_of(is_str), type_name="list of strings")
    prompts: list[str] = param(check=list_of(is_str), type_name="list of strings")
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    strengths: list[float] = param([-1.0, -0.5, 0.5, 1.0], check=list_of(is_number), type_name="list of numbers",
                                   doc="multiples of the site's activation scale added along the direction")
    n_random: int = param(20, check=is_int, type_name="integer")
    p_method: str = param("rank", check=is_str, type_name="string")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")


@register
class SteeringAnalysis(Analysis):
    kind = "steering"
    claims = ("C5",)
    Params = SteeringParams
    description = "steering dose-response along a mass-mean direction vs norm-matched random and orthogonal directions"
    renamed_params: ClassVar[dict[str, str]] = {"alphas": "strengths"}
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "vader_lexicon/polarity",
        "layer": 1,
        "max_items": 24,
        "positive": ["a", "e"],
        "negative": ["o", "u"],
        "prompts": ["The movie was", "Today I feel", "The food is", "My day was"],
        "strengths": [-1.0, 1.0],
        "n_random": 4,
    }

    def run(self, context: RunContext, params: SteeringParams) -> AnalysisOutput:
        require_causal(context.model, "steering")  # before extracting anything: an encoder has no next token
        full = load_concepts(params.dataset)
        cs = subset(full, subsample_rows(full, params.max_items, context.seed))
        site = f"layer.{block_indices(context.model, [params.layer])[0]}"
        spans = cs.spans
        position = "span:mean" if spans is not None else "last"
        results = ResultSet()
        curves: dict[str, pd.DataFrame] = {}  # legend label -> SteeringResult.dose_response()
        for m, label in ((context.model, "model"), (context.twin, "untrained twin")):
            if m is None:
                continue
            X = np.asarray(extract(m, cs.texts, sites=[site], position=position, spans=spans,
                                   progress=context.progress)[site], dtype=np.float64)
            direction = MassMeanProbe().fit(X, cs.labels).direction_
            steer = steering_test(
                m, direction, params.prompts, (params.positive, params.negative), site=site,
                off_target_prompts=params.off_target_prompts, strengths=params.strengths, n_random=params.n_random,
                n_orthogonal=params.n_random, n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=cs.name,
                claim=context.claim, p_method=params.p_method,
            )
            results = results + steer.results
            curves[label] = steer.dose_response()
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
