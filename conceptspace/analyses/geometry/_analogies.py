"""Analogy solving by vector offsets (3CosAdd, 3CosMul) with the only-b baseline beside it.

Question a : a* :: b : ?, answer b*. 3CosAdd (Mikolov et al. 2013) picks argmax_x cos(x, a*) - cos(x, a) +
cos(x, b); 3CosMul (Levy & Goldberg 2014) picks argmax_x s(x, a*) s(x, b) / (s(x, a) + eps) with
s = (cos + 1) / 2 and eps = 0.001. The three query words are never candidates.

Why the only-b baseline: in many analogy sets the nearest neighbour of b alone already is b* (plural of a
noun, a country's capital that co-occurs with it), so an offset method "solves" them without using the offset
(Linzen 2016). The effect size is therefore offset accuracy *minus* only-b accuracy on the same questions, with
a paired grouped bootstrap CI (groups = the target pair, so questions sharing an answer move together); the
seed-paper criterion (falsified if 3CosAdd <= only-b + 2 points) reads off that CI.

The p-value is a re-pairing permutation test: the b words are permuted among the a words of each relation and
every question is rebuilt from the re-paired set. That null keeps the two word classes (and so the trivial
class offset) and asks whether the specific pairing is encoded; it is exact under pure noise. (A sign-flip test
of accuracy minus only-b is not: only-b hits are all-or-nothing per target word, 3CosAdd hits are spread out,
so their difference is skewed and sign flips called pure noise significant in 7 of 20 unit-test datasets.)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._vector_ops import (
    bootstrap_group_rows,
    check_vectors,
    group_codes,
    one_sided_tail,
    unit_rows,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats._results import ResultSet, TestResult
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
    out = np.tile(np.arange(questions.pair_a.size), (n_permutations, 1))
    for r in sorted(set(questions.pair_relation.tolist())):
        idx = np.flatnonzero(questions.pair_relation == r)
        out[:, idx] = idx[np.argsort(rng.random((n_permutations, idx.size)), axis=1)]
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
    dataset: str = "",
    site: str | None = None,
    position: str | None = None,
    control: str | None = None,
    claim: str | None = "C3",
    extra: dict[str, Any] | None = None,
) -> ResultSet:
    """Accuracy of each method, overall and per relation, tested against only-b on the same questions.

    statistic: accuracy; effect size: accuracy - only-b accuracy, with a paired grouped bootstrap CI;
    p: re-pairing permutation test of the accuracy (see the module docstring). ``extra`` has the only-b
    accuracy and CI and the re-paired null's mean accuracy.
    """
    vectors = check_vectors(vectors, "vectors", min_rows=4)
    if len(questions) == 0:
        raise InvalidInputError("no analogy questions")
    n_candidates = vectors.shape[0] - 3
    only_b = analogy_correct(vectors, questions, "only_b").astype(np.float64)
    subsets: list[tuple[str, np.ndarray]] = [("all", np.ones(len(questions), dtype=bool))]
    relations = sorted(set(questions.relation.tolist()))
    if per_relation and len(relations) > 1:
        subsets += [(r, questions.relation == r) for r in relations]
    perms = repairings(questions, n_permutations, seed)
    results: list[TestResult] = []
    rng_seed = seed
    for method in methods:
        hits = analogy_correct(vectors, questions, method).astype(np.float64)
        null_hits = np.stack([analogy_correct(vectors, questions.repaired(p), method) for p in perms])
        for name, mask in subsets:
            m_hits, m_base = hits[mask], only_b[mask]
            null = null_hits[:, mask].mean(axis=1)
            codes = group_codes(questions.group[mask], int(mask.sum()))
            observed_diff = float(m_hits.mean() - m_base.mean())
            boots = bootstrap_group_rows(codes, n_bootstrap, rng_seed + 1)
            boot_acc = np.array([m_hits[r].mean() for r in boots])
            boot_base = np.array([m_base[r].mean() for r in boots])
            lo, hi = np.quantile(boot_acc - boot_base, [0.025, 0.975])
            acc_lo, acc_hi = np.quantile(boot_acc, [0.025, 0.975])
            base_lo, base_hi = np.quantile(boot_base, [0.025, 0.975])
            results.append(
                TestResult(
                    key=geometry_key("analogy", dataset, site, position, method, name, control=control),
                    claim=claim,
                    statistic_name="accuracy",
                    statistic=float(m_hits.mean()),
                    effect_size_name="accuracy_minus_only_b",
                    effect_size=observed_diff,
                    ci_low=float(lo),
                    ci_high=float(hi),
                    p_value=one_sided_tail(float(m_hits.mean()), null),
                    n=int(mask.sum()),
                    n_groups=int(codes.max()) + 1,
                    extra={
                        "site": site,
                        "relation": name,
                        "accuracy_ci": [float(acc_lo), float(acc_hi)],
                        "only_b_accuracy": float(m_base.mean()),
                        "only_b_ci": [float(base_lo), float(base_hi)],
                        "repaired_null_mean_accuracy": float(null.mean()),
                        "null": "b words re-paired within each relation",
                        "n_candidates": n_candidates,
                        "chance": 1.0 / max(n_candidates, 1),
                        "n_permutations": n_permutations,
                        "n_bootstrap": n_bootstrap,
                        **(extra or {}),
                    },
                )
            )
            rng_seed += 2
    return ResultSet(results)
