"""The vocabulary analogy protocol: single-token words, the five scores, and parity with gensim's evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conceptspace.analyses.geometry._analogies import analogy_null_rows
from conceptspace.analyses.geometry._analogy_vocabulary import (
    VOCABULARY_BASELINES,
    CandidateVocabulary,
    VocabularyScorer,
    single_token_words,
    vocabulary_questions,
    word_list,
)
from conceptspace.errors import InvalidInputError


class _Tokenizer:
    """A stand-in BPE tokenizer: ``decode([i])`` is the i-th token's text."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def __call__(self, texts, add_special_tokens=False):  # type: ignore[no-untyped-def]
        """Greedy in-context encoding: the first word as its bare token, later words as their " word" token, a
        word without such a token as one id per character (never a single token)."""
        def encode(text: str) -> list[int]:
            out: list[int] = []
            for position, word in enumerate(text.split(" ")):
                form = word if position == 0 else " " + word
                out += [self.tokens.index(form)] if form in self.tokens else [-1] * len(form)
            return out

        return {"input_ids": encode(texts) if isinstance(texts, str) else [encode(t) for t in texts]}


def test_single_token_words_keeps_space_prefixed_alphabetic_tokens_lowercased_lowest_id_first() -> None:
    tok = _Tokenizer(["ing", " Paris", " the", " 123", " café", " paris", "Paris", " a-b", " ", " The", " x",
                      " Berlin", "the"])
    vocab = single_token_words(tok)
    assert vocab.words == ["paris", "the", "x", "berlin"]
    assert vocab.keys == [1, 2, 10, 11]  # " Paris" (id 1) beats " paris" (id 5); " The" (9) loses to " the" (2)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_single_token_words_finds_in_context_words_of_real_tokenizer_families(tiny_models, arch) -> None:  # type: ignore[no-untyped-def]
    """Byte-level BPE, SentencePiece-style and WordPiece: each word found is one token after another word, and
    no continuation piece ("##ing", a bare BPE piece) is taken for a word."""
    tok = tiny_models[arch].tokenizer
    vocab = single_token_words(tok)
    assert len(vocab.words) > 20
    prefix = tok("the", add_special_tokens=False)["input_ids"]
    for word, token_id in list(zip(vocab.words, vocab.keys, strict=True))[:200]:
        text = tok.decode([token_id]).strip()
        assert text.lower() == word
        assert tok(f"the {text}", add_special_tokens=False)["input_ids"] == [*prefix, token_id]
        assert not tok.convert_ids_to_tokens(token_id).startswith("##")


def test_word_list_reads_one_word_a_line_case_insensitively(tmp_path: Path) -> None:
    f = tmp_path / "words.txt"
    f.write_text("# comment\nParis\nparis\n\nFrance\nBerlin\nGermany\n", encoding="utf-8")
    vocab = word_list(f)
    assert vocab.words == ["paris", "france", "berlin", "germany"]
    assert vocab.keys == ["Paris", "France", "Berlin", "Germany"]
    with pytest.raises(InvalidInputError, match="neither"):
        word_list(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("new york\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="one word a line"):
        word_list(tmp_path / "bad.txt")


def _planted(seed: int, n_pairs: int = 12, n_fillers: int = 150, d: int = 16, noise: float = 0.6):
    """Two relations of capitalised pairs (b = a + offset + noise) among random filler words: some questions are
    solved and some are not, so per-question agreement is a real check. One pair's b is out of vocabulary."""
    rng = np.random.default_rng(seed)
    words, vectors, pairs, relations = [], [], [], []
    for r in range(2):
        offset = rng.normal(size=d) * 1.5
        for k in range(n_pairs):
            a = rng.normal(size=d)
            words += [f"a{r}x{k}", f"b{r}x{k}"]
            vectors += [a, a + offset + noise * rng.normal(size=d)]
            pairs.append((f"A{r}x{k}", f"B{r}x{k}"))
            relations.append(f"rel{r}")
    pairs.append(("A0x0", "Missing"))
    relations.append("rel0")
    words += [f"filler{k}" for k in range(n_fillers)]
    vectors += list(rng.normal(size=(n_fillers, d)))
    quads = [(i, j) for i in range(len(pairs)) for j in range(len(pairs)) if i != j and relations[i] == relations[j]]
    vocab = CandidateVocabulary(words, list(range(len(words))), "test")
    return np.array(vectors), vocab, pairs, relations, quads


def _brute(V: np.ndarray, a: int, a_star: int, b: int, method: str) -> int:
    """The published formulas, one candidate at a time, query words excluded."""
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    best, best_score = -1, -np.inf
    for x in range(len(U)):
        if x in (a, a_star, b):
            continue
        ca, cs, cb = U[x] @ U[a], U[x] @ U[a_star], U[x] @ U[b]
        score = {"3cosadd": cs - ca + cb, "3cosmul": (cs + 1) / 2 * (cb + 1) / 2 / ((ca + 1) / 2 + 1e-6),
                 "only_b": cb, "ignore_a": cs + cb, "add_opposite": ca - cs + cb}[method]
        if score > best_score:
            best, best_score = x, score
    return best


@pytest.mark.parametrize("method", ["3cosadd", "3cosmul", "only_b", "ignore_a", "add_opposite"])
def test_scorer_matches_the_formulas_candidate_by_candidate(method: str) -> None:
    V, vocab, pairs, relations, quads = _planted(0, n_pairs=5, n_fillers=40)
    questions, counts = vocabulary_questions(pairs, relations, vocab, quads)
    got = VocabularyScorer(V, questions).answers(questions, method)
    want = [_brute(V, int(a), int(s), int(b), method) for a, s, b in zip(questions.a, questions.a_star, questions.b,
                                                                         strict=True)]
    assert got.tolist() == want
    assert counts["n_pairs_skipped"] == 1 and counts["n_questions_skipped"] == 2 * 5
    assert len(questions) == 2 * 5 * 4


def _gensim_evaluation(V: np.ndarray, vocab: CandidateVocabulary, pairs, relations, quads, tmp_path: Path):
    """gensim's own evaluation of the same questions: a questions-words file, vectors in KeyedVectors."""
    gensim_models = pytest.importorskip("gensim.models", reason="gensim is not installed (pip install .[compare])")
    kv = gensim_models.KeyedVectors(V.shape[1])
    kv.add_vectors(vocab.words, V.astype(np.float32))
    lines = []
    for relation in sorted(set(relations)):
        lines.append(f": {relation}")
        lines += [f"{pairs[i][0]} {pairs[i][1]} {pairs[j][0]} {pairs[j][1]}" for i, j in quads
                  if relations[i] == relation]
    path = tmp_path / "questions-words.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    score, sections = kv.evaluate_word_analogies(str(path), restrict_vocab=len(vocab), case_insensitive=True)
    return kv, score, sections[-1]


@pytest.mark.filterwarnings("ignore:Call to deprecated `init_sims`:DeprecationWarning")  # gensim's own cosmul
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_and_accuracy_equal_gensim_evaluate_word_analogies(seed: int, tmp_path: Path) -> None:
    V, vocab, pairs, relations, quads = _planted(seed)
    kv, score, total = _gensim_evaluation(V, vocab, pairs, relations, quads, tmp_path)
    questions, _ = vocabulary_questions(pairs, relations, vocab, quads)
    scorer = VocabularyScorer(V, questions)
    rows = analogy_null_rows(V, questions, methods=["3cosadd", "3cosmul"], n_bootstrap=10,
                             correct=scorer.correct, baselines=VOCABULARY_BASELINES)
    all_add = next(i for i, lab in enumerate(rows.labels)
                   if lab["method"] == "3cosadd" and lab["relation"] == "all")
    assert 0.1 < score < 0.9  # a mixed set: agreement question by question means something
    assert rows.flips.extra[all_add]["accuracy"] == pytest.approx(score, abs=1e-4)
    assert len(questions) == len(total["correct"]) + len(total["incorrect"])  # the same questions skipped

    def quad(q: int) -> tuple[str, ...]:
        return tuple(vocab.words[int(x)].upper() for x in (questions.a[q], questions.a_star[q], questions.b[q],
                                                           questions.b_star[q]))

    ours = {quad(q) for q in np.flatnonzero(scorer.correct(questions, "3cosadd"))}
    assert ours == set(total["correct"])
    for method, similar in (("3cosadd", kv.most_similar), ("3cosmul", kv.most_similar_cosmul)):
        answers = scorer.answers(questions, method)
        for q in range(len(questions)):
            a, a_star, b, _ = (vocab.words[int(x)] for x in (questions.a[q], questions.a_star[q], questions.b[q],
                                                             questions.b_star[q]))
            top = similar(positive=[a_star, b], negative=[a], topn=1)[0][0]
            assert vocab.words[int(answers[q])] == top, (method, q)
    for name in ("ignore_a_accuracy", "add_opposite_accuracy", "only_b_accuracy"):
        assert 0.0 <= rows.flips.extra[all_add][name] <= 1.0


def test_no_question_in_the_vocabulary_is_a_clear_error() -> None:
    _, vocab, pairs, relations, quads = _planted(0, n_pairs=3, n_fillers=5)
    small = CandidateVocabulary(vocab.words[-5:], vocab.keys[-5:], "fillers")
    with pytest.raises(InvalidInputError, match="no analogy question"):
        vocabulary_questions(pairs, relations, small, quads)
