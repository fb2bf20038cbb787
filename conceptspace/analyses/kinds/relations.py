"""C2: do the difference vectors of one relation point the same way (Euclidean and causal inner product)?

Primary test: the Euclidean mean pairwise cosine of the pair differences (pooled over relations when there are
several) at the primary site (``context.primary_site``, default the first site), against the re-pairing null;
the causal inner product, the LOO statistic, single relations and other sites are exploratory; the untrained
twins (one test, mean over seeds) and the spectrum-matched twin are its controls. In a ``--null`` run the b
words are re-paired among the a words of each relation first.

Multi-token words apart: a multi-token word's vector is an average of its pieces (the unembedding rows, or the
span mean at a layer), which is not the word's own direction. Every statistic is therefore also reported on the
pairs whose two words are single tokens (`` w`` one token) and, separately, on the pairs with a multi-token word
(``extra["words"]``: ``"single_token"`` / ``"multi_token"``; ``"all"`` for the primary and its siblings); both are
exploratory. ``relations`` and ``min_distinct_b`` choose the relations of a large set, as in the analogies kind.
``park_datasets`` adds Park et al.'s protocol (:mod:`~conceptspace.analyses.kinds.park_directions`) on those sets
as exploratory rows with their twin controls (a fixed ``n_permutations`` draws; they never join C2's family).
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
    is_number,
    is_sites,
    is_str,
    list_of,
    mark_roles,
    optional,
    param,
    register,
)
from conceptspace.analyses.geometry._relations import ALL_WORDS, POOLED
from conceptspace.analyses.geometry._run_park import park_output
from conceptspace.concepts import load_concepts
from conceptspace.concepts._pairs import select_relations
from conceptspace.stats._results import ResultSet

#: the method (statistic and inner product) of the primary test
PRIMARY_METHOD = "mean_pairwise_cosine_euclidean"


@dataclass(frozen=True)
class RelationsParams:
    dataset: str = param(check=is_str, type_name="string")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    relations: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings",
                                        doc="the relations to test (default: every relation of the set)")
    min_distinct_b: float = param(0.0, check=lambda v: is_number(v) and 0 <= v <= 1, type_name="number in [0, 1]",
                                  doc="keep relations whose b words are distinct for this fraction of pairs")
    park_datasets: list[str] = param([], check=list_of(is_str), type_name="list of strings",
                                     doc="pairs sets also run through Park et al.'s protocol (kind "
                                         "park_directions; exploratory rows, never the primary)")


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
        cs = select_relations(load_concepts(params.dataset), relations=params.relations,
                              min_distinct_b=params.min_distinct_b)
        out = geometry.relations_output(
            context.model, cs, params.sites,
            controls=[(c.name, c.seed, c.model) for c in context.control_models()],
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
            plan=context.sequential_plan(), primary_site=context.primary_site, null_seed=context.null_seed,
        )
        site = geometry.resolve_primary_site(context.model, params.sites, context.primary_site)
        relation = _primary_relation(out.results)
        park = [r for name in params.park_datasets for r in park_output(
            context.model, load_concepts(name), controls=[(c.name, c.seed, c.model) for c in context.control_models()],
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
            null_seed=context.null_seed).results]
        results = mark_roles(ResultSet([*out.results, *park]),
                             lambda r: r.key.test == "relation" and (r.site, r.method, r.extra.get("relation"),
                                                                     r.extra.get("words", ALL_WORDS))
                             == (site, PRIMARY_METHOD, relation, ALL_WORDS))
        return AnalysisOutput(results, replicates=geometry.primary_replicates(results, out.replicates))


def _primary_relation(results: Any) -> str | None:
    """The pooled row when the set has several relations, else its only relation."""
    relations = {r.extra.get("relation") for r in results
                 if r.method == PRIMARY_METHOD and r.extra.get("words", ALL_WORDS) == ALL_WORDS}
    return POOLED if POOLED in relations else next(iter(sorted(r for r in relations if r is not None)), None)
