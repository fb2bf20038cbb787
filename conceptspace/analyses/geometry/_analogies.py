"""Analogy solving by vector offsets (3CosAdd, 3CosMul) with the only-b baseline beside it.

Question a : a* :: b : ?, answer b*. 3CosAdd (Mikolov et al. 2013) picks argmax_x cos(x, a*) - cos(x, a) +
cos(x, b); 3CosMul (Levy & Goldberg 2014) picks argmax_x s(x, a*) s(x, b) / (s(x, a) + eps) with
s = (cos + 1) / 2 and eps = 0.001. The three query words are never candidates.

Why the only-b baseline: in many analogy sets the nearest neighbour of b alone already is b* (plural of a
noun, a country's capital that co-occurs with it), so an offset method "solves" them without using the offset
(Linzen 2016). The test is therefore the paired difference, offset accuracy *minus* only-b accuracy on the same
questions; the seed-paper criterion (falsified if 3CosAdd <= only-b + 2 points) reads off its CI.

p-value: an intersection-union test, the larger of two permutation p-values of that same difference:

* a grouped sign-flip (groups = the target pair, whose questions share b and b*): exact when the two methods
  are exchangeable question by question, and the right reference when both solve many questions; enumerated
  over all 2^k sign patterns when at most 18 groups differ (no Monte Carlo error), else drawn;
* a re-pairing test (the b words permuted among the a words of each relation, every question rebuilt, both
  methods rerun): exact under pure noise, where the sign flip alone is not. There only-b hits are rare and
  all-or-nothing per target pair (~0.5 target pairs per data set, whatever its size), 3CosAdd's are spread, so
  the difference is skewed and the sign flip called 36% of pure-noise data sets significant (200 sets, unit
  test scale); the re-pairing test 3.5%.

The union of the two nulls is the null "3CosAdd does not beat only-b" in both regimes, so the larger p is valid
in each. The CI is the paired grouped bootstrap of the difference (same resamples for both methods), never
narrower than the re-pairing null's spread (:mod:`._nulls`), so it covers 0 when the p-value says nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._nulls import (
    NullRows,
    fixed_or_sequential,
    interval,
    matched_replicates,
    numbered,
)
from conceptspace.analyses.geometry._vector_ops import check_vectors, group_codes, unit_rows
from conceptspace.errors import InvalidInputError
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, is_settled, null_extra
from conceptspace.utils.deprecation import renamed_keywords

ANALOGY_METHODS: tuple[str, ...] = ("3cosadd", "3cosmul")
_MUL_EPS = 1e-3


@dataclass(frozen=True)
class AnalogyQuestions:
    """Questions as indices into a candidate vocabulary: rows (a, a_star, b, b_star) plus relation and group."""

    a: np.ndarray
    a_star: np.ndarray
    b: np.ndarray
    b_star: np.ndarray
    relation: np.ndarray  # str per question
    group: np.ndarray  # group id per question (bootstrap unit)
    pair_a: np.ndarray  # vocabulary index of each pair's a
    pair_b: np.ndarray  # vocabulary index of each pair's b
    pair_relation: np.ndarray  # relation of each pair
    qi: np.ndarray  # source pair of each question
    qj: np.ndarray  # target pair of each question

    def repaired(self, perm: np.ndarray) -> AnalogyQuestions:
        """The same questions after re-pairing: pair k becomes (a_k, b_perm[k])."""
        b = self.pair_b[perm]
        return AnalogyQuestions(
            self.a, b[self.qi], self.b, b[self.qj], self.relation, self.group,
            self.pair_a, b, self.pair_relation, self.qi, self.qj,
        )

    def __len__(self) -> int:
        return int(self.a.shape[0])


def questions_from_pairs(
    pairs: Sequence[tuple[str, str]],
    relations: Sequence[str],
    vocabulary: Sequence[str],
    quadruples: Sequence[tuple[int, int]],
    groups: Sequence[Hashable] | None = None,
) -> AnalogyQuestions:
    """Turn (i, j) pair-index quadruples (a_i : b_i :: a_j : b_j) into vocabulary indices.

    The group of a question is the group of its target pair j (the pair index when ``groups`` is None).
    """
    index = {w: k for k, w in enumerate(vocabulary)}
    missing = sorted({w for p in pairs for w in p if w not in index})
    if missing:
        raise InvalidInputError(f"{len(missing)} pair word(s) are not in the vocabulary, e.g. {missing[:5]}")
    if len(relations) != len(pairs):
        raise InvalidInputError(f"{len(relations)} relations for {len(pairs)} pairs")
    if not quadruples:
        raise InvalidInputError("no analogy questions: every relation needs at least two pairs")
    q = np.asarray(quadruples, dtype=np.int64)
    if q.ndim != 2 or q.shape[1] != 2 or q.min() < 0 or q.max() >= len(pairs):
        raise InvalidInputError("quadruples must be (i, j) pair indices within range")
    a_idx = np.array([index[a] for a, _ in pairs])
    b_idx = np.array([index[b] for _, b in pairs])
    rel = np.asarray(relations, dtype=object)
    grp = np.asarray(list(range(len(pairs))) if groups is None else list(groups), dtype=object)
    i, j = q[:, 0], q[:, 1]
    return AnalogyQuestions(
        a_idx[i], b_idx[i], a_idx[j], b_idx[j], rel[j].astype(str), grp[j].astype(str), a_idx, b_idx,
        rel.astype(str), i, j,
    )


def repairings(questions: AnalogyQuestions, n_permutations: int, seed: int) -> np.ndarray:
    """(B, n_pairs) permutations of the b words among the a words of each relation."""
    rng = np.random.default_rng(seed)
    return np.stack([repairing(questions, rng) for _ in range(n_permutations)])


def repairing(questions: AnalogyQuestions, rng: np.random.Generator) -> np.ndarray:
    """One permutation of the b words among the a words of each relation."""
    out = np.arange(questions.pair_a.size)
    for r in sorted(set(questions.pair_relation.tolist())):
        idx = np.flatnonzero(questions.pair_relation == r)
        out[idx] = idx[rng.permutation(idx.size)]
    return out


def analogy_scores(vectors: np.ndarray, questions: AnalogyQuestions, method: str) -> np.ndarray:
    """(n_questions, n_candidates) scores, query words set to -inf so they can never be the answer."""
    V = unit_rows(check_vectors(vectors, "vectors"))
    cos = V @ V.T
    a, a_star, b = cos[questions.a], cos[questions.a_star], cos[questions.b]
    if method == "3cosadd":
        scores = a_star - a + b
    elif method == "3cosmul":
        scores = ((a_star + 1) / 2) * ((b + 1) / 2) / ((a + 1) / 2 + _MUL_EPS)
    elif method == "only_b":
        scores = b.copy()
    else:
        raise InvalidInputError(f"unknown analogy method {method!r}; use one of {(*ANALOGY_METHODS, 'only_b')}")
    rows = np.arange(len(questions))
    for col in (questions.a, questions.a_star, questions.b):
        scores[rows, col] = -np.inf
    return scores


def analogy_correct(vectors: np.ndarray, questions: AnalogyQuestions, method: str) -> np.ndarray:
    """Boolean per question: is the top-scoring candidate the expected answer?"""
    return np.argmax(analogy_scores(vectors, questions, method), axis=1) == questions.b_star


BASELINE = "only_b"


@dataclass
class AnalogyRows:
    """Every (method, subset) row of one vector set, with the paired-difference nulls and bootstrap."""

    labels: list[dict[str, Any]]
    hits: dict[str, np.ndarray]  # method (and "only_b") -> (n_questions,) 0/1
    masks: list[np.ndarray]  # per row: which questions
    flips: NullRows  # grouped sign-flip null of accuracy minus only-b
    repaired: NullRows  # re-pairing null of the same paired difference (the guard, see the module doc)
    boot_base: np.ndarray  # (rows, R) only-b accuracy on the same resamples
    n_candidates: int
    exact_flip_p: list[float | None]  # per row: the sign-flip p by enumeration, where few groups differ
    group_sums: np.ndarray  # (rows, groups): each target pair's summed difference (what the sign flips move)


#: enumerate all 2^k sign patterns (exact p, no Monte Carlo error) when at most this many groups differ
MAX_EXACT_FLIP_GROUPS = 18


def exact_sign_flip_p(group_sums: np.ndarray) -> float | None:
    """P(sum of randomly signed group sums >= the observed sum) over all 2^k patterns of the k nonzero groups
    (groups whose sum is 0 cannot move the statistic); None when k is too large to enumerate."""
    values = group_sums[group_sums != 0.0]
    k = values.size
    if k > MAX_EXACT_FLIP_GROUPS:
        return None
    observed = float(values.sum())
    tol = 1e-10 * max(1.0, abs(observed))
    hits = 0
    patterns = np.arange(2**k, dtype=np.int64)
    for start in range(0, patterns.size, 2**16):
        bits = (patterns[start:start + 2**16, None] >> np.arange(k)) & 1
        hits += int(np.count_nonzero((1.0 - 2.0 * bits) @ values >= observed - tol))
    return hits / float(2**k)


def analogy_null_rows(
    vectors: Any,
    questions: AnalogyQuestions,
    *,
    methods: Sequence[str] = ANALOGY_METHODS,
    per_relation: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
    correct: Callable[[AnalogyQuestions, str], np.ndarray] | None = None,
    baselines: Sequence[str] = (),
) -> AnalogyRows:
    """Rows (per method: all questions, then each relation) of the paired difference accuracy - only-b accuracy,
    with two numbered null streams shared by every row (and by every site built with one seed): grouped sign
    flips (flip ``i`` from ``(seed, i)``) and re-pairings (from ``(seed, i)`` on another stream).

    ``correct(questions, method)``: which questions a method solves (default :func:`analogy_correct` over
    ``vectors``, every row a candidate; the vocabulary protocol passes a chunked scorer, see
    ``_analogy_vocabulary``). ``baselines``: further reference methods (``ignore_a``, ``add_opposite``) whose
    accuracy is reported in each row's extra as ``<name>_accuracy``, beside only-b; they are not tested."""
    vectors = check_vectors(vectors, "vectors", min_rows=4)
    if len(questions) == 0:
        raise InvalidInputError("no analogy questions")
    if n_bootstrap < 2:
        raise InvalidInputError(f"n_bootstrap must be >= 2; got {n_bootstrap}")
    methods = list(methods)
    solved = correct if correct is not None else partial(analogy_correct, vectors)
    hits = {m: solved(questions, m).astype(np.float64) for m in (*methods, BASELINE)}
    reference = {b: solved(questions, b).astype(np.float64) for b in baselines}
    subsets: list[tuple[str, np.ndarray]] = [("all", np.ones(len(questions), dtype=bool))]
    relations = sorted(set(questions.relation.tolist()))
    if per_relation and len(relations) > 1:
        subsets += [(r, questions.relation == r) for r in relations]
    codes = group_codes(questions.group, len(questions))
    n_groups = int(codes.max()) + 1
    labels: list[dict[str, Any]] = [{"method": m, "relation": name, "n": int(mask.sum()),
               "n_groups": int(np.unique(codes[mask]).size)} for m in methods for name, mask in subsets]
    masks = [mask for _ in methods for _, mask in subsets]
    sizes = np.array([mask.sum() for mask in masks], dtype=np.float64)
    # per row and group: the summed differences of that row's questions in that group, (rows, G)
    per_group = np.zeros((len(masks), n_groups))
    for r, (lab, mask) in enumerate(zip(labels, masks, strict=True)):
        np.add.at(per_group[r], codes[mask], (hits[lab["method"]] - hits[BASELINE])[mask])
    observed = per_group.sum(axis=1) / sizes

    def flip(rng: np.random.Generator) -> np.ndarray:
        return per_group @ rng.choice([-1.0, 1.0], size=n_groups) / sizes

    def repair(rng: np.random.Generator) -> np.ndarray:
        q = questions.repaired(repairing(questions, rng))
        base = solved(q, BASELINE)
        diffs = {m: solved(q, m).astype(np.float64) - base for m in methods}
        return np.array([diffs[lab["method"]][mask].mean() for lab, mask in zip(labels, masks, strict=True)])

    counts = group_counts(codes, len(questions), n_bootstrap, seed + 1)  # (R, n_questions), shared resamples

    def boot_of(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = counts * mask[None, :]
        total = w.sum(axis=1)
        return np.divide(w @ values, total, out=np.full(total.shape, np.nan), where=total > 0)

    boot_diff = np.stack([boot_of(hits[lab["method"]] - hits[BASELINE], mask) for lab, mask in zip(labels, masks,
                                                                                                   strict=True)])
    boot_base = np.stack([boot_of(hits[BASELINE], mask) for mask in masks])
    extra = [{"accuracy": float(hits[lab["method"]][mask].mean()),
              "only_b_accuracy": float(hits[BASELINE][mask].mean()),
              "accuracy_ci": list(interval(boot_of(hits[lab["method"]], mask))),
              "only_b_ci": list(interval(boot_base[r])),
              **{f"{b}_accuracy": float(reference[b][mask].mean()) for b in baselines}}
             for r, (lab, mask) in enumerate(zip(labels, masks, strict=True))]
    flips = NullRows(labels, observed, numbered(flip, seed, 4), boot_diff, None, extra)
    repaired = NullRows(labels, observed, numbered(repair, seed, 5), boot_diff, None, [{} for _ in labels])
    exact = [exact_sign_flip_p(row) for row in per_group]
    return AnalogyRows(labels, hits, masks, flips, repaired, boot_base, vectors.shape[0] - 3, exact, per_group)


def iut_settled(flips: SequentialNull, repaired: SequentialNull, row: int, exact_flip: float | None = None) -> bool:
    """Whether the decision of the larger-p test is settled: both streams settled against the thresholds, or one
    settled with its whole Monte Carlo interval above every threshold (then the other cannot change it). An exact
    sign-flip p is settled by definition (its interval is the point)."""
    thresholds = flips.plan.thresholds

    def interval_of(out: SequentialNull, exact: float | None) -> tuple[float, float]:
        return (exact, exact) if exact is not None else (float(out.mc_low[row]), float(out.mc_high[row]))

    def settled(bounds: tuple[float, float]) -> bool:
        return is_settled(np.array([bounds[0]]), np.array([bounds[1]]), thresholds)

    flip, rep = interval_of(flips, exact_flip), interval_of(repaired, None)
    return bool((settled(flip) and settled(rep)) or any(settled(b) and b[0] > max(thresholds) for b in (flip, rep)))


def analogy_results(
    rows: AnalogyRows,
    flips: SequentialNull,
    repaired: SequentialNull,
    *,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C3",
    extra: dict[str, Any] | None = None,
) -> tuple[list[TestResult], list[np.ndarray], list[TestResult], list[np.ndarray]]:
    """The paired tests of ``rows`` (accuracy minus only-b, with replicates) and the only-b baselines of each
    subset (accuracy minus chance, no p-value: a reference, not a hypothesis; with replicates).

    p = max(sign-flip p, re-pairing p): an intersection-union test, valid under either null (see the module
    doc); the CI is the paired grouped bootstrap of the difference, never narrower than the re-pairing null."""
    results, replicates, baselines, base_reps = [], [], [], []
    chance = 1.0 / max(rows.n_candidates, 1)
    common = {"site": site, "n_candidates": rows.n_candidates, "chance": chance,
              "n_bootstrap": int(rows.boot_base.shape[1]), **(extra or {})}
    seen_subsets: set[str] = set()
    for i, lab in enumerate(rows.labels):
        effect = float(rows.flips.observed[i])  # the sign-flip null mean is exactly 0
        reps = matched_replicates(effect, rows.flips.boot[i], None, repaired.null[i])
        lo, hi = interval(reps)
        exact = rows.exact_flip_p[i]
        p_flip, p_rep = (float(flips.p_value[i]) if exact is None else exact), float(repaired.p_value[i])
        deciding = flips if p_flip >= p_rep else repaired
        record = null_extra(deciding, i)
        if exact is not None and p_flip >= p_rep:  # the deciding p is exact: no Monte Carlo interval
            n_patterns = 2 ** int(np.count_nonzero(rows.group_sums[i]))
            record.update({"p_mc_low": p_flip, "p_mc_high": p_flip, "n_permutations": n_patterns})
        record.update({"settled": iut_settled(flips, repaired, i, exact), "null_mean": 0.0,
                       "null_sd": null_extra(flips, i)["null_sd"], "p_sign_flip": p_flip, "p_repaired": p_rep,
                       "sign_flip_exact": exact is not None,
                       "n_sign_flips": int(flips.n_drawn), "n_repairings": int(repaired.n_drawn),
                       "repaired_null_mean": null_extra(repaired, i)["null_mean"],
                       "repaired_null_sd": null_extra(repaired, i)["null_sd"],
                       "null": "grouped sign flips of the paired difference, and b words re-paired within each "
                               "relation (p is the larger of the two)"})
        results.append(TestResult(
            key=geometry_key("analogy", dataset, site, position, lab["method"], lab["relation"], control=control),
            claim=claim,
            statistic_name="accuracy_minus_only_b",
            statistic=effect,
            effect_size_name="accuracy - only-b accuracy (paired; null mean 0)",
            effect_size=effect,
            ci_low=lo,
            ci_high=hi,
            p_value=max(p_flip, p_rep),
            n=lab["n"],
            n_groups=lab["n_groups"],
            extra={**common, "relation": lab["relation"], **rows.flips.extra[i], **record,
                   "ci": "paired grouped bootstrap (groups: target pair), at least the re-pairing null's spread"},
        ))
        replicates.append(reps)
        if lab["relation"] in seen_subsets:
            continue
        seen_subsets.add(lab["relation"])
        base = rows.flips.extra[i]["only_b_accuracy"]
        base_rep = rows.boot_base[i] - chance
        b_lo, b_hi = interval(base_rep)
        baselines.append(TestResult(
            key=geometry_key("analogy", dataset, site, position, lab["method"], lab["relation"],
                             control=BASELINE if control is None else f"{BASELINE}@{control}"),
            claim=claim,
            statistic_name="only_b_accuracy",
            statistic=base,
            effect_size_name="only-b accuracy - chance",
            effect_size=base - chance,
            ci_low=b_lo,
            ci_high=b_hi,
            p_value=float("nan"),
            n=lab["n"],
            n_groups=lab["n_groups"],
            extra={**common, "relation": lab["relation"], "baseline": True, "only_b_accuracy": base,
                   "note": "nearest neighbour of b alone; the paired test subtracts it question by question"},
        ))
        base_reps.append(base_rep)
    return results, replicates, baselines, base_reps


@renamed_keywords(n_boot="n_bootstrap")
def analogy_tests(
    vectors: Any,
    questions: AnalogyQuestions,
    *,
    methods: Sequence[str] = ANALOGY_METHODS,
    per_relation: bool = True,
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    seed: int = 0,
    plan: SequentialPlan | None = None,
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C3",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """Each method's accuracy minus only-b accuracy on the same questions, overall and per relation, with the
    only-b baseline of each subset beside it (``control="only_b"``).

    statistic and effect: the paired difference; p: larger of the grouped sign-flip and re-pairing p-values;
    CI: paired grouped bootstrap (see the module docstring). ``plan``: draw sequentially, deciding on the first
    method's overall row; None: ``n_permutations`` draws of each null.
    """
    rows = analogy_null_rows(vectors, questions, methods=methods, per_relation=per_relation,
                             n_bootstrap=max(n_bootstrap, 2), seed=seed)
    flips = fixed_or_sequential(rows.flips, n_permutations, plan, [0])
    repaired = fixed_or_sequential(rows.repaired, n_permutations, plan, [0])
    results, _, baselines, _ = analogy_results(rows, flips, repaired, dataset=dataset, site=site,
                                               position=position, control=control, claim=claim, extra=extra)
    return ResultSet(results + baselines)
