"""C2 against Park, Choe & Veitch's published protocol (issue 14): LOO projections and orthogonality of relation
directions at the unembedding, under their causal inner product and the Euclidean one.

Wholly exploratory: every row is ``exploratory`` (controls ``control``), none is primary, so it adds no test to
C2's family and leaves C2's verdict (decided by ``relations``) as declared. Controls: the untrained twins (one
test, mean over seeds) and the spectrum-matched twin, on the same draws. Reads only the unembedding (seconds).
Statistics and the separable relation pairs: :mod:`conceptspace.analyses.geometry._park`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses._base import (
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_str,
    mark_roles,
    optional,
    param,
    register,
)
from conceptspace.analyses.geometry._run_park import MAX_PER_RELATION, N_RANDOM_PAIRS, WORDS, park_output
from conceptspace.concepts import load_concepts


@dataclass(frozen=True)
class ParkDirectionsParams:
    dataset: str = param(check=is_str, type_name="string", doc="a pairs set with relations (a, b, relation)")
    words: str = param("single_token", check=lambda v: v in WORDS, type_name=" or ".join(WORDS),
                       doc="single_token: Park et al.'s pairs (multi-token pairs apart); all: every pair")
    n_random_pairs: int = param(N_RANDOM_PAIRS, check=lambda v: is_int(v) and v >= 10, type_name="integer >= 10",
                                doc="random vocabulary word pairs whose projections are the reference")
    max_per_relation: int | None = param(MAX_PER_RELATION, check=optional(lambda v: is_int(v) and v >= 3),
                                         type_name="integer >= 3", doc="pairs per relation (a seeded draw)")


@register
class ParkDirectionsAnalysis(Analysis):
    kind = "park_directions"
    claims = ("C2",)
    Params = ParkDirectionsParams
    description = "Park et al.'s protocol: LOO projections vs random pairs, orthogonality of separable relations"
    smoke_params: ClassVar[dict[str, Any]] = {"dataset": "google_analogy/all", "words": "all",
                                              "n_random_pairs": 50}

    def run(self, context: RunContext, params: ParkDirectionsParams) -> AnalysisOutput:
        out = park_output(context.model, load_concepts(params.dataset),
                          controls=[(c.name, c.seed, c.model) for c in context.control_models()],
                          n_permutations=context.n_permutations, n_bootstrap=context.n_bootstrap, seed=context.seed,
                          plan=context.sequential_plan(), n_random_pairs=params.n_random_pairs, words=params.words,
                          max_per_relation=params.max_per_relation, null_seed=context.null_seed)
        return AnalysisOutput(mark_roles(out.results, lambda r: False))
