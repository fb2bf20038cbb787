"""Do the difference vectors b - a of one relation point the same way? Are separable relations orthogonal?

Linear representation hypothesis (Park, Choe & Veitch 2023): a concept such as male->female is a direction, so
the differences of its counterfactual pairs are parallel. Two statistics, each under the Euclidean inner
product and under the causal inner product (vectors whitened by Cov(unembedding)^(-1/2), see
:func:`conceptspace.analyses.geometry._vector_ops.causal_inner_product`):

* mean pairwise cosine of the differences of one relation;
* leave-one-out: cosine of each held-out pair's difference with the mean direction of the other pairs.

The null re-pairs the words *within* the relation (b permuted among the relation's a's). That keeps the two
word classes (countries, capitals) and so the trivial class-mean offset, and asks whether the specific pairing
is encoded: a strict null. The LOO effect size is Cliff's delta of true-pair cosines against re-paired
cosines on the same LOO directions, as in Park et al.'s comparison with random pairs.

Orthogonality: the |cosine| between the mean directions of two relations that should be causally separable
(e.g. gender and plural) is compared with the |cosine| of every other pair of relations in the set (lower-tail
rank p-value), with a bootstrap CI over the pairs of the two relations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._nulls import NullRows, batch_rng, fixed_or_sequential, outcomes
from conceptspace.analyses.geometry._vector_ops import (
    CausalInnerProduct,
    check_vectors,
    cliffs_delta,
    one_sided_tail,
    unit_rows,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan
from conceptspace.utils.deprecation import renamed_keywords

MIN_PAIRS = 3


def _prepare(
    A: Any, B: Any, relations: Sequence[str], inner_product: CausalInnerProduct | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    A = check_vectors(A, "A")
    B = check_vectors(B, "B")
    if A.shape != B.shape:
        raise InvalidInputError(f"A {A.shape} and B {B.shape} must have the same shape (one row per pair)")
    rel = np.asarray(list(relations), dtype=str)
    if rel.shape != (A.shape[0],):
        raise InvalidInputError(f"{rel.shape[0]} relation names for {A.shape[0]} pairs")
    if inner_product is not None:
        return inner_product.whiten(A), inner_product.whiten(B), rel, "causal"
    return A, B, rel, "euclidean"


def mean_pairwise_cosine(D: np.ndarray) -> float:
    """Mean cosine over distinct pairs of rows: (||sum of unit rows||^2 - n) / (n (n - 1))."""
    U = unit_rows(D)
    n = U.shape[0]
    s = U.sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


def loo_cosines(D: np.ndarray, held_out: np.ndarray | None = None) -> np.ndarray:
    """Cosine of each row of ``held_out`` (default D) with the mean of the *other* rows of D."""
    total = D.sum(axis=0)
    loo = total[None, :] - D
    target = D if held_out is None else held_out
    return np.sum(unit_rows(target) * unit_rows(loo), axis=1)


#: how many re-pairings feed the descriptive Cliff's delta and the bootstrap's excess measurement
N_DESCRIPTIVE_PERMUTATIONS = 99
N_EXCESS_SETS = 4
POOLED = "all"
#: ``extra["words"]`` of the rows over every pair; the token-split rows say "single_token" or "multi_token"
ALL_WORDS = "all"


def _batch_pair_stats(a: np.ndarray, b: np.ndarray, perms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean pairwise and mean LOO cosine of ``b[perm] - a`` for each row of ``perms`` (count, n), vectorised."""
    n = a.shape[0]
    pair = np.empty(perms.shape[0])
    loo = np.empty(perms.shape[0])
    for start in range(0, perms.shape[0], 64):
        chunk = perms[start:start + 64]
        D = b[chunk] - a[None, :, :]
        U = _unit_last(D)
        s = U.sum(axis=1)
        pair[start:start + chunk.shape[0]] = (np.einsum("bd,bd->b", s, s) - n) / (n * (n - 1))
        others = D.sum(axis=1, keepdims=True) - D
        loo[start:start + chunk.shape[0]] = np.sum(U * _unit_last(others), axis=2).mean(axis=1)
    return pair, loo


def _gram_pair_stats(gram: tuple[np.ndarray, np.ndarray, np.ndarray], perms: np.ndarray) -> (
        tuple[np.ndarray, np.ndarray]):
    """:func:`_batch_pair_stats` from the Gram matrices ``(a a', b b', b a')`` instead of the vectors.

    Both statistics depend on the differences D_i = b_pi(i) - a_i only through M = D D', and M of a re-pairing is
    an indexing of the three Gram matrices: M_ij = (bb')_pi(i)pi(j) - (ba')_pi(i)j - (ba')_pi(j)i + (aa')_ij.
    Why: a relation has tens of pairs and d is hundreds, so each draw costs n^2 instead of n d, for a whole batch
    of draws at once (the re-pairing null of 14 relations x sites x models dominated C2's time)."""
    aa, bb, ba = gram
    n = aa.shape[0]
    rows = perms[:, :, None]
    cross = ba[perms]  # (B, n, n): (ba')_pi(i) j
    M = bb[rows, perms[:, None, :]] - cross - cross.transpose(0, 2, 1) + aa[None]
    sq = np.einsum("bii->bi", M)
    norm = np.sqrt(np.maximum(sq, 0.0))
    inv = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0)
    unit_total = np.einsum("bi,bij,bj->b", inv, M, inv)
    pair = (unit_total - n) / (n * (n - 1))  # as _batch_pair_stats: a zero difference still counts in n
    row_sum = M.sum(axis=2)
    total = row_sum.sum(axis=1)
    dot_others = row_sum - sq
    others_sq = total[:, None] - 2.0 * row_sum + sq
    others_norm = np.sqrt(np.maximum(others_sq, 0.0))
    denom = norm * others_norm
    loo = np.where(denom > 0, dot_others / np.where(denom > 0, denom, 1.0), 0.0).mean(axis=1)
    return pair, loo


def _unit_last(X: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


def _boot_pair_cosine(cos: np.ndarray, boot_rows: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine of each resample, pairs of an item with its own copy left out.

    From each resample's counts c (item k drawn c_k times): the pairs of different items sum to
    c' C c - sum_k c_k^2 C_kk over n^2 - sum_k c_k^2 of them. Why: one (replicates x n) @ (n x n) product instead of
    gathering every resample's n x n cosines (C2's bootstrap: 13 s of its 170 s on SmolLM2, now under 1 s)."""
    n_rep, n = boot_rows.shape  # n positions per resample, drawn from cos.shape[0] items (not always n)
    items = cos.shape[0]
    counts = np.bincount((boot_rows + items * np.arange(n_rep)[:, None]).ravel(), minlength=n_rep * items)
    c = counts.reshape(n_rep, items).astype(np.float64)
    c2 = c * c
    total = np.einsum("ri,ri->r", c @ cos, c) - c2 @ np.diag(cos)
    count = n * n - c2.sum(axis=1)
    return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


def _resample_stats(D: np.ndarray, boot_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    U = unit_rows(D)
    return _boot_pair_cosine(U @ U.T, boot_rows), loo_cosines(D)[boot_rows].mean(axis=1)


def _repaired_cosines(a: np.ndarray, b: np.ndarray, D: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Cosines of re-paired held-out differences with the mean direction of the true pairs other than both
    pairs involved (neither word may sit in the direction it is compared with): Cliff's delta's reference."""
    n = a.shape[0]
    out = []
    for perm in perms:
        moved = perm != np.arange(n)
        if moved.any():
            Dp = b[perm] - a
            direction = D.sum(axis=0)[None, :] - D - D[perm]
            out.append(np.sum(unit_rows(Dp[moved]) * unit_rows(direction[moved]), axis=1))
    return np.concatenate(out) if out else np.zeros(1)


def relation_null_rows(
    A: Any,
    B: Any,
    relations: Sequence[str],
    *,
    inner_product: CausalInnerProduct | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> NullRows:
    """Rows (per relation: mean pairwise and mean LOO cosine; with several relations also their pooled mean
    pairwise cosine, relation ``"all"``) sharing one re-pairing stream: permutation ``i`` re-pairs every relation
    from ``(seed, i)``, so the rows of several sites or inner products built with one seed share their draws."""
    A, B, rel, geometry = _prepare(A, B, relations, inner_product)
    if n_bootstrap < 2:
        raise InvalidInputError(f"n_bootstrap must be >= 2; got {n_bootstrap}")
    names = sorted(set(rel.tolist()))
    skipped = [r for r in names if np.count_nonzero(rel == r) < MIN_PAIRS]
    kept = [r for r in names if r not in skipped]
    if not kept:
        raise InvalidInputError(f"no relation has at least {MIN_PAIRS} pairs; consistency needs several pairs")
    members = [np.flatnonzero(rel == r) for r in kept]

    def permutations(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.permutation(idx.size) for idx in members]

    grams = [(A[idx] @ A[idx].T, B[idx] @ B[idx].T, B[idx] @ A[idx].T) for idx in members]

    def draw(offset: int, count: int) -> np.ndarray:
        """Draw ``offset + i`` re-pairs every relation from ``batch_rng(seed, offset + i, 0)`` (as
        :func:`~._nulls.numbered` would), and the statistics of a batch come from the Gram matrices at once."""
        drawn = [permutations(batch_rng(seed, offset + i, 0)) for i in range(count)]
        values = []
        for k, gram in enumerate(grams):
            pair, loo = _gram_pair_stats(gram, np.stack([d[k] for d in drawn]))
            values += [pair, loo]
        if len(kept) > 1:
            values.append(np.mean(values[0::2], axis=0))
        return np.stack(values)

    labels: list[dict[str, Any]] = []
    observed: list[float] = []
    boot: list[np.ndarray] = []
    boot_null: list[np.ndarray] = []
    extra: list[dict[str, Any]] = []
    rng_boot = np.random.default_rng([seed, 1])
    excess_rngs = [batch_rng(seed, k, 2) for k in range(N_EXCESS_SETS)]
    excess_perms = [permutations(r) for r in excess_rngs]
    descriptive = [permutations(batch_rng(seed, k, 3)) for k in range(N_DESCRIPTIVE_PERMUTATIONS)]
    for k, (name, idx) in enumerate(zip(kept, members, strict=True)):
        a, b = A[idx], B[idx]
        D = b - a
        rows = rng_boot.integers(0, idx.size, size=(n_bootstrap, idx.size))
        pair_boot, loo_boot = _resample_stats(D, rows)
        null_boots = [_resample_stats(b[perms[k]] - a, rows) for perms in excess_perms]
        loo = loo_cosines(D)
        mismatched = _repaired_cosines(a, b, D, np.stack([perms[k] for perms in descriptive]))
        for stat, value, reps, nulls, more in (
            ("mean_pairwise_cosine", mean_pairwise_cosine(D), pair_boot, [nb[0] for nb in null_boots], {}),
            ("mean_loo_cosine", float(loo.mean()), loo_boot, [nb[1] for nb in null_boots],
             {"cliffs_delta_vs_repaired": cliffs_delta(loo, mismatched),
              "mean_repaired_cosine": float(mismatched.mean())}),
        ):
            labels.append({"relation": name, "statistic": stat, "geometry": geometry, "n": int(idx.size)})
            observed.append(value)
            boot.append(reps)
            boot_null.append(np.stack(nulls))
            extra.append({"skipped_relations": skipped, **more})
    if len(kept) > 1:
        labels.append({"relation": POOLED, "statistic": "mean_pairwise_cosine", "geometry": geometry,
                       "n": int(sum(idx.size for idx in members)), "n_relations": len(kept)})
        observed.append(float(np.mean(observed[0::2])))
        boot.append(np.mean(boot[0::2], axis=0))
        boot_null.append(np.mean(boot_null[0::2], axis=0))
        extra.append({"skipped_relations": skipped, "relations": kept})
    return NullRows(labels, np.array(observed), draw, np.stack(boot), np.stack(boot_null), extra)


def token_split_rows(
    A: Any,
    B: Any,
    relations: Sequence[str],
    single_token: np.ndarray,
    *,
    inner_product: CausalInnerProduct | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> list[NullRows]:
    """:func:`relation_null_rows` on the pairs whose two words are single tokens and, apart, on the pairs with a
    multi-token word (labels ``words``: ``"single_token"`` / ``"multi_token"``); a side with no relation of
    ``MIN_PAIRS`` pairs gives no rows.

    Why apart: a multi-token word's vector averages its pieces, which is not the word's direction, so a pooled
    statistic mixes two kinds of vectors; reported side by side, a reader sees whether the relation's
    consistency is carried by whole words or by the piece averages."""
    single = np.asarray(single_token, dtype=bool)
    rel = np.asarray(list(relations), dtype=str)
    if single.shape != rel.shape:
        raise InvalidInputError(f"{single.shape[0]} single-token flags for {rel.shape[0]} pairs")
    A, B = check_vectors(A, "A"), check_vectors(B, "B")
    out = []
    for words, mask in (("single_token", single), ("multi_token", ~single)):
        sizes = [np.count_nonzero(rel[mask] == r) for r in set(rel[mask].tolist())]
        if not any(n >= MIN_PAIRS for n in sizes):
            continue
        rows = relation_null_rows(A[mask], B[mask], rel[mask], inner_product=inner_product, n_bootstrap=n_bootstrap,
                                  seed=seed)
        for lab, more in zip(rows.labels, rows.extra, strict=True):
            lab["words"] = words
            more["n_pairs_in_relation_set"] = int(rel.size)
        out.append(rows)
    return out


def primary_relation_row(rows: NullRows) -> int:
    """The row C2 decides on: the pooled mean pairwise cosine, or the only relation's."""
    return len(rows.labels) - 1 if rows.labels[-1]["relation"] == POOLED else 0


def primary_relation_index(relations: Sequence[str]) -> int:
    """:func:`primary_relation_row` read from the relations alone (rows: two per relation with enough pairs,
    then the pooled row when there are several), so a runner knows it before any vectors exist."""
    rel = [str(r) for r in relations]
    kept = [r for r in sorted(set(rel)) if rel.count(r) >= MIN_PAIRS]
    return 2 * len(kept) if len(kept) > 1 else 0


def relation_results(
    rows: NullRows,
    out: SequentialNull,
    *,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C2",
    extra: dict[str, Any] | None = None,
    n_bootstrap: int | None = None,
) -> tuple[list[TestResult], list[np.ndarray]]:
    """The consistency tests of ``rows`` (and their effect replicates, in the same order)."""
    results, replicates = [], []
    for lab, row in zip(rows.labels, outcomes(rows, out), strict=True):
        stat, geometry = lab["statistic"], lab["geometry"]
        words = lab.get("words", ALL_WORDS)
        detail = (lab["relation"],) if words == ALL_WORDS else (lab["relation"], f"{words}_words")
        results.append(TestResult(
            key=geometry_key("relation", dataset, site, position, f"{stat}_{geometry}", *detail, control=control),
            claim=claim,
            statistic_name=stat,
            statistic=row.statistic,
            effect_size_name=f"{stat} - re-paired null mean",
            effect_size=row.effect,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            p_value=row.p_value,
            n=lab["n"],
            n_groups=lab["n"],
            extra={"site": site, "relation": lab["relation"], "inner_product": geometry, "words": words,
                   "n_bootstrap": n_bootstrap if n_bootstrap is not None else int(rows.boot.shape[1]),
                   "null": "b re-paired within the relation", "ci": "matched bootstrap over pairs",
                   **row.extra, **(extra or {})},
        ))
        replicates.append(row.replicates)
    return results, replicates


@renamed_keywords(n_boot="n_bootstrap")
def relation_consistency_tests(
    A: Any,
    B: Any,
    relations: Sequence[str],
    *,
    inner_product: CausalInnerProduct | None = None,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C2",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """Per relation (with >= 3 pairs): mean pairwise and mean LOO cosine of the differences B - A, each against
    its re-pairing null (effect = statistic - null mean; CI matched to the null, see ``_nulls``).

    ``inner_product`` None is Euclidean; pass :func:`~._vector_ops.causal_inner_product` of the unembedding for
    the causal inner product. Relations with fewer pairs are skipped and listed in ``extra``. ``plan``: draw
    sequentially (deciding on the pooled, else the only, mean pairwise cosine); None: ``n_permutations`` draws.
    """
    rows = relation_null_rows(A, B, relations, inner_product=inner_product, n_bootstrap=n_bootstrap, seed=seed)
    out = fixed_or_sequential(rows, n_permutations, plan, [primary_relation_row(rows)])
    results, _ = relation_results(rows, out, dataset=dataset, site=site, position=position, control=control,
                                  claim=claim, extra=extra, n_bootstrap=n_bootstrap)
    return ResultSet(results)


def relation_directions(A: np.ndarray, B: np.ndarray, rel: np.ndarray) -> dict[str, np.ndarray]:
    """Mean difference vector of each relation."""
    return {r: (B[rel == r] - A[rel == r]).mean(axis=0) for r in sorted(set(rel.tolist()))}


def _abs_cos(x: np.ndarray, y: np.ndarray) -> float:
    return float(abs(unit_rows(x[None])[0] @ unit_rows(y[None])[0]))


@renamed_keywords(n_boot="n_bootstrap")
def relation_orthogonality_tests(
    A: Any,
    B: Any,
    relations: Sequence[str],
    targets: Sequence[tuple[str, str]],
    *,
    inner_product: CausalInnerProduct | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C2",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """``|cos|`` between mean directions of each target relation pair vs every other pair of relations in the
    set.

    statistic: ``|cos|``; effect size: median reference ``|cos|`` minus the target's (positive = more orthogonal than
    a typical pair); p: ``(1 + #{reference |cos| <= target}) / (R + 1)``, lower tail.
    """
    A, B, rel, geometry = _prepare(A, B, relations, inner_product)
    dirs = relation_directions(A, B, rel)
    if len(dirs) < 3:
        raise InvalidInputError("orthogonality needs at least three relations (two to test, others for reference)")
    names = sorted(dirs)
    results: list[TestResult] = []
    rng = np.random.default_rng(seed)
    for r1, r2 in targets:
        for r in (r1, r2):
            if r not in dirs:
                raise InvalidInputError(f"relation {r!r} not in the set; relations are {names}")
        if r1 == r2:
            raise InvalidInputError(f"orthogonality of {r1!r} with itself is not a test")
        observed = _abs_cos(dirs[r1], dirs[r2])
        reference = np.array([
            _abs_cos(dirs[x], dirs[y]) for i, x in enumerate(names) for y in names[i + 1 :] if {x, y} != {r1, r2}
        ])
        i1, i2 = np.flatnonzero(rel == r1), np.flatnonzero(rel == r2)
        boot = np.empty(n_bootstrap)
        for k in range(n_bootstrap):
            s1, s2 = rng.choice(i1, i1.size), rng.choice(i2, i2.size)
            boot[k] = _abs_cos((B[s1] - A[s1]).mean(axis=0), (B[s2] - A[s2]).mean(axis=0))
        median_ref = float(np.median(reference))
        lo, hi = np.quantile(median_ref - boot, [0.025, 0.975])
        d = A.shape[1]
        results.append(
            TestResult(
                key=geometry_key("orthogonality", dataset, site, position, f"abs_cosine_{geometry}", f"{r1}~{r2}",
                                 control=control),
                claim=claim,
                statistic_name="abs_cosine",
                statistic=observed,
                effect_size_name="reference_median_minus_abs_cosine",
                effect_size=median_ref - observed,
                ci_low=float(lo),
                ci_high=float(hi),
                p_value=one_sided_tail(observed, reference, lower=True),
                n=int(i1.size + i2.size),
                n_groups=None,
                extra={"site": site, "relations": [r1, r2], "inner_product": geometry,
                       "n_reference_pairs": int(reference.size), "reference_median": median_ref,
                       "abs_cosine_ci": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
                       "random_direction_expected_abs_cosine": float(np.sqrt(2.0 / (np.pi * d))),
                       "n_bootstrap": n_bootstrap, **(extra or {})},
            )
        )
    return ResultSet(results)
