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


def in_vocabulary_pairs(concept_set: ConceptSet, words: CandidateVocabulary) -> tuple[ConceptSet, dict[str, int]]:
    """The pairs whose two words are candidates (case-insensitive), and how many pairs and questions were lost.

    Why before drawing: ``max_per_relation`` questions are drawn per relation, and drawing them among every pair
    and skipping the unanswerable ones afterwards left capital-world, whose capitals are often two tokens, with 16
    of its 100 draws. Drawing among the answerable pairs gives each relation up to ``max_per_relation`` questions;
    the skip counts still say what was lost: ``n_questions_skipped`` is every ordered pair of pairs of a relation
    that involves a skipped pair (n (n - 1) - k (k - 1) for n pairs of which k are kept), as gensim skips them."""
    known = set(words.words)
    keep = [all(str(w).lower() in known for w in pair)
            for pair in zip(concept_set.column("a"), concept_set.column("b"), strict=True)]
    sizes: dict[str, list[int]] = {}
    for relation, ok in zip(concept_set.relations, keep, strict=True):
        sizes.setdefault(relation, [0, 0])[0] += 1
        sizes[relation][1] += int(ok)
    counts = {"n_vocabulary": len(words), "n_pairs_skipped": keep.count(False),
              "n_questions_skipped": sum(n * (n - 1) - k * (k - 1) for n, k in sizes.values())}
    if not any(k >= 2 for _, k in sizes.values()):
        raise InvalidInputError(f"no relation of {concept_set.name!r} has two pairs with both words in the "
                                f"vocabulary ({words.source})")
    if all(keep):
        return concept_set, counts
    rows = [i for i, ok in enumerate(keep) if ok]
    return concept_set.replace(data=concept_set.data.select(rows)), counts


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
    excluded, questions with a word outside it skipped and counted, ``max_per_relation`` drawn among the rest: see
    :func:`in_vocabulary_pairs`), ignore-a and add-opposite accuracies beside only-b."""
    sites = canonical_sites(model, sites)
    bad = [s for s in sites if s not in STATIC_SITES]
    if bad:
        raise InvalidInputError(f"candidates='vocabulary' supports the static sites {STATIC_SITES} only; got {bad}")
    words = candidate_vocabulary(model, vocabulary)
    answerable, counts = in_vocabulary_pairs(concept_set, words)
    pairs = list(zip(answerable.column("a"), answerable.column("b"), strict=True))
    quads = analogy_quadruples(answerable, max_per_relation=max_per_relation, seed=seed)
    questions, _ = vocabulary_questions(pairs, answerable.relations, words, quads, answerable.groups)
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
