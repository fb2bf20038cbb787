"""Issue 14, C3: every relation of a pairs set, the BATS-style LRE analogies and their selection rule.

The rule (relations whose b words are distinct for >= 90% of their pairs) and the quadruples (never a repeated
word) are checked on the bundled data; the remembered answers of the vocabulary scorer against a full scan under
re-pairings, ties included; and the analogies kind on the LRE set with planted vectors (offsets that hold: the
primary test passes the claim's rule) and random ones (nothing to find: its CI rules the claim out).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conceptspace.analyses import RunContext, registry
from conceptspace.analyses.geometry import _run_vocabulary
from conceptspace.analyses.geometry._analogies import repairing
from conceptspace.analyses.geometry._analogy_vocabulary import (
    CandidateVocabulary,
    VocabularyScorer,
    vocabulary_questions,
)
from conceptspace.analyses.kinds import analogies as analogies_kind
from conceptspace.concepts import load_concepts
from conceptspace.concepts._pairs import analogy_quadruples, distinct_b_fractions, select_relations
from conceptspace.errors import DatasetError

#: the LRE relations the 0.9 rule keeps (computed from the bundled files when the rule was written down)
ONE_TO_ONE = {
    "adj_antonym", "adj_comparative", "adj_superlative", "company_ceo", "country_capital_city",
    "country_largest_city", "person_band_lead_singer", "person_father", "person_mother", "pokemon_evolutions",
    "presidents_election_year", "superhero_archnemesis", "superhero_person", "task_done_by_person",
    "task_done_by_tool", "verb_past_tense",
}


@pytest.fixture(scope="module")
def lre() -> Any:
    return load_concepts("lre_relations/all")


def test_the_rule_keeps_the_near_one_to_one_lre_relations(lre) -> None:  # type: ignore[no-untyped-def]
    fractions = distinct_b_fractions(lre)
    assert len(fractions) == 47
    assert fractions["country_capital_city"] == 1.0 and fractions["landmark_on_continent"] < 0.05
    chosen = select_relations(lre, min_distinct_b=0.9)
    assert set(chosen.relations) == ONE_TO_ONE
    assert "16 of 47" in chosen.notes[-1] and "landmark_on_continent" in chosen.notes[-1]
    named = select_relations(lre, relations=["verb_past_tense", "occupation_gender"], min_distinct_b=0.9)
    assert set(named.relations) == {"verb_past_tense"}
    assert select_relations(lre) is lre  # no rule, no names: the set itself


def test_the_rule_refuses_unknown_relations_and_an_empty_choice(lre) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatasetError, match="no relation"):
        select_relations(lre, relations=["capital-world"])
    with pytest.raises(DatasetError, match="lower min_distinct_b"):
        select_relations(lre, relations=["occupation_gender"], min_distinct_b=0.9)
    with pytest.raises(DatasetError, match="fraction"):
        select_relations(lre, min_distinct_b=1.5)


def test_quadruples_never_repeat_a_word_and_keep_every_published_question() -> None:
    cities = load_concepts("google_analogy/city-in-state")
    a, b = cities.column("a"), cities.column("b")
    kept = analogy_quadruples(cities)
    every = analogy_quadruples(cities, distinct_words=False)
    assert 0 < len(kept) < len(every)
    assert all(len({a[i].lower(), b[i].lower(), a[j].lower(), b[j].lower()}) == 4 for i, j in kept)
    from conceptspace.concepts._bundled import analogy_questions

    assert set(analogy_questions("city-in-state")) <= {(a[i], b[i], a[j], b[j]) for i, j in kept}


def test_remembered_answers_equal_a_full_scan_under_repairings_ties_included() -> None:
    rng = np.random.default_rng(3)
    n_pairs, d = 12, 16
    words = [f"w{k}" for k in range(2 * n_pairs + 60)]
    V = rng.normal(size=(len(words), d))
    V[-5:] = V[-10:-5]  # five exact duplicates: ties that the lowest id must win
    pairs = [(words[2 * k], words[2 * k + 1]) for k in range(n_pairs)]
    relations = ["r0"] * 6 + ["r1"] * 6
    quads = [(i, j) for i in range(n_pairs) for j in range(n_pairs) if i != j and relations[i] == relations[j]]
    vocab = CandidateVocabulary(words, list(range(len(words))), "test")
    questions, _ = vocabulary_questions(pairs, relations, vocab, quads)
    remembered, full = VocabularyScorer(V, questions), VocabularyScorer(V, questions)
    draws = np.random.default_rng(0)
    for _ in range(30):
        q = questions.repaired(repairing(questions, draws))
        for method in ("3cosadd", "3cosmul", "only_b"):
            triples = np.stack([q.a, q.a_star, q.b], axis=1)
            assert remembered.answers(q, method).tolist() == full._scan(triples, method).tolist()
    # each (question, a*) is scanned once: at most 6 a* per question, far fewer than 30 reruns of 60 questions
    assert remembered.n_scanned <= 3 * len(questions) * 6 < 3 * 30 * len(questions)


# ------------------------------------------------------------------------------ the kind on the LRE relations
PARAMS = {"dataset": "lre_relations/all", "min_distinct_b": 0.9, "sites": ["unembed"], "candidates": "vocabulary",
          "max_per_relation": 6, "methods": ["3cosadd"]}


def _vocabulary(lre_pairs: list[tuple[str, str]]) -> CandidateVocabulary:
    """The single words of the chosen relations (multi-word entries stay out, as on a real tokenizer), fillers."""
    words = [w.lower() for pair in lre_pairs for w in pair if w.isascii() and w.isalpha()]
    words = list(dict.fromkeys(words)) + [f"filler{k}" for k in range(300)]
    return CandidateVocabulary(words, words, "planted")


def _planted_vectors(vocab: CandidateVocabulary, pairs: list[tuple[str, str]], relations: list[str],
                     planted: bool, seed: int) -> np.ndarray:
    """Random words; when ``planted``, each b = a + its relation's offset (three times a word's norm) + noise, so
    3CosAdd finds b while b's nearest neighbour alone does not."""
    rng = np.random.default_rng(seed)
    d = 64
    index = {w: k for k, w in enumerate(vocab.words)}
    V = rng.normal(size=(len(vocab.words), d))
    if not planted:
        return V
    offsets = {r: 3.0 * rng.normal(size=d) for r in sorted(set(relations))}
    done: set[str] = set()
    for (a, b), r in zip(pairs, relations, strict=True):
        a, b = a.lower(), b.lower()
        if a in index and b in index and b not in done and a != b:
            V[index[b]] = V[index[a]] + offsets[r] + 0.3 * rng.normal(size=d)
            done.add(b)
    return V


def _run_kind(tiny_models, monkeypatch, lre, planted: bool):  # type: ignore[no-untyped-def]
    model = tiny_models["llama"]
    twins = (model.untrained(0),)
    monkeypatch.setattr(analogies_kind, "load_concepts", lambda name: lre)  # loaded once for the module (4 s)
    chosen = select_relations(lre, min_distinct_b=0.9)
    pairs = list(zip(chosen.column("a"), chosen.column("b"), strict=True))
    vocab = _vocabulary(pairs)
    monkeypatch.setattr(_run_vocabulary, "candidate_vocabulary", lambda m, v: vocab)
    monkeypatch.setattr(_run_vocabulary, "vocabulary_vectors", lambda m, words, site: _planted_vectors(
        words, pairs, chosen.relations, planted and m is model, seed=0 if m is model else 1))
    analysis = registry()["analogies"]
    ctx = RunContext(model=model, twin=twins[0], claim="C3", seed=0, n_permutations=99, n_bootstrap=100,
                     twins=twins, twin_seeds=(0,))
    return analysis.run(ctx, analysis.make_params(PARAMS))


def test_planted_offsets_pass_the_c3_rule_on_the_lre_relations(tiny_models, monkeypatch, lre) -> None:  # type: ignore[no-untyped-def]
    out = _run_kind(tiny_models, monkeypatch, lre, planted=True)
    (primary,) = [r for r in out.results if r.extra.get("role") == "primary"]
    assert primary.key.dataset == "lre_relations/all" and primary.extra["relation"] == "all"
    relations = {r.extra["relation"] for r in out.results if r.extra.get("role") == "exploratory"}
    assert relations <= ONE_TO_ONE and len(relations) >= 5  # the chosen relations with single-word pairs
    assert primary.extra["n_pairs_skipped"] > 0  # the multi-word entries (person names, "United States")
    # the C3 rule: p under Bonferroni for the claim's two primaries, effect >= 0.02, paired margin over the twin
    assert primary.p_value <= 0.05 / 2 and primary.effect_size >= 0.02
    assert primary.extra["accuracy"] > 0.5 > primary.extra["only_b_accuracy"]
    diff = out.replicates[primary.key] - out.replicates[primary.key.counterpart("untrained")][0]
    assert np.quantile(diff, 0.025) >= 0.02


def test_random_vectors_are_ruled_out_on_the_lre_relations(tiny_models, monkeypatch, lre) -> None:  # type: ignore[no-untyped-def]
    out = _run_kind(tiny_models, monkeypatch, lre, planted=False)
    (primary,) = [r for r in out.results if r.extra.get("role") == "primary"]
    assert primary.p_value > 0.05
    assert primary.ci_high < 0.02  # the claim's min_effect: the rule says "not supported"


def test_questions_are_drawn_among_the_answerable_pairs_and_the_lost_ones_counted() -> None:
    """capital-world's capitals are often two tokens: drawing after skipping left it 16 of 100 questions."""
    from conceptspace.analyses.geometry._run_vocabulary import in_vocabulary_pairs
    from conceptspace.errors import InvalidInputError

    cs = load_concepts("google_analogy/capital-world")
    a, b = cs.column("a"), cs.column("b")
    words = [w.lower() for w in [*a[:20], *b[:20]]] + ["filler"]
    kept, counts = in_vocabulary_pairs(cs, CandidateVocabulary(words, words, "test"))
    n = len(cs)
    assert len(kept) == 20 and kept.column("a") == a[:20]
    assert counts["n_pairs_skipped"] == n - 20 and counts["n_questions_skipped"] == n * (n - 1) - 20 * 19
    assert len(analogy_quadruples(kept, max_per_relation=100)) == 100
    with pytest.raises(InvalidInputError, match="two pairs"):
        in_vocabulary_pairs(cs, CandidateVocabulary(["w", "x", "y", "z"], ["w", "x", "y", "z"], "test"))
