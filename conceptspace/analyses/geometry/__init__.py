"""Geometry of concepts: clustering, analogies by offsets, relation directions, RSA, proximity vs probability.

Why together: these tests read static vectors (embedding / unembedding rows) or contextual span means and ask
how concepts are arranged, each against its own permutation null and the untrained twin. The statistics live in
one-job private modules that work on plain arrays; ``_run`` fetches the vectors from a model and runs them.
"""

from __future__ import annotations

from conceptspace.analyses.geometry._analogies import analogy_tests, questions_from_pairs
from conceptspace.analyses.geometry._analogy_vocabulary import CANDIDATES, single_token_words
from conceptspace.analyses.geometry._clustering import clustering_tests
from conceptspace.analyses.geometry._controls import GeometryOutput, primary_replicates
from conceptspace.analyses.geometry._logit_lens import proximity_probability_tests
from conceptspace.analyses.geometry._relations import (
    relation_consistency_tests,
    relation_directions,
    relation_orthogonality_tests,
)
from conceptspace.analyses.geometry._run import (
    UNEMBED,
    analogies_output,
    canonical_sites,
    clustering_output,
    concept_vectors,
    concept_vectors_by_site,
    relations_output,
    resolve_primary_site,
    run_analogies,
    run_clustering,
    run_proximity_probability,
    run_relations,
    run_similarity,
    select_rows,
    similarity_output,
    static_word_vectors,
    word_tokenization_counts,
)
from conceptspace.analyses.geometry._run_vocabulary import analogies_vocabulary_output, candidate_vocabulary
from conceptspace.analyses.geometry._similarity import category_similarity, mantel_test, rsa_tests

__all__ = [
    "CANDIDATES",
    "UNEMBED",
    "GeometryOutput",
    "analogies_output",
    "analogies_vocabulary_output",
    "analogy_tests",
    "candidate_vocabulary",
    "canonical_sites",
    "category_similarity",
    "clustering_output",
    "clustering_tests",
    "concept_vectors",
    "concept_vectors_by_site",
    "mantel_test",
    "primary_replicates",
    "proximity_probability_tests",
    "questions_from_pairs",
    "relation_consistency_tests",
    "relation_directions",
    "relation_orthogonality_tests",
    "relations_output",
    "resolve_primary_site",
    "rsa_tests",
    "run_analogies",
    "run_clustering",
    "run_proximity_probability",
    "run_relations",
    "run_similarity",
    "select_rows",
    "similarity_output",
    "single_token_words",
    "static_word_vectors",
    "word_tokenization_counts",
]
