"""Analogy quadruples from a pairs set: a:b :: c:d is two distinct pairs of the same relation.

Pairs sets store each (a, b) pair once; analogy tests (3CosAdd, offset consistency) need pairs of pairs. Forming
them here, from the stored pairs, keeps one source of truth for the words and their groups. Which relations of a
large set (the LRE relations) make meaningful analogies is also decided here, by a rule stated before any
result is seen (:func:`select_relations`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from conceptspace.concepts._schema import ConceptSet
from conceptspace.errors import DatasetError


def _distinct_words(words: Sequence[str]) -> bool:
    lowered = [w.lower() for w in words]
    return len(set(lowered)) == len(lowered)


def analogy_quadruples(
    concept_set: ConceptSet, *, max_per_relation: int | None = None, seed: int = 0, distinct_words: bool = True
) -> list[tuple[int, int]]:
    """Ordered row pairs (i, j), i != j, of the same relation: a_i : b_i :: a_j : b_j.

    All ordered pairs by default (google_analogy's ``capital-common-countries`` gives its 506 original questions);
    ``max_per_relation`` draws a seeded random subset per relation for large relations.

    ``distinct_words`` (default) drops the quadruples whose four words are not all different (case-insensitive):
    two cities of one state (city-in-state) or two words with one antonym would ask for an answer that is one of
    the query words, which every protocol excludes from the candidates, so no method could solve it. The
    published Google questions never repeat a word, so they are all kept.
    """
    if concept_set.kind != "pairs":
        raise DatasetError(f"analogy quadruples need a pairs set; {concept_set.name!r} is {concept_set.kind}")
    a_words, b_words = [str(w) for w in concept_set.column("a")], [str(w) for w in concept_set.column("b")]
    rows: dict[str, list[int]] = defaultdict(list)
    for i, relation in enumerate(concept_set.relations):
        rows[relation].append(i)
    rng = np.random.default_rng(seed)
    out: list[tuple[int, int]] = []
    for relation in sorted(rows):
        members = rows[relation]
        quads = [(i, j) for i in members for j in members if i != j and (
            not distinct_words or _distinct_words([a_words[i], b_words[i], a_words[j], b_words[j]]))]
        if max_per_relation is not None and len(quads) > max_per_relation:
            chosen = sorted(rng.choice(len(quads), size=max_per_relation, replace=False).tolist())
            quads = [quads[k] for k in chosen]
        out.extend(quads)
    return out


def distinct_b_fractions(concept_set: ConceptSet) -> dict[str, float]:
    """Per relation: distinct b words (case-insensitive) / pairs. 1.0 is one-to-one on the b side (each country
    its own capital); 0.01 is many-to-one (947 landmarks on 7 continents)."""
    if concept_set.kind != "pairs":
        raise DatasetError(f"relations exist only in pairs sets; {concept_set.name!r} is {concept_set.kind}")
    members: dict[str, list[str]] = defaultdict(list)
    for relation, b in zip(concept_set.relations, concept_set.column("b"), strict=True):
        members[relation].append(str(b).lower())
    return {r: len(set(bs)) / len(bs) for r, bs in sorted(members.items())}


def select_relations(
    concept_set: ConceptSet, *, relations: Sequence[str] | None = None, min_distinct_b: float = 0.0
) -> ConceptSet:
    """The pairs of the named ``relations`` (None: all) whose b words are distinct for at least ``min_distinct_b``
    of their pairs (:func:`distinct_b_fractions`), with a note naming what was kept and dropped.

    Why the rule: an analogy a : a* :: b : ? asks for one answer, and the offset a* - a can only point at it when
    the relation maps different a's to different b's. In a many-to-one relation (occupation -> gender) the
    answer is often a query word or shared by many questions, and a solved question says nothing about offsets.
    The threshold is fixed in the suite before the run, not tuned on the accuracies.
    """
    if not 0.0 <= min_distinct_b <= 1.0:
        raise DatasetError(f"min_distinct_b must be a fraction in [0, 1]; got {min_distinct_b!r}")
    fractions = distinct_b_fractions(concept_set)
    if relations is not None:
        unknown = sorted(set(relations) - set(fractions))
        if unknown:
            raise DatasetError(f"{concept_set.name!r} has no relation(s) {unknown}; its relations are "
                               f"{sorted(fractions)}")
    named = sorted(fractions) if relations is None else sorted(set(relations))
    kept = [r for r in named if fractions[r] >= min_distinct_b]
    if not kept:
        raise DatasetError(f"no relation of {concept_set.name!r} has distinct b words for >= {min_distinct_b:g} of "
                           f"its pairs (best: {max(fractions[r] for r in named):.2f}); lower min_distinct_b")
    if kept == sorted(fractions):
        return concept_set
    keep = set(kept)
    rows = [i for i, r in enumerate(concept_set.relations) if r in keep]
    dropped = {r: round(fractions[r], 3) for r in named if r not in keep}
    note = (f"relations kept: {len(kept)} of {len(fractions)} (named: {len(named)}; distinct b words >= "
            f"{min_distinct_b:g} of pairs); dropped by the rule: {dropped}")
    return concept_set.replace(data=concept_set.data.select(rows)).with_note(note)
