"""The P5 PMI test (``kind = "cooccurrence"``): corpus counts, the partial correlation, its Mantel null, bad inputs.

The synthetic corpus has four latent topics: a text is a run of 8-word segments, each drawn mostly from the words
of one topic, so words of a topic co-occur (high PMI) whatever their frequency, and word frequencies are Zipf-like
and independent of the topic. A planted model's token vectors are the spectral embedding of that PMI matrix; a
null model's are Gaussian; two frequency-only models have cosines that are functions of the words' frequencies.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conceptspace.analyses.geometry._cooccurrence import (
    METRICS,
    STOP_WORDS,
    CorpusStats,
    _model_side,
    corpus_stats,
    corpus_words,
    covariate_basis,
    pair_statistics,
    partial_spearman,
    pmi_null_rows,
    pmi_results,
    read_corpus,
    select_words,
)
from conceptspace.analyses.geometry._nulls import fixed_or_sequential
from conceptspace.analyses.geometry._run_cooccurrence import model_corpus_stats, single_token_checker
from conceptspace.errors import DatasetError, InvalidInputError
from conceptspace.stats import TestResult

N_WORDS = 40


def _synthetic_corpus(seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [w for w in ("".join(p) for p in itertools.product("bcdfg", "aeiou", "klmnp"))
             if w not in STOP_WORDS][:N_WORDS]  # "can" is a stop word
    topic = np.arange(N_WORDS) % 4
    weight = 1.0 / (1 + rng.permutation(N_WORDS)) ** 0.9
    texts = []
    for _ in range(60):
        out: list[str] = []
        while len(out) < 300:
            members = np.flatnonzero(topic == rng.integers(4))
            pw, pg = weight[members] / weight[members].sum(), weight / weight.sum()
            out += [words[rng.choice(members, p=pw)] if rng.random() < 0.8 else words[rng.choice(N_WORDS, p=pg)]
                    for _ in range(8)]
        texts.append(" ".join(out))
    return texts


@pytest.fixture(scope="module")
def corpus() -> CorpusStats:
    texts = _synthetic_corpus()
    words = select_words(corpus_words(texts), lambda ws: [True] * len(ws), N_WORDS)
    return corpus_stats(texts, words, window=5, min_count=3)


def _test(X: np.ndarray, corpus: CorpusStats) -> dict[str, TestResult]:
    rows = pmi_null_rows(X, corpus, n_bootstrap=60, seed=0)
    out = fixed_or_sequential(rows, 99, None, [0])
    results, reps = pmi_results(rows, out, dataset="synthetic", site="unembed")
    assert len(reps) == len(results) == len(METRICS)
    return {r.statistic_name: r for r in results}


def _planted(corpus: CorpusStats) -> np.ndarray:
    w, V = np.linalg.eigh(np.nan_to_num(corpus.pmi))
    X = V[:, w > 0] * np.sqrt(w[w > 0])
    return X + 0.05 * np.random.default_rng(1).standard_normal(X.shape)


def _log_frequency(corpus: CorpusStats) -> np.ndarray:
    lf = np.log(corpus.counts)
    return (lf - lf.mean()) / lf.std()


def test_planted_pmi_geometry_is_significant_with_effect_above_the_claims_threshold(corpus: CorpusStats) -> None:
    primary = _test(_planted(corpus), corpus)["partial_spearman"]
    assert primary.p_value <= 0.01
    assert primary.effect_size >= 0.5 and primary.ci_low >= 0.05  # P5's min_effect is 0.05
    assert primary.key.control is None and primary.key.method == "partial_spearman"
    assert primary.n == corpus.n_pairs and primary.n_groups == N_WORDS


def test_embeddings_independent_of_the_corpus_are_not_significant(corpus: CorpusStats) -> None:
    X = np.random.default_rng(7).standard_normal((N_WORDS, 16))
    tests = _test(X, corpus)
    for name in METRICS:
        assert tests[name].p_value > 0.05, name
        assert tests[name].ci_low <= 0.0 <= tests[name].ci_high, name
    assert abs(tests["partial_spearman"].effect_size) < 0.05


@pytest.mark.parametrize("shape", ["angle", "linear"])
def test_cosines_that_follow_only_frequency_give_no_partial_correlation(corpus: CorpusStats, shape: str) -> None:
    """PMI depends on frequency in this corpus, so the raw correlation is off zero; the partial one is not."""
    z = _log_frequency(corpus)
    noise = 0.05 * np.random.default_rng(3).standard_normal((N_WORDS, 8))
    first = np.column_stack([np.cos(z), np.sin(z)]) if shape == "angle" else np.column_stack([np.ones(N_WORDS), z])
    tests = _test(np.column_stack([first, noise]), corpus)
    raw, partial = tests["spearman"], tests["partial_spearman"]
    assert abs(raw.effect_size) > 0.09
    assert partial.p_value > 0.05
    assert abs(partial.effect_size) < 0.05
    assert partial.ci_low <= 0.0 <= partial.ci_high


def test_norms_that_follow_frequency_alone_give_no_partial_correlation(corpus: CorpusStats) -> None:
    rng = np.random.default_rng(5)
    directions = rng.standard_normal((N_WORDS, 16))
    X = directions / np.linalg.norm(directions, axis=1, keepdims=True) * np.exp(_log_frequency(corpus))[:, None]
    partial = _test(X, corpus)["partial_spearman"]
    assert partial.p_value > 0.05 and partial.ci_low <= 0.0 <= partial.ci_high


def test_the_mantel_permutation_moves_rows_and_columns_together(corpus: CorpusStats) -> None:
    perm = np.random.default_rng(2).permutation(N_WORDS)
    moved = corpus.permuted(perm)
    for name in ("pmi", "cooccurrence", "scored"):
        matrix = np.nan_to_num(getattr(moved, name).astype(np.float64), nan=-99.0)
        assert np.array_equal(matrix, matrix.T), name
    iu = np.triu_indices(N_WORDS, 1)
    assert sorted(moved.cooccurrence[iu]) == sorted(corpus.cooccurrence[iu])  # the same pairs, new word labels
    assert moved.n_pairs == corpus.n_pairs
    assert np.array_equal(moved.counts, corpus.counts[perm]) and moved.words == corpus.words
    # the null's draw with perm equals the statistic on the permuted corpus, and the identity gives the data
    side = _model_side(_planted(corpus))
    ident = np.arange(N_WORDS)
    np.testing.assert_allclose(pair_statistics(side, corpus, ident, perm), pair_statistics(side, moved, ident, ident))
    rows = pmi_null_rows(_planted(corpus), corpus, n_bootstrap=2, seed=0)
    np.testing.assert_allclose(rows.observed, pair_statistics(side, corpus, ident, ident))


def test_counts_and_window_on_a_hand_made_corpus() -> None:
    texts = ["alpha beta gamma delta epsilon zeta theta iota", "alpha beta"]
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "iota"]
    stats = corpus_stats(texts, words, window=1, min_count=1)
    a, b, c = 0, 1, 2
    assert stats.cooccurrence[a, b] == stats.cooccurrence[b, a] == 2  # once per text, never across texts
    assert stats.cooccurrence[a, c] == 0 and stats.cooccurrence[b, c] == 1
    assert stats.counts[a] == 2 and stats.counts[c] == 1
    assert np.isnan(stats.pmi[a, c]) and np.isfinite(stats.pmi[a, b])
    assert stats.n_pairs == 7  # the 7 neighbours of the first text


def test_the_bundled_corpus_reads_and_yields_words() -> None:
    texts = read_corpus("python_docs_corpus")
    assert len(texts) == 79
    words = select_words(corpus_words(texts), lambda ws: [True] * len(ws), 50)
    assert "object" in words and "the" not in words and all(len(w) >= 3 for w in words)


def test_bad_inputs_say_what_to_fix(corpus: CorpusStats) -> None:
    with pytest.raises(DatasetError, match="no bundled corpus"):
        read_corpus("no_such_corpus")
    with pytest.raises(InvalidInputError, match="usable words"):
        select_words(corpus_words(["alpha beta alpha gamma"]), lambda ws: [True] * len(ws), 300)
    with pytest.raises(InvalidInputError, match="none of the words occurs"):
        corpus_stats(["", " "], [f"w{c}" for c in "abcdefgh"], window=5, min_count=1)
    with pytest.raises(InvalidInputError, match="window and min_count"):
        corpus_stats(["alpha"], ["alpha"], window=0, min_count=1)
    with pytest.raises(InvalidInputError, match="rows but the corpus"):
        pmi_null_rows(np.ones((N_WORDS - 1, 4)), corpus)
    sparse = corpus_stats(_synthetic_corpus(), corpus.words, window=1, min_count=10_000)
    with pytest.raises(InvalidInputError, match="word pairs co-occur"):
        pmi_null_rows(_planted(corpus), sparse)


def test_empty_corpus_and_token_rule_on_a_model(tiny_models) -> None:  # type: ignore[no-untyped-def]
    model = tiny_models["llama"]
    with pytest.raises(InvalidInputError, match="corpus is empty"):
        model_corpus_stats(model, ["", "  "], n_words=10, window=5, min_count=1)
    check = single_token_checker(model.tokenizer)
    words = ["the", "zyzzyvaquux"]
    encoded = model.tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    assert check(words) == [len(ids) == 1 for ids in encoded]
    assert check(["zyzzyvaquux"]) == [False]
    with pytest.raises(InvalidInputError, match="max_tokens"):
        single_token_checker(model.tokenizer, 0)


def test_few_pairs_fall_back_to_a_leaner_partialling() -> None:
    """A frequency-matched row of a small run has fewer pairs than the full basis has columns: the partial
    correlation then uses a leaner basis (finite), and a signal planted in x and y survives it."""
    rng = np.random.default_rng(4)
    covariates = rng.standard_normal((40, 4))
    shared = rng.standard_normal(40)
    x, y = shared + 0.3 * rng.standard_normal(40), shared + 0.3 * rng.standard_normal(40)
    assert covariate_basis(covariates).shape[1] > 40
    rho = partial_spearman(x, y, covariates)
    assert np.isfinite(rho) and rho > 0.6
    assert np.isnan(partial_spearman(x[:5], y[:5], covariates[:5]))  # below MIN_PAIRS
