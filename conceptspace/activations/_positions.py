"""Which token positions an extraction reads, and how a text's character span maps to its tokens.

Positions are resolved against the *unpadded* token sequence of each text; extraction pads by itself and only
then shifts them, so the same text gives the same vector in any batch, with either padding side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from conceptspace.errors import InvalidInputError

PositionKind = Literal["last", "mean", "all", "span"]
SpanReduce = Literal["first", "last", "mean"]


@dataclass(frozen=True)
class Position:
    """``last`` token, ``mean`` over the text, ``all`` tokens, or a character ``span`` reduced to one vector.

    Written as strings: ``"last"``, ``"mean"``, ``"all"``, ``"span:first"``, ``"span:last"``, ``"span:mean"``.
    ``last`` and ``mean`` include the special tokens the tokenizer adds (BERT's [CLS]/[SEP]); for encoders a
    ``mean`` or a ``span`` is usually what is wanted.
    """

    kind: PositionKind
    reduce: SpanReduce | None = None

    @classmethod
    def parse(cls, value: str | Position) -> Position:
        if isinstance(value, Position):
            return value
        text = str(value).strip().lower()
        if text in {"last", "mean", "all"}:
            return cls(text)  # type: ignore[arg-type]
        if text == "span":
            return cls("span", "mean")
        if text.startswith("span:") and text[5:] in {"first", "last", "mean"}:
            return cls("span", text[5:])  # type: ignore[arg-type]
        raise InvalidInputError(
            f"unknown position {value!r}: use 'last', 'mean', 'all', 'span:first', 'span:last' or 'span:mean'"
        )

    def __str__(self) -> str:
        return f"span:{self.reduce}" if self.kind == "span" else self.kind

    @property
    def pooled(self) -> bool:
        """True when every text gives one vector per site (everything but ``all``)."""
        return self.kind != "all"


def token_span(
    offsets: Sequence[tuple[int, int]], char_span: tuple[int, int], *, item: int, text: str
) -> tuple[int, int]:
    """The tokens ``[first, stop)`` that overlap the characters ``[start, end)`` of a text.

    Overlap (not containment) is the rule because byte-level tokenizers fold a leading space into the word's
    token (SmolLM2's " queen" spans characters 0-6 of " queen"). Special tokens have empty offsets and never
    match.
    """
    start, end = char_span
    if not (0 <= start < end <= len(text)):
        raise InvalidInputError(
            f"item {item}: span ({start}, {end}) lies outside its text of {len(text)} characters: {text!r}"
        )
    hits = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    if not hits:
        raise InvalidInputError(f"item {item}: span ({start}, {end}) {text[start:end]!r} covers no token of {text!r}")
    return hits[0], hits[-1] + 1


@dataclass(frozen=True)
class PoolPlan:
    """How to reduce a padded batch ``(batch, seq, d)`` to the requested position, as plain tensors.

    The plan is computed before the trace so that the trace body needs nothing but torch: a remote NDIF worker
    runs that body and does not have conceptspace installed. ``mode`` is ``"gather"`` (one token per row at
    ``rows``/``cols``), ``"weighted"`` (average over the tokens where ``mask`` is true) or ``"whole"``.
    """

    mode: str
    rows: torch.Tensor
    cols: torch.Tensor
    mask: torch.Tensor
    counts: torch.Tensor


def pool_plan(
    position: Position,
    starts: torch.Tensor,
    lengths: torch.Tensor,
    span_first: torch.Tensor | None,
    span_stop: torch.Tensor | None,
    seq_len: int,
) -> PoolPlan:
    """The plan for one batch; ``starts`` is where each row's real tokens begin (non-zero with left padding)."""
    rows = torch.arange(starts.shape[0], device=starts.device)
    empty = torch.zeros((0,), dtype=torch.long, device=starts.device)
    no_mask = torch.zeros((0, 0), dtype=torch.bool, device=starts.device)
    if position.kind == "all":
        return PoolPlan("whole", rows, empty, no_mask, empty)
    if position.kind == "last":
        return PoolPlan("gather", rows, starts + lengths - 1, no_mask, empty)
    if position.kind == "mean":
        first, stop = starts, starts + lengths
    else:
        assert span_first is not None and span_stop is not None
        if position.reduce == "first":
            return PoolPlan("gather", rows, starts + span_first, no_mask, empty)
        if position.reduce == "last":
            return PoolPlan("gather", rows, starts + span_stop - 1, no_mask, empty)
        first, stop = starts + span_first, starts + span_stop
    steps = torch.arange(seq_len, device=starts.device)
    mask = (steps[None, :] >= first[:, None]) & (steps[None, :] < stop[:, None])
    return PoolPlan("weighted", rows, empty, mask, stop - first)
