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

from conceptspace.analyses.geometry._naming import geometry_key, null_summary
from conceptspace.analyses.geometry._vector_ops import (
    CausalInnerProduct,
    check_vectors,
    cliffs_delta,
    one_sided_tail,
    unit_rows,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import ResultSet, TestResult
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


def _permuted_b(n: int, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    return np.argsort(rng.random((n_permutations, n)), axis=1)


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
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C2",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """Per relation (with >= 3 pairs): mean pairwise cosine and mean LOO cosine of the differences B - A.

    ``inner_product`` None is Euclidean; pass :func:`~._vector_ops.causal_inner_product` of the
    unembedding for the causal inner product. Relations with fewer pairs are skipped and listed in ``extra``.
    """
    A, B, rel, geometry = _prepare(A, B, relations, inner_product)
    names = sorted(set(rel.tolist()))
    skipped = [r for r in names if np.count_nonzero(rel == r) < MIN_PAIRS]
    kept = [r for r in names if r not in skipped]
    if not kept:
        raise InvalidInputError(f"no relation has at least {MIN_PAIRS} pairs; consistency needs several pairs")
    results: list[TestResult] = []
    for k, name in enumerate(kept):
        idx = np.flatnonzero(rel == name)
        a, b = A[idx], B[idx]
        D = b - a
        n = idx.size
        rng = np.random.default_rng(seed + 7919 * k)
        perms = _permuted_b(n, n_permutations, rng)
        obs_pair = mean_pairwise_cosine(D)
        loo = loo_cosines(D)
        obs_loo = float(loo.mean())
        null_pair = np.empty(n_permutations)
        null_loo = np.empty(n_permutations)
        repaired_on_true = []
        for p, perm in enumerate(perms):
            Dp = b[perm] - a
            null_pair[p] = mean_pairwise_cosine(Dp)
            null_loo[p] = float(loo_cosines(Dp).mean())
            moved = perm != np.arange(n)
            if moved.any():
                # held-out re-paired (a_k, b_perm[k]) on the mean direction of the pairs other than k and perm[k]:
                # neither of its words may sit in the direction it is compared with (that would bias the comparison)
                direction = D.sum(axis=0)[None, :] - D - D[perm]
                cosines = np.sum(unit_rows(Dp[moved]) * unit_rows(direction[moved]), axis=1)
                repaired_on_true.append(cosines)
        mismatched = np.concatenate(repaired_on_true) if repaired_on_true else np.zeros(1)
        boot_rows = rng.integers(0, n, size=(n_bootstrap, n))
        cos = unit_rows(D) @ unit_rows(D).T
        boot_pair = np.empty(n_bootstrap)
        for r, rows in enumerate(boot_rows):
            sub = cos[np.ix_(rows, rows)]
            distinct = rows[:, None] != rows[None, :]
            boot_pair[r] = sub[distinct].mean() if distinct.any() else np.nan
        boot_loo = loo[boot_rows].mean(axis=1)
        common = {"site": site, "relation": name, "inner_product": geometry, "n_permutations": n_permutations,
                  "n_bootstrap": n_bootstrap, "null": "b re-paired within the relation", "skipped_relations": skipped,
                  **(extra or {})}
        for stat_name, observed, null, boot, more in (
            ("mean_pairwise_cosine", obs_pair, null_pair, boot_pair, {}),
            ("mean_loo_cosine", obs_loo, null_loo, boot_loo,
             {"cliffs_delta_vs_repaired": cliffs_delta(loo, mismatched),
              "mean_repaired_cosine": float(mismatched.mean())}),
        ):
            ns = null_summary(null)
            lo, hi = np.nanquantile(boot - ns["null_mean"], [0.025, 0.975])
            results.append(
                TestResult(
                    key=geometry_key("relation", dataset, site, position, f"{stat_name}_{geometry}", name,
                                     control=control),
                    claim=claim,
                    statistic_name=stat_name,
                    statistic=observed,
                    effect_size_name=f"{stat_name}_minus_repaired_null_mean",
                    effect_size=observed - ns["null_mean"],
                    ci_low=float(lo),
                    ci_high=float(hi),
                    p_value=float(permutation_p_value(observed, null)),
                    n=n,
                    n_groups=n,
                    extra={**common, **ns, **more},
                )
            )
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
