"""Representational similarity analysis (RSA) with a Mantel permutation test.

Why: the concept-space reading says nearness in embedding space is semantic relatedness. RSA compares the
model's pairwise similarities with a reference similarity matrix (human ratings, co-occurrence, or the one
implied by shared category) by the Spearman correlation of their upper triangles. Entries of a similarity
matrix are not independent (each item appears in n - 1 of them), so the p-value comes from the Mantel test:
permute the items of the reference (rows and columns together) and recompute. Ranks are computed once: a
simultaneous row/column permutation only moves the off-diagonal values around, so their ranks move with them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from conceptspace._deprecation import renamed_keywords
from conceptspace.analyses.geometry._naming import geometry_key, null_summary
from conceptspace.analyses.geometry._vector_ops import bootstrap_group_rows, check_vectors, cosine_matrix, group_codes
from conceptspace.errors import InvalidInputError
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import ResultSet, TestResult


def category_similarity(labels: Any) -> np.ndarray:
    """Reference similarity implied by shared category: 1 for the same label, 0 otherwise."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size < 3:
        raise InvalidInputError("category similarity needs a 1-D label array with at least three items")
    return (arr[:, None] == arr[None, :]).astype(np.float64)


def _check_square(S: Any, n: int | None, name: str) -> np.ndarray:
    arr = np.asarray(S, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InvalidInputError(f"{name} must be a square (n, n) matrix; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"{name} is {arr.shape[0]}x{arr.shape[0]} but there are {n} items")
    if arr.shape[0] < 3:
        raise InvalidInputError(f"{name} needs at least three items")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    if not np.allclose(arr, arr.T, atol=1e-8):
        raise InvalidInputError(f"{name} must be symmetric")
    return arr


def _rank_matrix(S: np.ndarray) -> np.ndarray:
    """Symmetric matrix of the (average-tie) ranks of S's upper-triangle entries, centred, diagonal 0."""
    n = S.shape[0]
    iu = np.triu_indices(n, 1)
    ranks = rankdata(S[iu])
    out = np.zeros_like(S)
    out[iu] = ranks - ranks.mean()
    return out + out.T


def mantel_test(
    model_similarity: Any, reference_similarity: Any, *, n_permutations: int = 1000, seed: int = 0
) -> tuple[float, np.ndarray]:
    """Spearman correlation of the upper triangles and its Mantel null (items of the reference permuted).

    Returns ``(rho, null)``; the one-sided p-value is ``permutation_p_value(rho, null)``.
    """
    M = _check_square(model_similarity, None, "model_similarity")
    R = _check_square(reference_similarity, M.shape[0], "reference_similarity")
    n = M.shape[0]
    iu = np.triu_indices(n, 1)
    rm, rr = _rank_matrix(M)[iu], _rank_matrix(R)
    if np.allclose(rr, 0.0) or np.allclose(rm, 0.0):
        raise InvalidInputError("a similarity matrix with constant off-diagonal entries has no structure to compare")
    denom = np.linalg.norm(rm) * np.linalg.norm(rr[iu])
    rho = float(rm @ rr[iu] / denom)
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for b in range(n_permutations):
        p = rng.permutation(n)
        null[b] = rm @ rr[np.ix_(p, p)][iu] / denom
    return rho, null


def _spearman_on_rows(M: np.ndarray, R: np.ndarray, rows: np.ndarray) -> float:
    sub_m, sub_r = M[np.ix_(rows, rows)], R[np.ix_(rows, rows)]
    iu = np.triu_indices(rows.size, 1)
    keep = rows[iu[0]] != rows[iu[1]]  # a resampled item is not compared with its own copy
    x, y = rankdata(sub_m[iu][keep]), rankdata(sub_r[iu][keep])
    x, y = x - x.mean(), y - y.mean()
    den = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / den) if den > 0 else np.nan


@renamed_keywords(n_boot="n_bootstrap")
def rsa_tests(
    X: Any,
    reference_similarity: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 300,
    seed: int = 0,
    dataset: str = "",
    reference_name: str = "reference",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C1",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """RSA of the cosine similarities of X's rows against ``reference_similarity``, with the Mantel p-value.

    statistic and effect size: Spearman rho; CI: grouped bootstrap over items (pairs of an item with its own
    resampled copy left out).
    """
    X = check_vectors(X, min_rows=3)
    R = _check_square(reference_similarity, X.shape[0], "reference_similarity")
    M = cosine_matrix(X)
    rho, null = mantel_test(M, R, n_permutations=n_permutations, seed=seed)
    codes = group_codes(groups, X.shape[0])
    boot = np.array([_spearman_on_rows(M, R, rows) for rows in bootstrap_group_rows(codes, n_bootstrap, seed + 1)])
    lo, hi = np.nanquantile(boot, [0.025, 0.975])
    result = TestResult(
        key=geometry_key("rsa", dataset, site, position, "rsa_mantel_spearman", reference_name, control=control),
        claim=claim,
        statistic_name="spearman_rho",
        statistic=rho,
        effect_size_name="spearman_rho",
        effect_size=rho,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(permutation_p_value(rho, null)),
        n=X.shape[0],
        n_groups=int(codes.max()) + 1,
        extra={"site": site, "reference": reference_name, "n_permutations": n_permutations, "n_bootstrap": n_bootstrap,
               **null_summary(null), **(extra or {})},
    )
    return ResultSet([result])
