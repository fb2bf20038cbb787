"""C3: analogy accuracy by vector offsets (3CosAdd/3CosMul) against the only-b baseline."""

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
    param,
    register,
)
from conceptspace.concepts import load_concepts


@dataclass(frozen=True)
class AnalogiesParams:
    dataset: str = param(check=is_str, type_name="string")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    max_per_relation: int = param(50, check=is_int, type_name="integer")
    methods: list[str] = param(["3cosadd"], check=list_of(is_str), type_name="list of strings")


@register
class AnalogiesAnalysis(Analysis):
    kind = "analogies"
    claims = ("C3",)
    Params = AnalogiesParams
    description = "analogy accuracy (3CosAdd/3CosMul) against the only-b baseline"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "google_analogy/family",
        "sites": ["unembed"],
        "max_per_relation": 6,
    }

    def run(self, context: RunContext, params: AnalogiesParams) -> AnalysisOutput:
        cs = load_concepts(params.dataset)
        results = geometry.run_analogies(
            context.model, cs, params.sites, max_per_relation=params.max_per_relation, methods=params.methods,
            twin=context.twin, n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap,
            seed=context.seed,
        )
        return AnalysisOutput(results)
