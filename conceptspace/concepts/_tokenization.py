"""How the words of a word-level concept set tokenize under a given model's tokenizer.

Word-level results depend on it: SmolLM2 reads " queen" as one token but "queen" as two, so a set whose words
mostly split into pieces is read through spans (first / last / mean of the pieces), and a reader of the report
must know how many items that concerns. Nothing here drops words unless asked (``drop_multi_token``), and every
drop is recorded in the set's notes, so the counts reach the summary and the report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from conceptspace.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover - typing only (the schema imports this module at run time)
    from transformers import PreTrainedTokenizerBase

    from conceptspace.concepts._schema import ConceptSet


@dataclass(frozen=True)
class ItemTokenization:
    """One word: its pieces alone with a leading space, alone without one, and inside its rendered text."""

    index: int
    side: str  # "word" for word sets; "a" or "b" for pairs
    word: str
    pieces_with_space: int
    pieces_without_space: int
    pieces_in_context: int

    @property
    def category(self) -> str:
        if self.pieces_with_space == 1:
            return "single_token_leading_space"
        if self.pieces_without_space == 1:
            return "single_token_no_space"
        return "multi_token"


@dataclass(frozen=True)
class TokenizationReport:
    """Counts of how a set's words tokenize, plus per-item piece counts.

    ``single_token_leading_space``: " word" is one token; ``single_token_no_space``: only "word" (no space) is
    one token; ``multi_token``: neither, with ``multi_token_pieces`` the histogram of the leading-space form's
    piece counts. ``in_context_pieces`` is the histogram of tokens covering the word's span in its actual text
    (what activation extraction reads).
    """

    concept_set: str
    tokenizer: str
    n_items: int
    single_token_leading_space: int
    single_token_no_space: int
    multi_token: int
    multi_token_pieces: dict[int, int]
    in_context_pieces: dict[int, int]
    items: tuple[ItemTokenization, ...]

    @property
    def in_context_single(self) -> int:
        """Items whose span is exactly one token of its rendered text."""
        return self.in_context_pieces.get(1, 0)

    def to_dict(self, *, items: bool = True) -> dict[str, Any]:
        """JSON-ready dict (histogram keys as strings); ``items=False`` leaves out the per-item rows."""
        out: dict[str, Any] = {
            "concept_set": self.concept_set,
            "tokenizer": self.tokenizer,
            "n_items": self.n_items,
            "single_token_leading_space": self.single_token_leading_space,
            "single_token_no_space": self.single_token_no_space,
            "multi_token": self.multi_token,
            "multi_token_pieces": {str(k): v for k, v in sorted(self.multi_token_pieces.items())},
            "in_context_pieces": {str(k): v for k, v in sorted(self.in_context_pieces.items())},
            "in_context_single": self.in_context_single,
        }
        if items:
            out["items"] = [{**asdict(i), "category": i.category} for i in self.items]
        return out

    def summary_lines(self) -> list[str]:
        hist = ", ".join(f"{k}: {v}" for k, v in sorted(self.multi_token_pieces.items()))
        ctx = ", ".join(f"{k}: {v}" for k, v in sorted(self.in_context_pieces.items()))
        return [
            f"tokenization ({self.tokenizer}, {self.n_items} words):",
            f"  single token with leading space: {self.single_token_leading_space}",
            f"  single token only without space: {self.single_token_no_space}",
            f"  multi-token: {self.multi_token} (pieces: {hist or '-'})",
            f"  pieces covering the span in context: {ctx}",
        ]


def tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _piece_counts(tokenizer: PreTrainedTokenizerBase, strings: list[str]) -> list[int]:
    if not strings:
        return []
    encoded = tokenizer(strings, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def _span_piece_counts(tokenizer: PreTrainedTokenizerBase, texts: list[str], spans: list[tuple[int, int]]) -> list[int]:
    """Tokens overlapping each span, from offset mappings (fast tokenizers) or prefix differences (slow ones).

    The prefix is cut before the whitespace that precedes the word, because BPE tokenizers glue that space to the
    word's first piece; the slow path then counts a lone space token as one of the word's pieces (approximate).
    """
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        counts = []
        for offsets, (start, end) in zip(encoded["offset_mapping"], spans, strict=True):
            counts.append(sum(1 for s, e in offsets if e > s and s < end and e > start))
        return counts
    before = _piece_counts(tokenizer, [t[:s].rstrip() for t, (s, _) in zip(texts, spans, strict=True)])
    upto = _piece_counts(tokenizer, [t[:e] for t, (_, e) in zip(texts, spans, strict=True)])
    return [u - b for u, b in zip(upto, before, strict=True)]


def _sides(concept_set: ConceptSet) -> list[tuple[str, list[str], list[str], list[tuple[int, int]]]]:
    if not concept_set.is_word_level:
        raise DatasetError(
            f"{concept_set.name!r} is a sentence-level set; a tokenization report needs word items (a word column "
            f"or pairs)"
        )
    spans = concept_set.spans
    assert spans is not None
    if concept_set.kind == "pairs":
        return [
            ("a", concept_set.column("a"), concept_set.texts, spans),
            ("b", concept_set.column("b"), concept_set.texts_b, concept_set.spans_b),
        ]
    words = concept_set.words
    assert words is not None
    return [("word", words, concept_set.texts, spans)]


def tokenization_report(concept_set: ConceptSet, tokenizer: PreTrainedTokenizerBase) -> TokenizationReport:
    """Count how every word of ``concept_set`` tokenizes under ``tokenizer`` (any HF tokenizer object).

    Pairs sets report both sides (``a`` rows first, then ``b``), so ``n_items`` is twice the number of pairs.
    """
    items: list[ItemTokenization] = []
    for side, words, texts, spans in _sides(concept_set):
        with_space = _piece_counts(tokenizer, [" " + w for w in words])
        without = _piece_counts(tokenizer, list(words))
        in_context = _span_piece_counts(tokenizer, texts, spans)
        for i, word in enumerate(words):
            items.append(ItemTokenization(i, side, word, with_space[i], without[i], in_context[i]))
    categories = Counter(item.category for item in items)
    return TokenizationReport(
        concept_set=concept_set.name,
        tokenizer=tokenizer_name(tokenizer),
        n_items=len(items),
        single_token_leading_space=categories["single_token_leading_space"],
        single_token_no_space=categories["single_token_no_space"],
        multi_token=categories["multi_token"],
        multi_token_pieces=dict(Counter(i.pieces_with_space for i in items if i.category == "multi_token")),
        in_context_pieces=dict(Counter(i.pieces_in_context for i in items)),
        items=tuple(items),
    )


def drop_multi_token(concept_set: ConceptSet, tokenizer: PreTrainedTokenizerBase) -> ConceptSet:
    """Only on request: keep the items whose word (for pairs: both words) is one token in its rendered text.

    The number dropped is recorded in the returned set's notes (and so in its summary and in reports).
    """
    report = tokenization_report(concept_set, tokenizer)
    keep = [True] * len(concept_set)
    for item in report.items:
        if item.pieces_in_context != 1:
            keep[item.index] = False
    indices = [i for i, k in enumerate(keep) if k]
    dropped = len(concept_set) - len(indices)
    if not indices:
        raise DatasetError(f"{concept_set.name!r}: every item is multi-token under {report.tokenizer}; nothing left")
    note = f"dropped {dropped} of {len(concept_set)} items whose word is not a single token under {report.tokenizer}"
    return concept_set.replace(data=concept_set.data.select(indices)).with_note(note)
