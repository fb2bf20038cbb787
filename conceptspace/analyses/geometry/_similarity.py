"""Representational similarity analysis (RSA) with a Mantel permutation test, and rated word pairs.

Why: the concept-space reading says nearness in embedding space is semantic relatedness. RSA compares the
model's pairwise similarities with a reference similarity matrix (human ratings, co-occurrence, or the one
implied by shared category) by the Spearman correlation of their upper triangles. Entries of a similarity
matrix are not independent (each item appears in n - 1 of them), so the p-value comes from the Mantel test:
permute the items of the reference (rows and columns together) and recompute. Ranks are computed once: a
simultaneous row/column permutation only moves the off-diagonal values around, so their ranks move with them.

Human similarity norms (SimLex-999, WordSim-353, MEN) are not matrices but lists of rated pairs
``(word1, word2, score)`` covering a sparse subset of all pairs; :func:`pair_similarity_test` scores those
directly with the same logic: words, not pairs, are the exchangeable and resampled units.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from conceptspace.analyses.geometry._naming import geometry_key, null_summary
from conceptspace.analyses.geometry._nulls import NullRows, batch_rng, fixed_or_sequential, numbered, outcomes
from conceptspace.analyses.geometry._vector_ops import (
    bootstrap_group_rows,
    check_vectors,
    cosine_matrix,
    group_codes,
    standardized_ranks,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan
from conceptspace.utils.deprecation import renamed_keywords


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


#: permuted data sets whose bootstrap measures the bootstrap's excess variance (see ``_nulls``)
N_EXCESS_SETS = 4


def rsa_null_rows(
    X: Any,
    reference_similarity: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_bootstrap: int = 300,
    seed: int = 0,
) -> NullRows:
    """One row, the Spearman RSA of X's cosines with the reference, with its Mantel stream: permutation ``i``
    (items of the reference, rows and columns together) comes from ``(seed, i)``, so several sites built with
    one seed share their draws."""
    X = check_vectors(X, min_rows=3)
    R = _check_square(reference_similarity, X.shape[0], "reference_similarity")
    if n_bootstrap < 2:
        raise InvalidInputError(f"n_bootstrap must be >= 2; got {n_bootstrap}")
    M = cosine_matrix(X)
    n = M.shape[0]
    iu = np.triu_indices(n, 1)
    rm, rr = _rank_matrix(M)[iu], _rank_matrix(R)
    if np.allclose(rr, 0.0) or np.allclose(rm, 0.0):
        raise InvalidInputError("a similarity matrix with constant off-diagonal entries has no structure to compare")
    denom = np.linalg.norm(rm) * np.linalg.norm(rr[iu])
    rho = float(rm @ rr[iu] / denom)

    def one(rng: np.random.Generator) -> np.ndarray:
        p = rng.permutation(n)
        return np.array([rm @ rr[np.ix_(p, p)][iu] / denom])

    codes = group_codes(groups, n)
    resamples = bootstrap_group_rows(codes, n_bootstrap, seed + 1)
    boot = np.array([_spearman_on_rows(M, R, rows) for rows in resamples])
    boot_null = []
    for k in range(N_EXCESS_SETS):
        p = batch_rng(seed, k, 2).permutation(n)
        Rp = R[np.ix_(p, p)]
        boot_null.append([_spearman_on_rows(M, Rp, rows) for rows in resamples])
    return NullRows([{"n": n, "n_groups": int(codes.max()) + 1}], np.array([rho]), numbered(one, seed, 0),
                    boot[None, :], np.array(boot_null)[None, :, :])


def rsa_results(
    rows: NullRows,
    out: SequentialNull,
    *,
    dataset: str = "",
    reference_name: str = "reference",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C1",
    extra: dict[str, Any] | None = None,
) -> tuple[list[TestResult], list[np.ndarray]]:
    """The RSA test of ``rows`` (and its effect replicates)."""
    (lab,), (row,) = rows.labels, outcomes(rows, out)
    result = TestResult(
        key=geometry_key("rsa", dataset, site, position, "rsa_mantel_spearman", reference_name, control=control),
        claim=claim,
        statistic_name="spearman_rho",
        statistic=row.statistic,
        effect_size_name="spearman_rho - Mantel null mean",
        effect_size=row.effect,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        p_value=row.p_value,
        n=lab["n"],
        n_groups=lab["n_groups"],
        extra={"site": site, "reference": reference_name, "n_bootstrap": int(rows.boot.shape[1]),
               "null": "items of the reference permuted (Mantel)", "ci": "matched grouped bootstrap over items",
               **row.extra, **(extra or {})},
    )
    return [result], [row.replicates]


@renamed_keywords(n_boot="n_bootstrap")
def rsa_tests(
    X: Any,
    reference_similarity: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 300,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    dataset: str = "",
    reference_name: str = "reference",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C1",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """RSA of the cosine similarities of X's rows against ``reference_similarity``, with the Mantel p-value.

    statistic: Spearman rho; effect: rho - Mantel null mean; CI: grouped bootstrap over items (pairs of an item
    with its own resampled copy left out) matched to the null (``_nulls``). ``plan``: draw sequentially;
    None: ``n_permutations`` draws.
    """
    rows = rsa_null_rows(X, reference_similarity, groups=groups, n_bootstrap=max(n_bootstrap, 2), seed=seed)
    out = fixed_or_sequential(rows, n_permutations, plan, [0])
    results, _ = rsa_results(rows, out, dataset=dataset, reference_name=reference_name, site=site,
                             position=position, control=control, claim=claim, extra=extra)
    return ResultSet(results)


def _pair_indices(words: Sequence[str], pairs: Any, n_rows: int) -> np.ndarray:
    """(m, 2) row indices of the rated pairs, or an error naming the words that have no vector."""
    names = [str(w) for w in words]
    if len(names) != n_rows:
        raise InvalidInputError(f"words names {len(names)} rows but X has {n_rows}; give one word per row of X")
    index = {w: i for i, w in enumerate(names)}
    if len(index) != len(names):
        repeated = sorted({w for w in names if names.count(w) > 1})
        raise InvalidInputError(f"words must be unique (one vector per word); repeated: {repeated[:10]}")
    arr = np.asarray(pairs, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInputError(f"pairs must be (word1, word2) rows, shape (m, 2); got shape {arr.shape}")
    missing = sorted({str(w) for w in arr.ravel() if str(w) not in index})
    if missing:
        raise InvalidInputError(
            f"{len(missing)} word(s) of the pairs have no row in X: {missing[:10]}; extract them or drop those pairs"
        )
    rows = np.array([[index[str(a)], index[str(b)]] for a, b in arr], dtype=np.int64).reshape(-1, 2)
    if np.any(rows[:, 0] == rows[:, 1]):
        raise InvalidInputError("a pair joins a word with itself (cosine 1 by construction); drop it")
    return rows


def _check_scores(scores: Any, m: int) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (m,):
        raise InvalidInputError(f"scores must hold one rating per pair ({m}); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError("scores contains NaN or infinite ratings; drop those pairs")
    if m < 3:
        raise InvalidInputError("a rank correlation needs at least three rated pairs")
    if np.ptp(arr) == 0:
        raise InvalidInputError("every pair has the same rating; there is no ordering to compare with")
    return arr


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation (average-tie ranks), NaN when either side is constant."""
    rx, ry = standardized_ranks(x), standardized_ranks(y)
    if not (rx.any() and ry.any()):
        return np.nan
    return float(rx @ ry)


def _word_bootstrap(
    cosines: np.ndarray, scores: np.ndarray, rows: np.ndarray, codes: np.ndarray, n_bootstrap: int, seed: int
) -> np.ndarray:
    """Spearman rho of ``n_bootstrap`` word-level resamples: pair (u, v) enters ``count[u] * count[v]`` times."""
    counts = group_counts(codes, codes.shape[0], n_bootstrap, seed).astype(np.int64)  # (B, n_words)
    out = np.empty(n_bootstrap)
    pair_ids = np.arange(rows.shape[0])
    for b in range(n_bootstrap):
        weight = counts[b, rows[:, 0]] * counts[b, rows[:, 1]]
        drawn = np.repeat(pair_ids, weight)
        out[b] = _spearman(cosines[drawn], scores[drawn]) if drawn.size >= 3 else np.nan
    return out


def _word_permutation_null(
    C: np.ndarray, rows: np.ndarray, score_ranks: np.ndarray, n_permutations: int, seed: int
) -> np.ndarray:
    """Spearman rho with the words' vectors shuffled among the words (pairs and ratings fixed)."""
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    chunk = max(1, 2**22 // max(rows.shape[0], 1))
    for start in range(0, n_permutations, chunk):
        perms = np.stack([rng.permutation(C.shape[0]) for _ in range(min(chunk, n_permutations - start))])
        permuted = C[perms[:, rows[:, 0]], perms[:, rows[:, 1]]]  # (b, m)
        null[start : start + perms.shape[0]] = standardized_ranks(permuted) @ score_ranks
    return null


def pair_similarity_test(
    X: Any,
    words: Sequence[str],
    pairs: Any,
    scores: Any,
    *,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    dataset: str = "",
    reference_name: str = "human_ratings",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C1",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """Spearman rho between the model's cosine of each rated word pair and the human score (SimLex/WordSim style).

    ``X`` (n_words, d) holds one vector per entry of ``words``; ``pairs`` is (m, 2) words and ``scores`` the m
    ratings. Only the rated pairs are compared, so a sparse pair list needs no similarity matrix; rows of X
    whose word is in no pair are ignored.

    * statistic and effect size: Spearman rho (average-tie ranks; equals ``scipy.stats.spearmanr``).
    * p-value, one-sided (rho larger than chance): the words' vectors are permuted among the words and the
      pairs' cosines recomputed, the Mantel test's logic for a pair list. Pairs that share a word are not
      independent (one vector enters all of them), and permuting the ratings across pairs would ignore that;
      permuting words keeps the structure of the pair graph and breaks only the word-vector link under test.
    * CI: percentile interval of a grouped bootstrap over **words**, not pairs: words (or the ``groups`` of
      words given, e.g. inflections of one lemma, one id per row of X) are drawn with replacement and a pair
      enters a replicate once per drawn copy of each of its words (``count[u] * count[v]`` times). Resampling
      pairs as if independent would treat the many pairs of a frequent word as separate evidence and give
      intervals that are too narrow. On a sparse list (each word in few pairs) a replicate keeps only the pairs
      both of whose words were drawn, so this interval is conservative rather than too narrow.
    """
    X = check_vectors(X, min_rows=3)
    rows = _pair_indices(words, pairs, X.shape[0])
    y = _check_scores(scores, rows.shape[0])
    if not 0.0 < level < 1.0:
        raise InvalidInputError(f"level must be in (0, 1); got {level}")
    all_codes = group_codes(groups, X.shape[0])
    used, compact = np.unique(rows, return_inverse=True)  # words outside every pair take no part
    rows = compact.reshape(-1, 2)
    codes = np.unique(all_codes[used], return_inverse=True)[1].astype(np.int64)
    C = cosine_matrix(X[used])
    cosines = C[rows[:, 0], rows[:, 1]]
    rho = _spearman(cosines, y)
    if np.isnan(rho):
        raise InvalidInputError("every rated pair has the same cosine; the vectors give no ordering to compare")
    null = _word_permutation_null(C, rows, standardized_ranks(y), n_permutations, seed)
    boot = _word_bootstrap(cosines, y, rows, codes, n_bootstrap, seed + 1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(boot, [tail, 1.0 - tail])
    result = TestResult(
        key=geometry_key("word_pairs", dataset, site, position, "pair_cosine_spearman", reference_name,
                         control=control),
        claim=claim,
        statistic_name="spearman_rho",
        statistic=rho,
        effect_size_name="spearman_rho",
        effect_size=rho,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(permutation_p_value(rho, null)),
        n=rows.shape[0],
        n_groups=int(codes.max()) + 1,
        extra={
            "site": site,
            "reference": reference_name,
            "n_words": int(used.size),
            "n_permutations": n_permutations,
            "permutation": "words' vectors shuffled among words; pairs and ratings fixed",
            "n_bootstrap": n_bootstrap,
            "bootstrap_unit": "word" if groups is None else "word group",
            "n_boot_undefined": int(np.count_nonzero(np.isnan(boot))),
            "ci_level": level,
            "seed": seed,
            **null_summary(null),
            **(extra or {}),
        },
    )
    return ResultSet([result])
