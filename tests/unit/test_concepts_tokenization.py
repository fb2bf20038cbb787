"""Tokenization report and the opt-in multi-token drop, on a tiny deterministic tokenizer with known pieces."""

from __future__ import annotations

from typing import Any

import pytest

from conceptspace.concepts import drop_multi_token, load_user_concepts, tokenization_report
from conceptspace.errors import DatasetError


class GreedyTokenizer:
    """Longest-match over a fixed vocabulary, one character otherwise: like SmolLM2, " queen" is one token and
    "queen" is two ("qu" + "een")."""

    VOCAB = (" queen", "qu", "een", " king", "king", " The", "The", " word", " is", " cat", "cat")

    def __init__(self, fast: bool = True) -> None:
        self.is_fast = fast
        self.name_or_path = "greedy-test"

    def _pieces(self, text: str) -> list[tuple[int, int]]:
        out, i = [], 0
        while i < len(text):
            match = max((v for v in self.VOCAB if text.startswith(v, i)), key=len, default=text[i])
            out.append((i, i + len(match)))
            i += len(match)
        return out

    def __call__(self, texts: list[str], add_special_tokens: bool = False,
                 return_offsets_mapping: bool = False) -> dict[str, Any]:
        pieces = [self._pieces(t) for t in texts]
        result: dict[str, Any] = {"input_ids": [list(range(len(p))) for p in pieces]}
        if return_offsets_mapping:
            assert self.is_fast
            result["offset_mapping"] = pieces
        return result


@pytest.fixture()
def words(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("w,l\nqueen,a\nking,b\ncat,a\nzebra,b\n", encoding="utf-8")
    return load_user_concepts(path, kind="categorical", columns={"word": "w", "label": "l"},
                              template="The word is {word}")


@pytest.mark.parametrize("fast", [True, False])
def test_report_counts_each_case(words, fast: bool) -> None:
    report = tokenization_report(words, GreedyTokenizer(fast))
    assert report.n_items == 4
    assert report.single_token_leading_space == 3  # queen, king, cat
    assert report.single_token_no_space == 0
    assert report.multi_token == 1 and report.multi_token_pieces == {6: 1}  # " zebra" = 6 characters
    # offsets: the lone " " piece before "zebra" is not part of the word; the slow path cannot tell it apart
    assert report.in_context_pieces == ({1: 3, 5: 1} if fast else {1: 3, 6: 1})
    assert [i.pieces_without_space for i in report.items] == [2, 1, 1, 5]
    as_dict = report.to_dict()
    assert as_dict["single_token_leading_space"] == 3 and as_dict["items"][3]["category"] == "multi_token"
    assert "multi-token: 1" in words.summary(GreedyTokenizer(fast))


def test_no_space_only_category(tmp_path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("w,l\nking,a\nqueen,b\n", encoding="utf-8")
    cs = load_user_concepts(path, kind="binary", columns={"word": "w", "label": "l"}, template="({word})")
    tok = GreedyTokenizer()
    tok.VOCAB = ("king",)  # type: ignore[misc]
    report = tokenization_report(cs, tok)
    assert report.single_token_no_space == 1 and report.multi_token == 1 and report.in_context_pieces == {1: 1, 5: 1}


def test_drop_multi_token_only_on_request_and_noted(words) -> None:
    kept = drop_multi_token(words, GreedyTokenizer())
    assert kept.words == ["queen", "king", "cat"] and len(words) == 4
    assert "dropped 1 of 4 items" in kept.summary()


def test_pairs_report_both_sides(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("x,y\nking,queen\ncat,zebra\n", encoding="utf-8")
    cs = load_user_concepts(path, kind="pairs", columns={"a": "x", "b": "y"}, template="The word is {word}")
    report = tokenization_report(cs, GreedyTokenizer())
    assert report.n_items == 4 and [i.side for i in report.items] == ["a", "a", "b", "b"]
    assert drop_multi_token(cs, GreedyTokenizer()).column("a") == ["king"]


def test_sentence_sets_have_no_word_report(tmp_path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("t,l\nA cat.,1\nA dog.,0\n", encoding="utf-8")
    cs = load_user_concepts(path, kind="binary", columns={"text": "t", "label": "l"})
    with pytest.raises(DatasetError, match="sentence-level"):
        tokenization_report(cs, GreedyTokenizer())
