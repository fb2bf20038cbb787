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
from scipy.stats import rankdata

import conceptspace.analyses.geometry._cooccurrence as cooc
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


def _plain_basis(covariates: np.ndarray, cells: bool = True, degree: int = 3) -> np.ndarray:
    """covariate_basis written out the plain way: every monomial by ``**``, one comparison per cell."""
    m = covariates.shape[0]
    columns = [np.ones(m)]
    for j in range(0, covariates.shape[1], 2):
        u, v = (_z(covariates[:, j]), _z(covariates[:, j + 1]))
        columns += [u ** a * v ** b for a in range(degree + 1) for b in range(degree + 1 - a) if a + b > 0]
    for j in range(0, min(covariates.shape[1], 4) if cells else 0, 2):
        low, high = covariates[:, j], covariates[:, j + 1]
        edges = np.quantile(np.concatenate([low, high]), np.linspace(0, 1, 9)[1:-1])
        cell = np.searchsorted(edges, low, side="right") * 8 + np.searchsorted(edges, high, side="right")
        columns += [(cell == c).astype(np.float64) for c in np.unique(cell)[1:]]
    design = np.column_stack(columns)
    keep = np.ptp(design, axis=0) > 0
    keep[0] = True
    return design[:, keep]


def _z(c: np.ndarray) -> np.ndarray:
    return (c - c.mean()) / c.std() if c.std() > 0 else np.zeros_like(c)


def _plain_partial_spearman(x: np.ndarray, y: np.ndarray, design: np.ndarray) -> float:
    """Ranks, least squares by SVD (np.linalg.lstsq, which drops a rank-deficient design's null directions),
    Pearson of the residuals: the definition, with none of the fast path's shortcuts."""
    ranks = np.column_stack([rankdata(x), rankdata(y)])
    coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    ex, ey = (ranks - design @ coef).T
    return float(ex @ ey / (np.linalg.norm(ex) * np.linalg.norm(ey)))


def _min_max_covariates(rng: np.random.Generator, m: int, levels: int | None = None) -> np.ndarray:
    """(min, max) pairs of two covariates as pair_statistics builds them; ``levels``: values on a coarse grid."""
    raw = rng.standard_normal((m, 4))
    if levels is not None:
        raw = np.round(raw * levels / 3) / levels
    return np.column_stack([np.minimum(raw[:, 0], raw[:, 1]), np.maximum(raw[:, 0], raw[:, 1]),
                            np.minimum(raw[:, 2], raw[:, 3]), np.maximum(raw[:, 2], raw[:, 3])])


@pytest.mark.parametrize("case", ["full_rank", "coarse_levels", "duplicated_pair", "binary_covariate"])
def test_the_fast_partial_correlation_equals_the_plain_least_squares(case: str) -> None:
    """The factored design, its normal equations from cell counts and sums, the certified Cholesky route and
    the shared ranks give the plain definition's number to 1e-10, full-rank or rank-deficient (then the
    eigenvector route drops the collinear columns, as lstsq does)."""
    rng = np.random.default_rng({"full_rank": 0, "coarse_levels": 1, "duplicated_pair": 2, "binary_covariate": 3}[case])
    m = 600
    covariates = _min_max_covariates(rng, m, levels=2 if case == "coarse_levels" else None)
    if case == "duplicated_pair":  # min == max for every pair: u == v, so the monomials repeat each other
        covariates[:, 1] = covariates[:, 0]
    if case == "binary_covariate":  # two values: its powers are collinear with it and the intercept
        covariates[:, 2:] = np.sort((rng.random((m, 2)) < 0.5).astype(np.float64), axis=1)
    shared = covariates @ rng.standard_normal(4)
    x = shared + rng.standard_normal(m) + 0.5 * np.round(rng.standard_normal(m))  # ties in the ranks too
    y = shared ** 2 + rng.standard_normal(m)
    y[:40] = y[40:80]  # tied values
    design = _plain_basis(covariates)
    assert np.array_equal(covariate_basis(covariates), design)
    rank = np.linalg.matrix_rank(design)
    basis = cooc._basis(covariates)
    gram, _ = basis._normal_equations(np.zeros((m, 1)))
    np.testing.assert_allclose(gram, design.T @ design, rtol=0, atol=1e-9 * m)
    certified = cooc._certified_cholesky(gram) is not None
    assert certified == (rank == design.shape[1]) == (case == "full_rank")  # both routes are exercised
    assert abs(partial_spearman(x, y, covariates) - _plain_partial_spearman(x, y, design)) <= 1e-10
    values = rng.standard_normal((m, 2))
    fast = basis.certified_residuals(values)
    if certified:
        assert fast is not None
        np.testing.assert_allclose(fast, cooc.residuals(design, values), rtol=0, atol=1e-10)
    else:  # the caller then takes the eigenvector route on the exact design
        assert fast is None


def test_the_pair_statistics_equal_the_plain_definition(corpus: CorpusStats) -> None:
    """The three metrics of a permuted draw and of a bootstrap resample (duplicated words) from the plain
    definition: pairs k < l, scored, not a word with its own copy; the frequency-matched row on its subset."""
    side = _model_side(_planted(corpus))
    rng = np.random.default_rng(9)
    lf = np.log(corpus.counts)
    bins = np.minimum(((rankdata(corpus.counts) - 1) * 5 // N_WORDS).astype(np.int64), 4)
    for model_idx, corpus_idx in ((np.arange(N_WORDS), rng.permutation(N_WORDS)),
                                  (r := rng.integers(0, N_WORDS, N_WORDS), r)):
        pairs = [(k, j) for k in range(N_WORDS) for j in range(k + 1, N_WORDS)
                 if model_idx[k] != model_idx[j] and corpus.scored[corpus_idx[k], corpus_idx[j]]]
        ma, mb = (model_idx[[p[i] for p in pairs]] for i in (0, 1))
        ca, cb = (corpus_idx[[p[i] for p in pairs]] for i in (0, 1))
        x, y = side.cos[ma, mb], corpus.pmi[ca, cb]
        na, nb, fa, fb = side.norms[ma], side.norms[mb], lf[ca], lf[cb]
        cov = np.column_stack([np.minimum(fa, fb), np.maximum(fa, fb), np.minimum(na, nb), np.maximum(na, nb)])
        same = bins[ca] == bins[cb]
        fm = _plain_basis(cov[same])
        if same.sum() < fm.shape[1] + 20:
            fm = _plain_basis(cov[same], cells=False)
        if same.sum() < fm.shape[1] + 20:
            fm = _plain_basis(cov[same], cells=False, degree=1)
        raw = float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])
        expected = [_plain_partial_spearman(x, y, _plain_basis(cov)), raw,
                    _plain_partial_spearman(x[same], y[same], fm)]
        got = pair_statistics(side, corpus, model_idx, corpus_idx)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_average_ranks_equal_scipys() -> None:
    rng = np.random.default_rng(6)
    for size in (1, 2, 17, 500):
        for values in (rng.standard_normal(size), rng.integers(0, 4, size).astype(np.float64)):
            assert np.array_equal(cooc._average_ranks(values), rankdata(values))
