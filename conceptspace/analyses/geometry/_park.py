"""C2 against Park, Choe & Veitch's published protocol (ICML 2024, arXiv 2311.03658; KihoPark/linear_rep_geometry).

Their two word-level measurements on the unembedding, whitened by g = Cov(gamma)^-1/2 gamma (the causal inner
product; :func:`~._vector_ops.causal_inner_product`), each also under the Euclidean inner product:

* **Projection** (their ``1_subspace``): per concept, the leave-one-out direction (unit mean of the other pairs'
  differences) and the projection of the held-out pair's difference onto it, against the projections of random
  word-pair differences onto the same direction. They show histograms; the number here is the AUROC of held-out
  against random projections (each held-out pair against the random pairs projected on *its* LOO direction),
  averaged over the pairs of a relation; it saturates near 1 when every pair beats the random ones, so the gap
  is reported too: the held-out projection minus the random projections' mean, in their SD, averaged over the
  pairs (Park et al.'s histograms' separation in numbers; unbounded, so it still ranks pairings at the
  ceiling). The null re-pairs b among the a's of the relation, as C2's primary
  does: the two word classes (countries, capitals), and so a class-mean offset that any pairing shares, stay,
  and only the specific pairing is shuffled. Effect = AUROC - null mean.
* **Orthogonality** (their ``2_heatmap``): |cos| between the mean directions of two relations. Park et al.
  predict ~0 under the causal inner product for causally separable concepts (those that can be set
  independently: a word can be both plural and feminine) and not under the Euclidean one. Statistic: mean |cos|
  over the separable relation pairs (:data:`FACTORS` says which); null: the same statistic on directions built
  from as many random vocabulary pairs per relation (what |cos| two directions estimated from that many noisy
  differences have in that geometry); CI: bootstrap over the pairs of every relation.

Word pairs as theirs: both words one token (SmolLM2: " word"), the two tokens different, each pair once; pairs
with a multi-token word are reported apart (projection only), as C2 does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._nulls import NullRows, batch_rng
from conceptspace.analyses.geometry._vector_ops import CausalInnerProduct, check_vectors, unit_rows
from conceptspace.errors import InvalidInputError

#: fewest pairs a relation needs (a LOO direction from at least two others)
MIN_PAIRS = 3
#: re-pairings on which the bootstrap's excess variance is measured (as the relations module)
N_EXCESS_SETS = 4
POOLED = "all"
PROJECTION = "loo_projection_auroc"
GAP = "loo_projection_gap"
#: the two projection statistics, in the order of each relation's rows
PROJECTION_STATISTICS = (PROJECTION, GAP)
SEPARABLE = "separable_mean_abs_cosine"
NON_SEPARABLE = "non_separable_mean_abs_cosine"

#: The attribute each bundled relation changes. Two relations are treated as causally separable (Park et al.,
#: Definition 2.3: the two concepts can be varied independently) when their attributes differ: a word can be made
#: plural and feminine at once, so number and gender are separable; comparative and superlative are two values of
#: one attribute (degree), and country -> capital and country -> currency read two attributes of one entity that
#: cannot be set apart from it, so they share "geography" and are not. Relations not listed are left out of both
#: means (and named in ``extra``).
FACTORS: Mapping[str, str] = {
    # google_analogy
    "family": "gender",
    "gram1-adjective-to-adverb": "adverb",
    "gram2-opposite": "polarity",
    "gram3-comparative": "degree",
    "gram4-superlative": "degree",
    "gram5-present-participle": "verb_form",
    "gram7-past-tense": "verb_form",
    "gram9-plural-verbs": "verb_form",
    "gram8-plural": "noun_number",
    "gram6-nationality-adjective": "geography",
    "capital-world": "geography",
    "capital-common-countries": "geography",
    "city-in-state": "geography",
    "currency": "geography",
    # lre_relations (linguistic)
    "adj_antonym": "polarity",
    "adj_comparative": "degree",
    "adj_superlative": "degree",
    "verb_past_tense": "verb_form",
    "word_first_letter": "spelling",
    "word_last_letter": "spelling",
    # lre_relations (commonsense, factual, bias)
    "object_superclass": "hypernym",
    "word_sentiment": "sentiment",
    "substance_phase": "phase",
    "fruit_inside_color": "colour",
    "fruit_outside_color": "colour",
    "task_done_by_tool": "tool",
    "work_location": "workplace",
    "occupation_age": "age",
    "degree_gender": "gender",
    "characteristic_gender": "gender",
    "occupation_gender": "gender",
    "name_gender": "gender",
    "name_religion": "religion",
    "name_birthplace": "geography",
    "landmark_on_continent": "geography",
    "landmark_in_country": "geography",
    "country_language": "geography",
    "country_largest_city": "geography",
    "country_capital_city": "geography",
    "country_currency": "geography",
    "company_hq": "geography",
    "product_by_company": "maker",
    "person_occupation": "occupation",
}


def _whiten(X: np.ndarray, inner_product: CausalInnerProduct | None) -> np.ndarray:
    return X if inner_product is None else inner_product.whiten(X)


def _members(relations: Sequence[str], n: int) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Relations with at least MIN_PAIRS pairs (sorted), their rows, and the skipped ones."""
    rel = np.asarray([str(r) for r in relations], dtype=str)
    if rel.shape != (n,):
        raise InvalidInputError(f"{rel.shape[0]} relation names for {n} pairs")
    names = sorted(set(rel.tolist()))
    kept = [r for r in names if np.count_nonzero(rel == r) >= MIN_PAIRS]
    skipped = [r for r in names if r not in kept]
    return kept, [np.flatnonzero(rel == r) for r in kept], skipped


def _check_pairs(A: Any, B: Any) -> tuple[np.ndarray, np.ndarray]:
    A, B = check_vectors(A, "A"), check_vectors(B, "B")
    if A.shape != B.shape:
        raise InvalidInputError(f"A {A.shape} and B {B.shape} must have the same shape (one row per pair)")
    return A, B


class _Projection:
    """One relation's held-out and random projections for any re-pairing, from Gram matrices.

    Why Gram matrices: with D_i = b_pi(i) - a_i, every quantity is an inner product. The held-out projection is
    <D_i, S - D_i> / |S - D_i| (S the sum of the differences) and a random pair q's is <q, S - D_i> / |S - D_i|,
    where <q, S> does not depend on pi. A draw then costs n^2 + R n instead of R n d.

    Why numerators: both projections of held-out pair i share the positive divisor |S - D_i|, so "random below
    held-out" is decided on the numerators, and the standardized gap (held - mean random) / SD random is the
    same ratio of numerators. A random pair's numerator is <q, S> + <q, a_i> - <q, b_j> (j = pi(i)): its mean
    and SD over the R random pairs depend only on (i, j), so they are tables made once (from centred sums, no
    (R, n, n) array), and a draw's only R-sized work is the AUROC's comparison. Measured at the sizes of C2's rows
    (R = 1,000 random pairs, 200 re-pairings, d = 576): 2.8x (100 pairs) to 4.0x (20 pairs) faster than
    dividing and reducing every random projection, the same shares exactly and gaps to 2e-15."""

    def __init__(self, a: np.ndarray, b: np.ndarray, Q: np.ndarray) -> None:
        self.aa, self.bb, self.ba = a @ a.T, b @ b.T, b @ a.T
        qa, self.qb = Q @ a.T, Q @ b.T  # (R, n)
        qs = self.qb.sum(axis=1) - qa.sum(axis=1)  # <q, S> for every re-pairing
        self.base = qs[:, None] + qa  # (R, n): <q, S> + <q, a_i>; minus <q, b_j> is the numerator
        self.n, self.R = a.shape[0], Q.shape[0]
        base_c, qb_c = self.base - self.base.mean(axis=0), self.qb - self.qb.mean(axis=0)
        self.random_mean = self.base.mean(axis=0)[:, None] - self.qb.mean(axis=0)[None, :]  # (i, j)
        squares = (base_c ** 2).sum(axis=0)[:, None] + (qb_c ** 2).sum(axis=0)[None, :] - 2.0 * (base_c.T @ qb_c)
        self.random_sd = np.sqrt(np.maximum(squares, 0.0) / (self.R - 1))  # (i, j), ddof 1

    def contributions(self, perms: np.ndarray) -> np.ndarray:
        """(2, P, n): per re-pairing and held-out pair, the share of random projections below its projection
        (AUROC's terms, ties counted half) and its projection standardized by the random projections' mean and
        SD (the gap's)."""
        out = np.empty((2, *perms.shape), dtype=np.float64)
        step = max(1, 2_000_000 // (self.R * self.n))  # re-pairings per block: a few million projections
        for start in range(0, perms.shape[0], step):
            out[:, start:start + step] = self._chunk(perms[start:start + step])
        return out

    def _chunk(self, perms: np.ndarray) -> np.ndarray:
        cross = self.ba[perms]  # (P, n, n): (ba')_pi(i) j
        M = self.bb[perms[:, :, None], perms[:, None, :]] - cross - cross.transpose(0, 2, 1) + self.aa[None]
        sq = np.einsum("pii->pi", M)
        row = M.sum(axis=2)
        others = np.sqrt(np.maximum(row.sum(axis=1)[:, None] - 2.0 * row + sq, 0.0))
        held = row - sq  # (P, n): the held-out numerator <D_i, S - D_i>
        # sign(held - random numerator), summed over the random pairs: (#below - #above); ties count half
        d = self.qb[:, perms]  # (R, P, n): <q, b_pi(i)>
        d -= self.base[:, None, :]
        d += held[None]
        signs = np.sign(d, out=d).sum(axis=0)
        below = (self.R + signs) / (2.0 * self.R)  # (#below + #ties / 2) / R, rounded once
        i = np.arange(self.n)[None, :]
        sd = self.random_sd[i, perms]
        gap = (held - self.random_mean[i, perms]) / np.where(sd > 0, sd, 1.0)
        ok = (others > 0) & (sd > 0)
        return np.stack([np.where(ok, below, 0.5), np.where(ok, gap, 0.0)])


def projection_rows(
    A: Any,
    B: Any,
    relations: Sequence[str],
    random_differences: Any,
    *,
    inner_product: CausalInnerProduct | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
    words: str = "single_token",
) -> NullRows:
    """Per relation (>= MIN_PAIRS pairs) the LOO-projection AUROC against random pairs, with its re-pairing null
    (draw ``i`` re-pairs every relation from ``batch_rng(seed, i, 0)``, the stream C2's relations rows use), a
    bootstrap over pairs and the excess-variance sets; with several relations also their mean (relation "all").

    ``random_differences`` (R, d): differences of random word pairs, in the same (unwhitened) space as A and B."""
    A, B = _check_pairs(A, B)
    Q = check_vectors(random_differences, "random_differences", min_rows=2)
    if Q.shape[1] != A.shape[1]:
        raise InvalidInputError(f"random differences have dimension {Q.shape[1]}, the pairs {A.shape[1]}")
    if n_bootstrap < 2:
        raise InvalidInputError(f"n_bootstrap must be >= 2; got {n_bootstrap}")
    kept, members, skipped = _members(relations, A.shape[0])
    if not kept:
        raise InvalidInputError(f"no relation has at least {MIN_PAIRS} pairs ({words} words); a leave-one-out "
                                f"direction needs two other pairs. Relations seen: {skipped[:10]}")
    geometry = "euclidean" if inner_product is None else "causal"
    A, B, Q = _whiten(A, inner_product), _whiten(B, inner_product), _whiten(Q, inner_product)
    parts = [_Projection(A[idx], B[idx], Q) for idx in members]

    def permutations(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.permutation(idx.size) for idx in members]

    def draw(offset: int, count: int) -> np.ndarray:
        drawn = [permutations(batch_rng(seed, offset + i, 0)) for i in range(count)]
        per = [part.contributions(np.stack([d[k] for d in drawn])).mean(axis=2) for k, part in enumerate(parts)]
        values = [v for stats in per for v in stats]  # relation by relation: AUROC, gap
        if len(parts) > 1:
            values += [np.mean(values[0::2], axis=0), np.mean(values[1::2], axis=0)]
        return np.stack(values)

    rng_boot = np.random.default_rng([seed, 1])
    excess = [permutations(batch_rng(seed, k, 2)) for k in range(N_EXCESS_SETS)]
    labels: list[dict[str, Any]] = []
    observed: list[float] = []
    boot: list[np.ndarray] = []
    boot_null: list[np.ndarray] = []
    extra: list[dict[str, Any]] = []
    for k, (name, idx, part) in enumerate(zip(kept, members, parts, strict=True)):
        own = part.contributions(np.arange(idx.size)[None])[:, 0]  # (2, n)
        rows = rng_boot.integers(0, idx.size, size=(n_bootstrap, idx.size))
        nulls = part.contributions(np.stack([perms[k] for perms in excess]))  # (2, sets, n)
        summary = {**_projection_summary(A[idx], B[idx], Q), "skipped_relations": skipped}
        for s, stat in enumerate(PROJECTION_STATISTICS):
            labels.append({"relation": name, "geometry": geometry, "n": int(idx.size), "words": words,
                           "statistic": stat})
            observed.append(float(own[s].mean()))
            boot.append(own[s][rows].mean(axis=1))
            boot_null.append(np.stack([c[rows].mean(axis=1) for c in nulls[s]]))
            extra.append(summary)
    if len(parts) > 1:
        for s, stat in enumerate(PROJECTION_STATISTICS):
            labels.append({"relation": POOLED, "geometry": geometry, "n": int(sum(i.size for i in members)),
                           "words": words, "n_relations": len(kept), "statistic": stat})
            observed.append(float(np.mean(observed[s:2 * len(parts):2])))
            boot.append(np.mean(boot[s:2 * len(parts):2], axis=0))
            boot_null.append(np.mean(boot_null[s:2 * len(parts):2], axis=0))
            extra.append({"skipped_relations": skipped, "relations": kept})
    return NullRows(labels, np.array(observed), draw, np.stack(boot), np.stack(boot_null), extra)


def _projection_summary(a: np.ndarray, b: np.ndarray, Q: np.ndarray) -> dict[str, float]:
    """Park et al.'s histogram in numbers: mean held-out projection, the random projections' mean and SD (onto
    the LOO directions), and the standardized gap (held-out mean - random mean) / random SD."""
    D = b - a
    loo = unit_rows(D.sum(axis=0)[None, :] - D)
    held = np.sum(D * loo, axis=1)
    rand = Q @ loo.T
    sd = float(rand.std(ddof=1))
    return {"mean_heldout_projection": float(held.mean()), "random_projection_mean": float(rand.mean()),
            "random_projection_sd": sd,
            "standardized_gap": float((held.mean() - rand.mean()) / sd) if sd > 0 else float("nan")}


def separable_pairs(names: Sequence[str], factors: Mapping[str, str] = FACTORS) -> tuple[np.ndarray, np.ndarray]:
    """(k, k) masks of the upper triangle: separable relation pairs (different attributes) and non-separable ones
    (the same attribute); relations without an attribute are in neither."""
    k = len(names)
    sep = np.zeros((k, k), dtype=bool)
    same = np.zeros((k, k), dtype=bool)
    for i in range(k):
        for j in range(i + 1, k):
            fi, fj = factors.get(names[i]), factors.get(names[j])
            if fi is None or fj is None:
                continue
            sep[i, j] = fi != fj
            same[i, j] = fi == fj
    return sep, same


def _mean_abs_cos(directions: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """(..., len(masks)): mean |cos| between the directions (..., k, d) over each mask's relation pairs."""
    U = unit_rows(directions) if directions.ndim == 2 else directions / np.maximum(
        np.linalg.norm(directions, axis=-1, keepdims=True), 1e-300)
    cos = np.abs(U @ np.swapaxes(U, -1, -2))
    return np.stack([cos[..., m].mean(axis=-1) for m in masks], axis=-1)


def cosine_matrix(A: Any, B: Any, relations: Sequence[str], *,
                  inner_product: CausalInnerProduct | None = None) -> tuple[list[str], np.ndarray]:
    """The relations (>= MIN_PAIRS pairs) and the (k, k) cosines between their mean difference directions."""
    A, B = _check_pairs(A, B)
    kept, members, _ = _members(relations, A.shape[0])
    D = _whiten(B, inner_product) - _whiten(A, inner_product)
    U = unit_rows(np.stack([D[idx].mean(axis=0) for idx in members])) if kept else np.zeros((0, A.shape[1]))
    return kept, U @ U.T


def orthogonality_rows(
    A: Any,
    B: Any,
    relations: Sequence[str],
    pool: Any,
    *,
    inner_product: CausalInnerProduct | None = None,
    factors: Mapping[str, str] = FACTORS,
    n_bootstrap: int = 500,
    seed: int = 0,
    words: str = "single_token",
) -> NullRows:
    """Mean |cos| between the directions of separable relation pairs (and, when there are any, of non-separable
    ones), against directions built from as many random pairs of ``pool`` (vocabulary vectors) per relation.

    Draw ``i`` comes from ``batch_rng(seed, i, 4)`` in either geometry, and the bootstrap resamples from
    ``seed`` alone, so the Euclidean and causal rows of one seed share their random pairs and resamples."""
    A, B = _check_pairs(A, B)
    P = check_vectors(pool, "pool", min_rows=2)
    kept, members, skipped = _members(relations, A.shape[0])
    sep, same = separable_pairs(kept, factors)
    if not sep.any():
        raise InvalidInputError(f"no two relations with >= {MIN_PAIRS} pairs change different attributes; "
                                f"relations {kept} (attributes from FACTORS; pass factors= for others)")
    masks = [sep, same] if same.any() else [sep]
    geometry = "euclidean" if inner_product is None else "causal"
    A, B, P = _whiten(A, inner_product), _whiten(B, inner_product), _whiten(P, inner_product)
    D = B - A
    sizes = [idx.size for idx in members]

    def random_directions(rng: np.random.Generator) -> np.ndarray:
        return np.stack([(P[rng.integers(0, P.shape[0], n)] - P[rng.integers(0, P.shape[0], n)]).mean(axis=0)
                         for n in sizes])

    def draw(offset: int, count: int) -> np.ndarray:
        dirs = np.stack([random_directions(batch_rng(seed, offset + i, 4)) for i in range(count)])
        return _mean_abs_cos(dirs, masks).T

    rng_boot = np.random.default_rng([seed, 5])
    resampled = np.stack([np.stack([D[idx[rng_boot.integers(0, idx.size, idx.size)]].mean(axis=0)
                                    for idx in members]) for _ in range(n_bootstrap)])
    directions = np.stack([D[idx].mean(axis=0) for idx in members])
    observed = _mean_abs_cos(directions, masks)
    boot = _mean_abs_cos(resampled, masks).T
    cos = unit_rows(directions) @ unit_rows(directions).T
    unlisted = [r for r in kept if r not in factors]
    shared = {"relations": kept, "attributes": [factors.get(r) for r in kept], "unclassified_relations": unlisted,
              "skipped_relations": skipped, "cosine_matrix": np.round(cos, 4).tolist(),
              "random_direction_expected_abs_cosine": float(np.sqrt(2.0 / (np.pi * A.shape[1])))}
    labels, extra = [], []
    for name, mask in zip((SEPARABLE, NON_SEPARABLE), masks, strict=False):
        labels.append({"relation": POOLED, "geometry": geometry, "n": int(sum(sizes)), "statistic": name,
                       "words": words, "n_relation_pairs": int(mask.sum())})
        extra.append({**shared, "n_relation_pairs": int(mask.sum())})
    return NullRows(labels, observed, draw, boot, None, extra)
