"""C3 on the standard protocol: the analogy tests with a model's whole vocabulary as candidates.

The statistics are those of ``candidates="relation"`` (:func:`._run.analogies_output`): each method's accuracy
minus only-b on the same questions, the larger of a grouped sign-flip and a re-pairing p, controls on the twins;
only the candidate set and the scorer differ (see ``_analogy_vocabulary``). Only the static sites (``unembed``,
``embed``) are allowed: a context site would need one forward pass per vocabulary word.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._analogies import ANALOGY_METHODS, analogy_null_rows, repairing
from conceptspace.analyses.geometry._analogy_vocabulary import (
    SINGLE_TOKEN_WORDS,
    VOCABULARY_BASELINES,
    CandidateVocabulary,
    VocabularyScorer,
    single_token_words,
    vocabulary_questions,
    word_list,
)
from conceptspace.analyses.geometry._controls import GeometryOutput, run_models
from conceptspace.analyses.geometry._run import (
    Control,
    _controls,
    _finish_analogies,
    _plan,
    _primary_site,
    canonical_sites,
    static_word_vectors,
    word_tokenization_counts,
)
from conceptspace.concepts._pairs import analogy_quadruples
from conceptspace.concepts._schema import ConceptSet
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.models._weights import embedding_rows, unembedding_rows
from conceptspace.site_names import EMBED, UNEMBED
from conceptspace.stats._sequential import SequentialPlan

STATIC_SITES: tuple[str, ...] = (UNEMBED, EMBED)


def candidate_vocabulary(model: ConceptModel, vocabulary: str = SINGLE_TOKEN_WORDS) -> CandidateVocabulary:
    """``"single_token_words"`` (every single-token word of the model's tokenizer) or the path of a word file."""
    if vocabulary == SINGLE_TOKEN_WORDS:
        return single_token_words(model.tokenizer)
    return word_list(vocabulary)


def vocabulary_vectors(model: ConceptModel, vocabulary: CandidateVocabulary, site: str) -> np.ndarray:
    """(n_words, d) float64 static vectors of the candidates: their token's row (single-token vocabulary) or the
    mean of the rows of " word"'s pieces (a word list), at ``unembed`` or ``embed``."""
    if site not in STATIC_SITES:
        raise InvalidInputError(f"candidates='vocabulary' reads static rows at {STATIC_SITES}; got site {site!r} "
                                "(use candidates='relation' for a context site)")
    if vocabulary.source != SINGLE_TOKEN_WORDS:
        return static_word_vectors(model, [str(k) for k in vocabulary.keys], site)
    ids = np.asarray(vocabulary.keys, dtype=np.int64)
    rows = unembedding_rows(model, ids) if site == UNEMBED else embedding_rows(model, ids)
    return np.asarray(rows, dtype=np.float64)


def analogies_vocabulary_output(
    model: ConceptModel,
    concept_set: ConceptSet,
    sites: Sequence[str],
    *,
    vocabulary: str = SINGLE_TOKEN_WORDS,
    max_per_relation: int | None = 200,
    methods: Sequence[str] = ANALOGY_METHODS,
    controls: Sequence[Control] | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    primary_site: str | None = None,
    null_seed: int | None = None,
) -> GeometryOutput:
    """:func:`._run.analogies_output` with every word of ``vocabulary`` as a candidate answer (query words
    excluded, questions with a word outside it skipped), ignore-a and add-opposite accuracies beside only-b."""
    sites = canonical_sites(model, sites)
    bad = [s for s in sites if s not in STATIC_SITES]
    if bad:
        raise InvalidInputError(f"candidates='vocabulary' supports the static sites {STATIC_SITES} only; got {bad}")
    words = candidate_vocabulary(model, vocabulary)
    pairs = list(zip(concept_set.column("a"), concept_set.column("b"), strict=True))
    quads = analogy_quadruples(concept_set, max_per_relation=max_per_relation, seed=seed)
    questions, counts = vocabulary_questions(pairs, concept_set.relations, words, quads, concept_set.groups)
    if null_seed is not None:  # the null battery: every relation's b words re-paired among its a words
        questions = questions.repaired(repairing(questions, np.random.default_rng([null_seed, 104723])))
    tokenization = word_tokenization_counts(model, concept_set)
    primary = _primary_site(sites, primary_site)
    full_plan = _plan(plan, n_permutations)
    extra: dict[str, Any] = {"tokenization": tokenization, "max_per_relation": max_per_relation,
                             "candidates": "vocabulary", "vocabulary": words.source, **counts,
                             **({"null_battery_seed": null_seed} if null_seed is not None else {})}

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        built = {}
        for site in sites:
            V = vocabulary_vectors(m, words, site)
            scorer = VocabularyScorer(V, questions)
            rows = analogy_null_rows(V, questions, methods=methods, n_bootstrap=n_bootstrap, seed=seed,
                                     correct=scorer.correct, baselines=VOCABULARY_BASELINES)
            deciding = control is None and site == primary
            built[site] = (rows.flips, partial(
                _finish_analogies, rows, full_plan if deciding else SequentialPlan.fixed(full_plan.start),
                dataset=concept_set.name, site=site, position=None, control=control, extra=extra))
        return built

    return run_models(_controls(model, False, 0, controls), sites, tests_of, full_plan, (primary, 0), seed)
