"""The vocabulary scorer's per-triple scan and only-b shortcut give the answers of the plain block argmax.

Why: the re-pairing null of C3 scans tens of thousands of (a, a*, b) triples over ~25k candidates, so the scan
was rewritten for speed (one cached row at a time; only-b from each row's four best candidates). An answer that
moved would change every accuracy and p-value of C3, so the fast forms are held to the plain form, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses.geometry._analogy_vocabulary import (
    VOCABULARY_METHODS,
    VocabularyScorer,
    _top_candidates,
    combine,
)
from tests.unit.test_analogy_vocabulary import _Tokenizer


def _plain_scan(cos: np.ndarray, row_of: np.ndarray, triples: np.ndarray, method: str) -> np.ndarray:
    """The earlier form: gather the three rows of every triple, combine, exclude the query words, argmax."""
    a, a_star, b = triples.T
    scores = combine(cos[row_of[a]], cos[row_of[a_star]], cos[row_of[b]], method)
    rows = np.arange(a.size)
    for col in (a, a_star, b):
        scores[rows, col] = -np.inf
    return np.argmax(scores, axis=1)


def _scorer(cos: np.ndarray, query: np.ndarray, n_vocab: int) -> VocabularyScorer:
    scorer = VocabularyScorer.__new__(VocabularyScorer)
    scorer.cos = cos
    scorer.row_of = np.full(n_vocab, -1, dtype=np.int64)
    scorer.row_of[query] = np.arange(query.size)
    scorer._known = {}
    scorer._top = None
    scorer.n_scanned = 0
    return scorer


@pytest.mark.parametrize("method", VOCABULARY_METHODS)
def test_fast_scan_equals_the_plain_block_argmax_with_ties(method: str) -> None:
    rng = np.random.default_rng(3)
    n_vocab, n_query = 500, 30
    # values on a coarse grid so that ties are frequent, within a row and after combining rows
    cos = rng.integers(-4, 5, size=(n_query, n_vocab)) / 4.0
    query = rng.choice(n_vocab, n_query, replace=False)
    triples = query[rng.integers(0, n_query, size=(400, 3))]
    triples[:40, 0] = triples[:40, 2]  # repeated query words: fewer than three distinct exclusions
    scorer = _scorer(cos, query, n_vocab)
    got = scorer._scan(triples, method)
    want = _plain_scan(cos, scorer.row_of, triples, method)
    np.testing.assert_array_equal(got, want)
    assert scorer.n_scanned == 400


def test_only_b_shortcut_skips_the_query_words_among_the_best_candidates() -> None:
    cos = np.array([[0.1, 0.9, 0.9, 0.5, 0.9, 0.2]])  # three tied best at 1, 2, 4
    query = np.array([5])
    scorer = _scorer(cos, query, 6)
    # b = 5; excluding 1 and 2 leaves the third of the tie (4); excluding 1, 4 and 5 leaves 2
    got = scorer._scan(np.array([[1, 2, 5], [1, 4, 5], [3, 3, 5]]), "only_b")
    np.testing.assert_array_equal(got, [4, 2, 1])
    np.testing.assert_array_equal(_top_candidates(cos, 4)[0], [1, 2, 4, 3])


class _CountingTokenizer(_Tokenizer):
    """test_analogy_vocabulary's stand-in BPE tokenizer, counting its decodes."""

    def __init__(self, tokens: list[str]) -> None:
        super().__init__(tokens)
        self.decodes = 0

    def decode(self, ids: list[int]) -> str:
        self.decodes += 1
        return super().decode(ids)


def test_single_token_words_are_decoded_once_per_tokenizer_and_again_when_it_grows() -> None:
    from conceptspace.analyses.geometry._analogy_vocabulary import single_token_words

    tokenizer = _CountingTokenizer(["the", " the", " Paris", " paris", " cat", "ing", " 42", " sun"])
    first = single_token_words(tokenizer)
    decodes = tokenizer.decodes
    second = single_token_words(tokenizer)
    assert tokenizer.decodes == decodes  # remembered: no second decode of the vocabulary
    assert second.words == first.words == ["the", "paris", "cat", "sun"] and second.keys == first.keys == [1, 2, 4, 7]
    second.words.append("changed")  # a caller's copy: the remembered vocabulary is not touched
    assert single_token_words(tokenizer).words == ["the", "paris", "cat", "sun"]
    tokenizer.tokens.append(" dog")  # a grown tokenizer is decoded again
    assert single_token_words(tokenizer).words == ["the", "paris", "cat", "sun", "dog"]
    assert tokenizer.decodes > decodes
