"""C1: clustering of word vectors against their category labels, with a label-permutation null and the twin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses import geometry
from conceptspace.analyses._base import (
    SITES_TYPE,
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_sites,
    is_str,
    list_of,
    optional,
    param,
    register,
)
from conceptspace.concepts import load_concepts


@dataclass(frozen=True)
class ClusteringParams:
    dataset: str = param(check=is_str, type_name="string")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    classes: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    max_per_class: int | None = param(None, check=optional(is_int), type_name="integer")
    methods: list[str] = param(["kmeans"], check=list_of(is_str), type_name="list of strings")
    metrics: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")


@register
class ClusteringAnalysis(Analysis):
    kind = "clustering"
    claims = ("C1",)
    Params = ClusteringParams
    description = "clustering of word vectors against their category labels (permutation null)"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "function_vectors/categories",
        "sites": ["unembed", "layer.1"],
        "max_per_class": 4,
    }

    def run(self, context: RunContext, params: ClusteringParams) -> AnalysisOutput:
        cs = load_concepts(params.dataset)
        rows = geometry.select_rows(cs, classes=params.classes, max_per_class=params.max_per_class, seed=context.seed)
        results = geometry.run_clustering(
            context.model, cs, params.sites, rows=rows.tolist(), methods=params.methods, twin=context.twin,
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
        )
        return AnalysisOutput(results)
