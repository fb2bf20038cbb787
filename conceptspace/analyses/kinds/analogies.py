"""C3: analogy accuracy by vector offsets (3CosAdd/3CosMul) against the only-b baseline, question by question.

Primary test: the first method's accuracy minus only-b accuracy on the same questions (all relations) at the
primary site (``context.primary_site``, default the first site); p is the larger of a grouped sign-flip and a
re-pairing p-value of that paired difference, its CI the paired grouped bootstrap (see
``geometry._analogies``). Other methods, relations and sites are exploratory; only-b is a baseline; the
untrained twins (one test, mean over seeds) and the spectrum-matched twin are controls. In a ``--null`` run
the b words are re-paired among the a words of each relation first.

``candidates``: ``"relation"`` (the default: the relation's own words are the candidate answers) or
``"vocabulary"`` (the standard protocol, matched to gensim's ``evaluate_word_analogies``: every word of
``vocabulary``, ``"single_token_words"`` of the tokenizer or the path of a word file, with ignore-a and
add-opposite accuracies beside only-b; static sites only, see ``geometry._analogy_vocabulary``).

``relations`` (a list of relation names; default all) and ``min_distinct_b`` (keep the relations whose b words
are distinct for at least that fraction of their pairs; default 0, every relation) choose the relations of a
large pairs set by a rule fixed before the run (``concepts.select_relations``): the BATS-style analogies of the
LRE relations keep the near one-to-one ones. Quadruples whose four words are not all different are never asked.
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
    is_number,
    is_sites,
    is_str,
    list_of,
    mark_roles,
    optional,
    param,
    register,
)
from conceptspace.concepts import load_concepts
from conceptspace.concepts._pairs import select_relations
from conceptspace.errors import InvalidInputError


@dataclass(frozen=True)
class AnalogiesParams:
    dataset: str = param(check=is_str, type_name="string")
    sites: list[str] = param(["unembed"], check=is_sites, type_name=SITES_TYPE)
    max_per_relation: int = param(50, check=is_int, type_name="integer")
    methods: list[str] = param(["3cosadd"], check=list_of(is_str), type_name="list of strings")
    candidates: str = param("relation", check=lambda v: v in geometry.CANDIDATES,
                            type_name=f"one of {list(geometry.CANDIDATES)}")
    vocabulary: str = param("single_token_words", check=is_str, type_name="'single_token_words' or a file path")
    relations: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings",
                                        doc="the relations to ask (default: every relation of the set)")
    min_distinct_b: float = param(0.0, check=lambda v: is_number(v) and 0 <= v <= 1, type_name="number in [0, 1]",
                                  doc="keep relations whose b words are distinct for this fraction of pairs")


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
        cs = select_relations(load_concepts(params.dataset), relations=params.relations,
                              min_distinct_b=params.min_distinct_b)
        common: dict[str, Any] = dict(
            max_per_relation=params.max_per_relation, methods=params.methods,
            controls=[(c.name, c.seed, c.model) for c in context.control_models()],
            n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
            plan=context.sequential_plan(), primary_site=context.primary_site, null_seed=context.null_seed,
        )
        if params.candidates not in geometry.CANDIDATES:
            raise InvalidInputError(f"candidates must be one of {geometry.CANDIDATES}; got {params.candidates!r}")
        if params.candidates == "vocabulary":
            out = geometry.analogies_vocabulary_output(context.model, cs, params.sites,
                                                       vocabulary=params.vocabulary, **common)
        else:
            out = geometry.analogies_output(context.model, cs, params.sites, **common)
        site = geometry.resolve_primary_site(context.model, params.sites, context.primary_site)
        results = mark_roles(out.results, lambda r: (r.site, r.method, r.extra.get("relation"))
                             == (site, params.methods[0], "all"))
        return AnalysisOutput(results, replicates=geometry.primary_replicates(results, out.replicates))
