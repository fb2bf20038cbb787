"""The standard analogy protocol: every answer searched over a vocabulary, as gensim's ``evaluate_word_analogies``.

Why: with only the relation's own words as candidates (``candidates="relation"``, the suite's default), an
offset method chooses among ~40 words that are all capitals or countries, so it is easy to look good; the
published numbers (Mikolov et al. 2013, Levy & Goldberg 2014, Linzen 2016) search the whole vocabulary. Here
the candidates are every single-token word of the model (or the words of a given file), the three query words
are excluded from the answers, and questions with a word outside the vocabulary are skipped, all exactly as
gensim 4.4 does (``KeyedVectors.evaluate_word_analogies`` with ``case_insensitive=True``; the unit and
integration tests compare the answers with it).

Scores are on unit-normalised vectors: 3CosAdd ``cos(x, a*) - cos(x, a) + cos(x, b)`` (gensim's ``most_similar``
ranks by the cosine with the normalised mean of the same three unit vectors: the same order), 3CosMul with
cosines shifted to [0, 1] and gensim's eps 1e-6 (``most_similar_cosmul``; the relation protocol keeps Levy and
Goldberg's 1e-3). Baselines over the same candidates (Linzen 2016): only-b ``cos(x, b)``, ignore-a
``cos(x, a*) + cos(x, b)`` and add-opposite ``cos(x, a) - cos(x, a*) + cos(x, b)``.

Nothing is cached on disk: the vocabulary is decoded from the tokenizer in well under a second, and the
cosines are computed in chunks of questions, so a 50k-word vocabulary never needs a vocabulary-square matrix.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conceptspace.analyses.geometry._analogies import AnalogyQuestions, questions_from_pairs
from conceptspace.analyses.geometry._vector_ops import check_vectors, unit_rows
from conceptspace.errors import InvalidInputError

CANDIDATES: tuple[str, ...] = ("relation", "vocabulary")
SINGLE_TOKEN_WORDS = "single_token_words"
VOCABULARY_METHODS: tuple[str, ...] = ("3cosadd", "3cosmul", "only_b", "ignore_a", "add_opposite")
VOCABULARY_BASELINES: tuple[str, ...] = ("ignore_a", "add_opposite")
GENSIM_MUL_EPS = 1e-6
#: single-token vocabularies already decoded, per tokenizer object: (len(tokenizer), vocabulary)
_VOCABULARIES: weakref.WeakKeyDictionary[Any, tuple[int, CandidateVocabulary]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class CandidateVocabulary:
    """The candidate words (lowercase, each once) and, per word, its token id (single-token vocabulary) or the
    surface form its vector is read from (a word list): ``keys`` is what the vectors are fetched by."""

    words: list[str]
    keys: list[Any]
    source: str

    def __post_init__(self) -> None:
        if len(self.words) != len(self.keys):
            raise InvalidInputError(f"{len(self.words)} words for {len(self.keys)} keys")
        if len(self.words) < 4:
            raise InvalidInputError(f"a candidate vocabulary needs at least 4 words; got {len(self.words)}")

    def __len__(self) -> int:
        return len(self.words)


def single_token_words(tokenizer: Any) -> CandidateVocabulary:
    """:func:`_single_token_words`, remembered per tokenizer object (and its length) for the life of the process:
    decoding and re-encoding the whole vocabulary costs ~2 CPU s, and a run asks again for every vocabulary
    analysis (c3_analogies and c3_lre read the same tokenizer)."""
    try:
        known = _VOCABULARIES.get(tokenizer)
    except TypeError:  # a tokenizer that cannot be weakly referenced or hashed: nothing is remembered
        return _single_token_words(tokenizer)
    if known is None or known[0] != len(tokenizer):
        known = (len(tokenizer), _single_token_words(tokenizer))
        _VOCABULARIES[tokenizer] = known
    words = known[1]
    return CandidateVocabulary(list(words.words), list(words.keys), words.source)


def _single_token_words(tokenizer: Any) -> CandidateVocabulary:
    """Every alphabetic ASCII word that is one token where it follows another word, lowercased; the lowest id
    per word.

    Why this definition. The analogy words stand inside a sentence, so the token that matters is the word's
    in-context form: " word" for a byte-level BPE (GPT-2, SmolLM2), "\u2581word" for SentencePiece, the plain
    piece for WordPiece (BERT). A token counts when encoding "the <word>" gives the encoding of "the" followed by
    exactly that token, which is the one rule that finds the in-context form in all three families (for a BPE
    tokenizer it is the space-prefixed token; a sentence-initial form, a word piece or a continuation piece such
    as "##ing" never passes). Non-alphabetic tokens (numbers, punctuation, byte fragments) are not words of the
    analogy sets. Lowercasing matches gensim's case-insensitive evaluation: " Paris" and " paris" are one
    candidate and, like gensim, which keeps the first (most frequent) of words that differ only in case, the
    lower id is kept, i.e. the earlier BPE merge, the more frequent form (" Athens", not " athens").
    """
    prefix = list(tokenizer("the", add_special_tokens=False)["input_ids"])
    ids, words = [], []
    for token_id in range(len(tokenizer)):
        word = tokenizer.decode([token_id]).strip()
        if word and word.isascii() and word.isalpha():
            ids.append(token_id)
            words.append(word)
    seen: dict[str, int] = {}
    for start in range(0, len(words), 4096):
        encoded = tokenizer([f"the {w}" for w in words[start:start + 4096]], add_special_tokens=False)["input_ids"]
        for token_id, word, row in zip(ids[start:start + 4096], words[start:start + 4096], encoded, strict=True):
            if list(row) == [*prefix, token_id]:
                seen.setdefault(word.lower(), token_id)
    return CandidateVocabulary(list(seen), list(seen.values()), SINGLE_TOKEN_WORDS)


def word_list(path: str | Path) -> CandidateVocabulary:
    """Candidate words from a text file, one word a line (blank lines and ``#`` comments skipped); matched
    case-insensitively, the first spelling of a word kept (its vector is read from that spelling)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"vocabulary {str(path)!r} is neither {SINGLE_TOKEN_WORDS!r} nor a file of words")
    seen: dict[str, str] = {}
    for line in file.read_text(encoding="utf-8").splitlines():
        word = line.strip()
        if word and not word.startswith("#"):
            if any(c.isspace() for c in word):
                raise InvalidInputError(f"{file}: one word a line; got {word!r}")
            seen.setdefault(word.lower(), word)
    return CandidateVocabulary(list(seen), list(seen.values()), str(file))


def vocabulary_questions(
    pairs: Sequence[tuple[str, str]],
    relations: Sequence[str],
    vocabulary: CandidateVocabulary,
    quadruples: Sequence[tuple[int, int]],
    groups: Sequence[Any] | None = None,
) -> tuple[AnalogyQuestions, dict[str, int]]:
    """Questions over the candidate vocabulary, matched case-insensitively; a pair with a word outside it is
    dropped with every question that uses it (gensim skips such questions), and the counts say how many."""
    known = set(vocabulary.words)
    keep = [all(w.lower() in known for w in pair) for pair in pairs]
    new_index = np.cumsum(keep) - 1
    kept_quads = [(int(new_index[i]), int(new_index[j])) for i, j in quadruples if keep[i] and keep[j]]
    if not kept_quads:
        raise InvalidInputError(f"no analogy question has all four words in the vocabulary ({vocabulary.source})")
    kept = [k for k, ok in enumerate(keep) if ok]
    questions = questions_from_pairs(
        [(pairs[k][0].lower(), pairs[k][1].lower()) for k in kept], [relations[k] for k in kept],
        vocabulary.words, kept_quads, None if groups is None else [groups[k] for k in kept],
    )
    counts = {"n_vocabulary": len(vocabulary), "n_pairs_skipped": len(pairs) - len(kept),
              "n_questions_skipped": len(quadruples) - len(kept_quads)}
    return questions, counts


def combine(ca: np.ndarray, ca_star: np.ndarray, cb: np.ndarray, method: str) -> np.ndarray:
    """One method's scores from the cosines of the candidates with a, a* and b (see the module docstring)."""
    if method == "3cosadd":
        return ca_star - ca + cb
    if method == "3cosmul":
        return ((ca_star + 1) / 2) * ((cb + 1) / 2) / ((ca + 1) / 2 + GENSIM_MUL_EPS)
    if method == "only_b":
        return cb.copy()
    if method == "ignore_a":
        return ca_star + cb
    if method == "add_opposite":
        return ca - ca_star + cb
    raise InvalidInputError(f"unknown analogy method {method!r}; use one of {VOCABULARY_METHODS}")


class VocabularyScorer:
    """Answers over a whole candidate vocabulary, cheaply enough for the re-pairing null's many reruns.

    Every question (also a re-paired one) draws its a, a* and b from the pair words, so the cosines of those
    few words with every candidate are computed once; each answer is then an argmax over one row combination.

    Why answers are remembered: an answer depends only on the query words (a, a*, b), and a re-pairing keeps each
    question's a and b and draws a* from the b words of its relation, so a thousand re-pairings of ~900 questions
    ask the same few tens of thousands of triples again and again. Each triple is scanned over the vocabulary
    once (a memory-bound argmax over ~25k candidates) and looked up afterwards: the null then costs about as
    much as scanning every (question, possible a*) once, twenty times less than scanning every rerun in full,
    and the answers are those of the full scan by construction.
    """

    def __init__(self, vectors: np.ndarray, questions: AnalogyQuestions) -> None:
        U = unit_rows(check_vectors(vectors, "vectors", min_rows=4))
        query = np.unique(np.concatenate([questions.pair_a, questions.pair_b]))
        self.row_of = np.full(U.shape[0], -1, dtype=np.int64)
        self.row_of[query] = np.arange(query.size)
        self.cos = U[query] @ U.T  # (pair words, candidates)
        self._known: dict[str, dict[tuple[int, int, int], int]] = {}
        self.n_scanned = 0  # query triples scanned over the whole vocabulary (the rest were remembered)
        self._top: np.ndarray | None = None  # (pair words, 4) best candidates of each row (only-b answers)

    def answers(self, questions: AnalogyQuestions, method: str) -> np.ndarray:
        """(n_questions,) vocabulary index of each answer, the three query words excluded."""
        if method not in VOCABULARY_METHODS:
            raise InvalidInputError(f"unknown analogy method {method!r}; use one of {VOCABULARY_METHODS}")
        known = self._known.setdefault(method, {})
        triples = list(zip(questions.a.tolist(), questions.a_star.tolist(), questions.b.tolist(), strict=True))
        new = list(dict.fromkeys(t for t in triples if t not in known))
        if new:
            found = self._scan(np.array(new, dtype=np.int64).reshape(-1, 3), method)
            known.update(zip(new, found.tolist(), strict=True))
        return np.array([known[t] for t in triples], dtype=np.int64)

    def _scan(self, triples: np.ndarray, method: str) -> np.ndarray:
        """The full-vocabulary argmax of each (a, a*, b) row, the three query words excluded.

        One triple at a time through a buffer one vocabulary row long: the three cosine rows and the buffer stay
        in cache, where gathering a block of rows first wrote and re-read ~13 MB per 64 triples (3x slower, the
        same answers: the same float operations in the same order, and argmax keeps the first of ties).
        """
        self.n_scanned += int(triples.shape[0])
        if method == "only_b":
            return self._scan_only_b(triples)
        out = np.empty(triples.shape[0], dtype=np.int64)
        buffer = np.empty(self.cos.shape[1])
        rows = self.row_of[triples]  # (t, 3) rows of self.cos
        for i in range(triples.shape[0]):
            ca, ca_star, cb = self.cos[rows[i, 0]], self.cos[rows[i, 1]], self.cos[rows[i, 2]]
            if method == "3cosadd":  # combine's ca_star - ca + cb, evaluated left to right in place
                np.subtract(ca_star, ca, out=buffer)
                buffer += cb
            else:
                buffer[:] = combine(ca, ca_star, cb, method)
            buffer[triples[i]] = -np.inf
            out[i] = int(np.argmax(buffer))
        return out

    def _scan_only_b(self, triples: np.ndarray) -> np.ndarray:
        """The only-b answers from each b row's four best candidates: with at most three words excluded, the
        answer is the first of them not excluded, the order (cosine descending, index ascending among ties)
        being the one a full argmax reads, so the answers equal the full scan's."""
        if self._top is None:
            self._top = _top_candidates(self.cos, 4)
        out = np.empty(triples.shape[0], dtype=np.int64)
        for i, (a, a_star, b) in enumerate(triples.tolist()):
            out[i] = next(c for c in self._top[self.row_of[b]].tolist() if c not in (a, a_star, b))
        return out

    def correct(self, questions: AnalogyQuestions, method: str) -> np.ndarray:
        """Boolean per question: is the answer the expected b*?"""
        return self.answers(questions, method) == questions.b_star


def _top_candidates(cos: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) column indices of each row's k largest values in the order repeated argmaxes read them (value
    descending, the lower index first among ties; a NaN counts as largest, as np.argmax treats it)."""
    out = np.empty((cos.shape[0], k), dtype=np.int64)
    for r in range(cos.shape[0]):
        row = cos[r].copy()
        for j in range(k):
            out[r, j] = int(np.argmax(row))
            row[out[r, j]] = -np.inf
    return out
