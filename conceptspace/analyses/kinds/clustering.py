"""C1: clustering of word vectors against their category labels, with a label-permutation null and controls.

Primary test: the first method's ARI at the primary site (``context.primary_site``, default the first site);
every other site and metric is exploratory; the untrained twins (one test, mean over seeds) and the
spectrum-matched twin are its controls. In a ``--null`` run the labels are permuted within groups first.
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
    list_of,
    mark_roles,
    optional,
    param,
    register,
    subset,
)
from conceptspace.concepts import ConceptSet, load_concepts, null_labels

#: the statistic of the primary test
PRIMARY_METRIC = "ari"


@dataclass(frozen=True)
class ClusteringParams:
    dataset: str = param(check=is_str, type_name="string")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    classes: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    max_per_class: int | None = param(None, check=optional(is_int), type_name="integer")
    methods: list[str] = param(["kmeans"], check=list_of(is_str), type_name="list of strings")
    match_frequency: bool = param(False, check=lambda v: isinstance(v, bool), type_name="true or false",
                                  doc="keep a subset whose classes share one word-frequency histogram (wordfreq)")


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
        full = load_concepts(params.dataset)
        rows = geometry.select_rows(full, classes=params.classes, max_per_class=params.max_per_class,
                                    match_frequency=params.match_frequency, seed=context.seed)
        cs = _null_or_real(subset(full, rows), context.null_seed)
        out = geometry.clustering_output(
            context.model, cs, params.sites, methods=params.methods,
            controls=[(c.name, c.seed, c.model) for c in context.control_models()],
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
            plan=context.sequential_plan(), primary_site=context.primary_site,
        )
        site = geometry.resolve_primary_site(context.model, params.sites, context.primary_site)
        results = mark_roles(out.results, lambda r: (r.site, r.method, r.statistic_name)
                             == (site, params.methods[0], PRIMARY_METRIC))
        return AnalysisOutput(results, replicates=geometry.primary_replicates(results, out.replicates))


def _null_or_real(concept_set: ConceptSet, null_seed: int | None) -> ConceptSet:
    """The selected rows, with their labels permuted in a ``--null`` run. Permuted after the selection: the
    selection drops words listed under several classes, whose shared group would otherwise make
    ``null_labels`` permute only within those few groups and leave every other label in place."""
    return concept_set if null_seed is None else null_labels(concept_set, null_seed)
