"""Issue 14, C2: relation consistency reported apart on single-token-word pairs and on pairs with a multi-token word.

Planted arrays: the single-token pairs share their relation's offset, the multi-token pairs are random, so the
single-token rows must find a large consistency and the multi-token rows none; the pooled rows sit between. The
kind on a tiny model keeps one primary (over every pair) and labels the split rows as exploratory.
"""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses import RunContext, registry
from conceptspace.analyses.geometry._nulls import fixed_or_sequential
from conceptspace.analyses.geometry._relations import (
    ALL_WORDS,
    POOLED,
    relation_null_rows,
    relation_results,
    token_split_rows,
)
from conceptspace.errors import InvalidInputError


def _planted(seed: int = 0, n: int = 12, d: int = 32):  # type: ignore[no-untyped-def]
    """Two relations of ``n`` pairs; the first 8 pairs of each are single-token and share the relation's offset,
    the other 4 are 'multi-token' and random."""
    rng = np.random.default_rng(seed)
    A, B, rel, single = [], [], [], []
    for r in range(2):
        offset = 2.0 * rng.normal(size=d)
        for k in range(n):
            a = rng.normal(size=d)
            whole = k < 8
            A.append(a)
            B.append(a + offset + 0.3 * rng.normal(size=d) if whole else rng.normal(size=d))
            rel.append(f"rel{r}")
            single.append(whole)
    return np.array(A), np.array(B), rel, np.array(single)


def _tests(parts, n_permutations: int = 199):  # type: ignore[no-untyped-def]
    out = []
    for part in parts:
        drawn = fixed_or_sequential(part, n_permutations, None, [0])
        out += relation_results(part, drawn, dataset="planted", site="unembed")[0]
    return out


def test_single_token_pairs_carry_the_planted_direction_and_multi_token_pairs_none() -> None:
    A, B, rel, single = _planted()
    split = _tests(token_split_rows(A, B, rel, single, n_bootstrap=100, seed=0))
    pooled = {r.extra["words"]: r for r in split
              if r.extra["relation"] == POOLED and r.statistic_name == "mean_pairwise_cosine"}
    assert set(pooled) == {"single_token", "multi_token"}
    assert pooled["single_token"].effect_size > 0.3 and pooled["single_token"].p_value <= 0.01
    assert pooled["multi_token"].p_value > 0.05 and abs(pooled["multi_token"].effect_size) < 0.2
    assert pooled["single_token"].n == 16 and pooled["multi_token"].n == 8
    every = _tests([relation_null_rows(A, B, rel, n_bootstrap=100, seed=0)])
    whole = next(r for r in every if r.extra["relation"] == POOLED)
    assert whole.extra["words"] == ALL_WORDS
    assert pooled["multi_token"].statistic < whole.statistic < pooled["single_token"].statistic
    ids = [r.key for r in split + every]
    assert len(set(ids)) == len(ids)  # the split rows have keys of their own
    assert all(r.key.detail[-1] == f"{r.extra['words']}_words" for r in split)


def test_random_vectors_give_no_consistency_on_either_side() -> None:
    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(24, 32)), rng.normal(size=(24, 32))
    rel = ["r0"] * 12 + ["r1"] * 12
    single = np.tile(np.arange(12) < 7, 2)
    tests = _tests(token_split_rows(A, B, rel, single, n_bootstrap=100, seed=0))
    pooled = [r for r in tests if r.extra["relation"] == POOLED]
    assert len(pooled) == 2 and all(r.p_value > 0.05 and r.ci_low < 0.1 for r in pooled)


def test_a_side_without_three_pairs_in_any_relation_gives_no_rows() -> None:
    A, B, rel, _ = _planted()
    single = np.ones(len(rel), dtype=bool)
    single[[0, 12]] = False  # one multi-token pair per relation: too few for a consistency
    parts = token_split_rows(A, B, rel, single, n_bootstrap=20, seed=0)
    assert [{lab["words"] for lab in p.labels} for p in parts] == [{"single_token"}]
    with pytest.raises(InvalidInputError, match="single-token flags"):
        token_split_rows(A, B, rel, single[:-1])


def test_the_kind_keeps_one_primary_over_every_pair(tiny_models) -> None:  # type: ignore[no-untyped-def]
    model = tiny_models["llama"]
    analysis = registry()["relations"]
    ctx = RunContext(model=model, twin=model.untrained(0), claim="C2", seed=0, n_permutations=19, n_bootstrap=20)
    out = analysis.run(ctx, analysis.make_params({"dataset": "google_analogy/all", "sites": ["unembed"],
                                                  "relations": ["family", "gram8-plural"]}))
    (primary,) = [r for r in out.results if r.extra.get("role") == "primary"]
    assert primary.extra["words"] == ALL_WORDS and primary.extra["relation"] == POOLED
    words = {r.extra["words"] for r in out.results}
    assert ALL_WORDS in words and words - {ALL_WORDS} and words <= {ALL_WORDS, "single_token", "multi_token"}
    assert all(r.extra["role"] in ("exploratory", "control") for r in out.results if r.extra["words"] != ALL_WORDS)
    assert {r.extra["relation"] for r in out.results} == {"family", "gram8-plural", POOLED}
