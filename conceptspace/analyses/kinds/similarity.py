"""C1: representational similarity: do words of one category have more similar vectors (RSA, Mantel test)?

Primary test: the RSA at the primary site (``context.primary_site``, default the first site); other sites are
exploratory; the untrained twins (one test, mean over seeds) and the spectrum-matched twin are its controls.
In a ``--null`` run the labels are permuted within groups first.
"""

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
    mark_roles,
    optional,
    param,
    register,
)
from conceptspace.concepts import load_concepts, null_labels


@dataclass(frozen=True)
class SimilarityParams:
    dataset: str = param(check=is_str, type_name="string", doc="a categorical word set")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    max_per_class: int | None = param(None, check=optional(is_int), type_name="integer")


@register
class SimilarityAnalysis(Analysis):
    kind = "similarity"
    claims = ("C1",)
    Params = SimilarityParams
    description = "RSA of word-vector cosines against shared-category similarity (Mantel permutation test)"
    smoke_params: ClassVar[dict[str, Any]] = {"dataset": "function_vectors/categories", "max_per_class": 4}

    def run(self, context: RunContext, params: SimilarityParams) -> AnalysisOutput:
        cs = load_concepts(params.dataset)
        if context.null_seed is not None:
            cs = null_labels(cs, context.null_seed)
        rows = geometry.select_rows(cs, max_per_class=params.max_per_class, seed=context.seed)
        out = geometry.similarity_output(
            context.model, cs, params.sites, rows=rows.tolist(),
            controls=[(c.name, c.seed, c.model) for c in context.control_models()],
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
            plan=context.sequential_plan(), primary_site=context.primary_site,
        )
        site = geometry.resolve_primary_site(context.model, params.sites, context.primary_site)
        results = mark_roles(out.results, lambda r: r.site == site)
        return AnalysisOutput(results, replicates=geometry.primary_replicates(results, out.replicates))
