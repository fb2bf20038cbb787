"""Analogy quadruples from a pairs set: a:b :: c:d is two distinct pairs of the same relation.

Pairs sets store each (a, b) pair once; analogy tests (3CosAdd, offset consistency) need pairs of pairs. Forming
them here, from the stored pairs, keeps one source of truth for the words and their groups.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from conceptspace.concepts._schema import ConceptSet
from conceptspace.errors import DatasetError


def analogy_quadruples(
    concept_set: ConceptSet, *, max_per_relation: int | None = None, seed: int = 0
) -> list[tuple[int, int]]:
    """Ordered row pairs (i, j), i != j, of the same relation: a_i : b_i :: a_j : b_j.

    All ordered pairs by default (google_analogy's ``capital-common-countries`` gives its 506 original questions);
    ``max_per_relation`` draws a seeded random subset per relation for large relations.
    """
    if concept_set.kind != "pairs":
        raise DatasetError(f"analogy quadruples need a pairs set; {concept_set.name!r} is {concept_set.kind}")
    rows: dict[str, list[int]] = defaultdict(list)
    for i, relation in enumerate(concept_set.relations):
        rows[relation].append(i)
    rng = np.random.default_rng(seed)
    out: list[tuple[int, int]] = []
    for relation in sorted(rows):
        members = rows[relation]
        quads = [(i, j) for i in members for j in members if i != j]
        if max_per_relation is not None and len(quads) > max_per_relation:
            chosen = sorted(rng.choice(len(quads), size=max_per_relation, replace=False).tolist())
            quads = [quads[k] for k in chosen]
        out.extend(quads)
    return out
