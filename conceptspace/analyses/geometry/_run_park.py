"""Park et al.'s protocol on a model: the pairs' unembedding rows, random vocabulary pairs, both inner products,
the model and its controls (untrained twins, spectrum-matched twin) on shared draws. Statistics: ``_park``.

Only the unembedding is read (the pairs' rows, a pool of vocabulary rows and Cov(U) for the causal map), so a
run costs seconds and no forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._analogy_vocabulary import single_token_words
from conceptspace.analyses.geometry._controls import GeometryOutput, run_models, slice_null
from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._nulls import NullRows, outcomes, stack_rows
from conceptspace.analyses.geometry._park import (
    GAP,
    MIN_PAIRS,
    NON_SEPARABLE,
    POOLED,
    PROJECTION,
    SEPARABLE,
    orthogonality_rows,
    projection_rows,
)
from conceptspace.analyses.geometry._run import Control, static_word_vectors
from conceptspace.analyses.geometry._vector_ops import causal_inner_product
from conceptspace.concepts._schema import ConceptSet
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.models._weights import unembedding_matrix, unembedding_rows
from conceptspace.site_names import UNEMBED
from conceptspace.stats._results import TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan

#: random word pairs whose projections are the reference (Park et al. draw 100,000 token pairs; 1,000 pin an
#: AUROC to about +-0.01) and vocabulary words the orthogonality null draws its random pairs from
N_RANDOM_PAIRS = 1000
POOL_SIZE = 4000
#: which pairs the main rows take: Park et al.'s (both words single tokens; multi-token pairs reported apart) or
#: every pair, a multi-token word's vector the mean of its pieces (for tokenizers with few whole words)
WORDS = ("single_token", "all")
#: pairs per relation (each of single- and multi-token); the bundled single-token relations have at most 93
MAX_PER_RELATION = 100


@dataclass(frozen=True)
class ParkPairs:
    """A set's pairs split as Park et al. keep them: ``single`` rows (both words one token, tokens different, each
    pair once) and ``multi`` rows (a multi-token word; reported apart), with what was dropped."""

    a: list[str]
    b: list[str]
    relations: list[str]
    single: np.ndarray
    multi: np.ndarray
    dropped: dict[str, int]


def park_pairs(model: ConceptModel, concept_set: ConceptSet, *, max_per_relation: int | None = None,
               seed: int = 0) -> ParkPairs:
    """Which of a pairs set's rows enter the protocol (see :class:`ParkPairs`); at most ``max_per_relation``
    single-token and as many multi-token pairs per relation (a seeded draw: LRE's person_mother has ~1000)."""
    if concept_set.relations is None:
        raise InvalidInputError(f"{concept_set.name!r} is not a pairs set with relations (columns a, b, relation)")
    a = [str(w) for w in concept_set.column("a")]
    b = [str(w) for w in concept_set.column("b")]
    rel = [str(r) for r in concept_set.relations]
    ids = model.tokenizer([" " + w for w in a + b], add_special_tokens=False)["input_ids"]
    ia, ib = ids[:len(a)], ids[len(a):]
    seen: set[tuple[str, str, str]] = set()
    single: list[int] = []
    multi: list[int] = []
    same = duplicate = 0
    for i, (x, y) in enumerate(zip(ia, ib, strict=True)):
        if list(x) == list(y):
            same += 1
            continue
        if (rel[i], a[i], b[i]) in seen:
            duplicate += 1
            continue
        seen.add((rel[i], a[i], b[i]))
        (single if len(x) == 1 and len(y) == 1 else multi).append(i)
    capped = [_cap(rows, rel, max_per_relation, seed) for rows in (single, multi)]
    return ParkPairs(a, b, rel, capped[0], capped[1],
                     {"same_tokens": same, "duplicate_pairs": duplicate,
                      "over_max_per_relation": len(single) + len(multi) - capped[0].size - capped[1].size})


def _cap(rows: list[int], relations: list[str], limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows`` per relation, drawn with ``seed`` (sorted)."""
    out = np.array(rows, dtype=np.int64)
    if limit is None or out.size == 0:
        return out
    rng = np.random.default_rng([seed, 11])
    rel = np.asarray(relations, dtype=str)[out]
    keep = [out[rel == r] if np.count_nonzero(rel == r) <= limit else rng.choice(out[rel == r], limit, replace=False)
            for r in sorted(set(rel.tolist()))]
    return np.sort(np.concatenate(keep))


def _enough(relations: Sequence[str]) -> bool:
    rel = list(relations)
    return any(rel.count(r) >= MIN_PAIRS for r in set(rel))


def _pooled_row(relations: Sequence[str]) -> int:
    """Index of the pooled (else the only) gap row of a projection part, from the relations alone (rows: AUROC
    and gap per relation, then the pooled AUROC and gap when there are several)."""
    kept = [r for r in set(relations) if list(relations).count(r) >= MIN_PAIRS]
    return 2 * len(kept) + 1 if len(kept) > 1 else 1


def park_output(
    model: ConceptModel,
    concept_set: ConceptSet,
    *,
    controls: Sequence[Control] = (),
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    n_random_pairs: int = N_RANDOM_PAIRS,
    words: str = "single_token",
    max_per_relation: int | None = MAX_PER_RELATION,
    null_seed: int | None = None,
) -> GeometryOutput:
    """Park et al.'s projection and orthogonality measurements at the unembedding, Euclidean and causal, on the
    model and each control (the draws decide on the pooled causal projection gap; every row is
    exploratory). Relations with fewer than MIN_PAIRS usable pairs are skipped and named in ``extra``; a set
    with no such relation among its single-token pairs is an error. ``null_seed`` (the null battery): the b words
    are re-paired among the a's of each relation first (within the single- and the multi-token pairs apart)."""
    if words not in WORDS:
        raise InvalidInputError(f"words must be one of {WORDS}; got {words!r}")
    pairs = park_pairs(model, concept_set, max_per_relation=max_per_relation, seed=seed)
    rel = np.asarray(pairs.relations, dtype=str)
    main = pairs.single if words == "single_token" else np.union1d(pairs.single, pairs.multi)
    if not _enough(rel[main].tolist()):
        raise InvalidInputError(
            f"{concept_set.name!r}: no relation has {MIN_PAIRS} pairs whose two words are single tokens "
            f"({pairs.single.size} such pairs in all); Park et al.'s protocol reads one unembedding row per word. "
            "words='all' also takes pairs with a multi-token word (its vector the mean of its pieces' rows)")
    vocabulary = single_token_words(model.tokenizer)
    rng = np.random.default_rng([seed, 7])
    pool_ids = np.asarray(vocabulary.keys, dtype=np.int64)
    pool_ids = pool_ids[rng.choice(pool_ids.size, min(POOL_SIZE, pool_ids.size), replace=False)]
    first = rng.integers(0, pool_ids.size, n_random_pairs)
    second = (first + rng.integers(1, pool_ids.size, n_random_pairs)) % pool_ids.size  # never the same word
    b_words = pairs.b if null_seed is None else _repaired(pairs.b, rel, [pairs.single, pairs.multi], null_seed)
    split = [(words, main)] + ([("multi_token", pairs.multi)]
                               if words == "single_token" and _enough(rel[pairs.multi].tolist()) else [])
    extra = {"n_pairs_in_set": len(rel), "n_single_token_pairs": int(pairs.single.size),
             "n_multi_token_pairs": int(pairs.multi.size), **pairs.dropped,
             "n_random_pairs": n_random_pairs, "max_per_relation": max_per_relation,
             "random_pairs_from": f"{pool_ids.size} single-token vocabulary words",
             "protocol": "Park, Choe & Veitch 2024 (arXiv 2311.03658)",
             **({"null_battery_seed": null_seed} if null_seed is not None else {})}

    def tests_of(m: ConceptModel, control: str | None) -> dict[str, Any]:
        causal = causal_inner_product(unembedding_matrix(m))
        pool = np.asarray(unembedding_rows(m, pool_ids), dtype=np.float64)
        Q = pool[first] - pool[second]
        parts: list[NullRows] = []
        for ip in (causal, None):
            for side, idx in split:
                A, B = _word_rows(m, [pairs.a[i] for i in idx]), _word_rows(m, [b_words[i] for i in idx])
                parts.append(projection_rows(A, B, rel[idx], Q, inner_product=ip, n_bootstrap=n_bootstrap,
                                             seed=seed, words=side))
        A, B = _word_rows(m, [pairs.a[i] for i in main]), _word_rows(m, [b_words[i] for i in main])
        for ip in (causal, None):
            parts.append(orthogonality_rows(A, B, rel[main], pool, inner_product=ip, n_bootstrap=n_bootstrap,
                                            seed=seed, words=words))

        def finish(rows: NullRows, out: SequentialNull) -> tuple[list[TestResult], list[np.ndarray]]:
            return _results(parts, out, dataset=concept_set.name, control=control, extra=extra)

        return {UNEMBED: (stack_rows(parts), finish)}

    chosen = (UNEMBED, _pooled_row(rel[main].tolist()))
    return run_models([(None, 0, model), *controls], [UNEMBED], tests_of,
                      plan if plan is not None else SequentialPlan.fixed(n_permutations), chosen, seed)


def _repaired(b: list[str], relations: np.ndarray, groups: Sequence[np.ndarray], seed: int) -> list[str]:
    """``b`` with the words of each relation permuted within each group of rows (the null battery's re-pairing)."""
    rng = np.random.default_rng([seed, 104723])
    out = list(b)
    for rows in groups:
        for r in sorted(set(relations[rows].tolist())):
            members = rows[relations[rows] == r]
            for i, j in zip(members, members[rng.permutation(members.size)], strict=True):
                out[i] = b[j]
    return out


def _word_rows(model: ConceptModel, words: Sequence[str]) -> np.ndarray:
    """Mean unembedding row over the pieces of " word" (one row for a single-token word)."""
    return static_word_vectors(model, words)


def _results(parts: list[NullRows], out: SequentialNull, *, dataset: str, control: str | None,
             extra: dict[str, Any]) -> tuple[list[TestResult], list[np.ndarray]]:
    """One test per row of every part, in the stream's order."""
    results, replicates = [], []
    start = 0
    for part in parts:
        stop = start + part.observed.size
        for lab, row in zip(part.labels, outcomes(part, slice_null(out, slice(start, stop))), strict=True):
            stat = lab["statistic"]
            projection = stat in (PROJECTION, GAP)
            test = "park_projection" if projection else "park_orthogonality"
            detail = (lab["relation"], f"{lab['words']}_words") if projection else (lab["relation"],)
            results.append(TestResult(
                key=geometry_key(test, dataset, UNEMBED, None, f"{stat}_{lab['geometry']}", *detail, control=control),
                claim="C2",
                statistic_name=stat,
                statistic=row.statistic,
                effect_size_name=_EFFECT_NAMES[stat],
                effect_size=row.effect,
                ci_low=row.ci_low,
                ci_high=row.ci_high,
                p_value=row.p_value,
                n=lab["n"],
                n_groups=lab["n"] if projection else lab.get("n_relation_pairs"),
                extra={"site": UNEMBED, "relation": lab["relation"], "inner_product": lab["geometry"],
                       "words": lab["words"], "null": _NULLS[stat],
                       "ci": "matched bootstrap over pairs", **row.extra, **extra},
            ))
            replicates.append(row.replicates)
        start = stop
    return results, replicates


_EFFECT_NAMES = {
    PROJECTION: "AUROC (held-out vs random-pair projections) - re-paired null mean",
    GAP: "standardized gap (held-out - random-pair projections, in their SD) - re-paired null mean",
    SEPARABLE: "mean |cos| of separable relations - random-pair directions' mean",
    NON_SEPARABLE: "mean |cos| of same-attribute relations - random-pair directions' mean",
}
_NULLS = {
    PROJECTION: "b re-paired within the relation",
    GAP: "b re-paired within the relation",
    SEPARABLE: "directions from as many random vocabulary pairs per relation",
    NON_SEPARABLE: "directions from as many random vocabulary pairs per relation",
}

__all__ = ["POOLED", "ParkPairs", "park_output", "park_pairs"]
