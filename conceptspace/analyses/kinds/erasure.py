"""C5: LEACE erasure of a binary concept at one layer: the probe falls to chance; do predictions move more
than under erasure of random subspaces? (model and twin)"""

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
    is_str,
    list_of,
    optional,
    param,
    register,
)
from conceptspace.analyses.causal import erasure_test
from conceptspace.stats import ResultSet


@dataclass(frozen=True)
class ErasureParams(ConceptPromptParams):
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    n_random: int = param(20, check=is_int, type_name="integer", doc="random subspaces erased as placebos")
    n_splits: int = param(5, check=is_int, type_name="integer")


@register
class ErasureAnalysis(Analysis):
    kind = "erasure"
    claims = ("C5",)
    Params = ErasureParams
    description = "LEACE erasure: probe accuracy before/after, prediction change vs erasure of random subspaces"
    smoke_params: ClassVar[dict[str, Any]] = {**CAUSAL_SMOKE_PARAMS, "n_splits": 3}

    def run(self, context: RunContext, params: ErasureParams) -> AnalysisOutput:
        results = ResultSet()
        for at in concept_at_layer(context, params):
            cs = at.concept_set
            erased = erasure_test(
                at.model, at.X, cs.labels, cs.groups, site=at.site, prompts=params.prompts,
                targets=(params.positive, params.negative), off_target_prompts=params.off_target_prompts,
                n_random=params.n_random, n_splits=params.n_splits, n_permutations=context.n_permutations,
                n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=cs.name, claim=context.claim,
            )
            results = results + erased.results
        return AnalysisOutput(results)
