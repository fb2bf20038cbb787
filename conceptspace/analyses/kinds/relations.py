"""C2: do the difference vectors of one relation point the same way (Euclidean and causal inner product)?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses import geometry
from conceptspace.analyses._base import (
    SITES_TYPE,
    Analysis,
    AnalysisOutput,
    RunContext,
    is_sites,
    is_str,
    list_of,
    optional,
    param,
    register,
)
from conceptspace.concepts import load_concepts


@dataclass(frozen=True)
class RelationsParams:
    dataset: str = param(check=is_str, type_name="string")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    statistics: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    geometries: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")


@register
class RelationsAnalysis(Analysis):
    kind = "relations"
    claims = ("C2",)
    Params = RelationsParams
    description = "consistency of pair-difference directions per relation (Euclidean and causal inner product)"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "google_analogy/family",
        "sites": ["unembed"],
    }

    def run(self, context: RunContext, params: RelationsParams) -> AnalysisOutput:
        cs = load_concepts(params.dataset)
        results = geometry.run_relations(
            context.model, cs, params.sites, twin=context.twin, n_permutations=context.n_permutations,
            n_bootstrap=context.n_bootstrap, seed=context.seed,
        )
        return AnalysisOutput(results)
