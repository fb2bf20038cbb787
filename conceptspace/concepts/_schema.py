"""The one shape every concept dataset takes once loaded: a ``ConceptSet``.

Bundled sets and user files end up as the same object so that activation extraction, probes and reports never
need to know where the data came from. The rows live in a Hugging Face ``Dataset`` with fixed column names
(below); everything else a reader needs to interpret them (kind, label names, template, provenance) sits next to
it in a frozen dataclass.

Canonical columns
-----------------
``text``                      the string the model reads (for word sets: the template rendered with the word)
``group``                     what must never be split across train and test (entity, template, source sentence)
``label``                     int class index (binary, categorical; for pairs the relation index)
``value``                     float target (continuous)
``word``                      the concept word (word-level sets)
``span_start``/``span_end``   character span of the concept word inside ``text`` (end exclusive)
``a``/``b``/``relation``      the two words of a pair and the relation's name (pairs)
``text_b``/``span_b_start``/``span_b_end``   the rendered ``b`` word and its span (pairs)
Any further column is carried along untouched (e.g. ``negated``, ``entity_type``, ``is_test``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conceptspace.concepts._tokenization import tokenization_report
from conceptspace.errors import DatasetError
from datasets import Dataset  # type: ignore[attr-defined]  # mypy sees the data folder datasets/ (HF ships no py.typed)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import PreTrainedTokenizerBase

KINDS: tuple[str, ...] = ("binary", "categorical", "continuous", "pairs")
WORD_PLACEHOLDER = "word"
DEFAULT_WORD_TEMPLATE = "The word is {word}"

# Columns whose content defines what a model is shown and asked about; the content hash covers all columns,
# but these are the ones validation guarantees.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "text",
    "group",
    "label",
    "value",
    "word",
    "span_start",
    "span_end",
    "a",
    "b",
    "relation",
    "text_b",
    "span_b_start",
    "span_b_end",
)


@dataclass(frozen=True)
class ConceptInfo:
    """One row of the catalogue of loadable concept sets (what ``conceptspace datasets`` prints)."""

    name: str
    kind: str
    n_rows: int
    license: str
    description: str


@dataclass(frozen=True)
class ConceptSet:
    """A validated concept dataset: an HF ``Dataset`` with canonical columns plus the metadata to read it.

    Build one through ``conceptspace.concepts.load_concepts`` / ``load_user_concepts`` (which validate), not by
    hand. Controls return new ``ConceptSet`` objects; nothing here mutates ``data``.
    """

    name: str
    kind: str
    data: Dataset
    template: str | None = None
    label_names: list[str] | None = None
    source: str = ""
    license: str = ""
    citation: str = ""
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(f"concept set {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for required in ("text", "group"):
            if required not in self.data.column_names:
                raise DatasetError(f"concept set {self.name!r}: data lacks the {required!r} column")

    # ------------------------------------------------------------------ columns
    def __len__(self) -> int:
        return self.data.num_rows

    def column(self, name: str) -> list[Any]:
        """One column as a plain Python list, read from Arrow (``with_format`` honours a ``select`` mapping, which
        ``data.data`` would silently ignore)."""
        if name not in self.data.column_names:
            raise DatasetError(
                f"concept set {self.name!r} has no column {name!r} (columns: {', '.join(self.data.column_names)})"
            )
        return list(self.data.with_format("arrow")[name].to_pylist())

    def has_column(self, name: str) -> bool:
        return name in self.data.column_names

    @property
    def texts(self) -> list[str]:
        """What the model reads, one string per item (for pairs: the rendered ``a`` word)."""
        return [str(t) for t in self.column("text")]

    @property
    def spans(self) -> list[tuple[int, int]] | None:
        """Character span (start, end) of the concept word in each text, or None for sentence-level sets."""
        if not self.has_column("span_start"):
            return None
        return list(zip(self.column("span_start"), self.column("span_end"), strict=True))

    @property
    def groups(self) -> list[str]:
        """Group of each item: split train/test by these, never by row."""
        return [str(g) for g in self.column("group")]

    @property
    def labels(self) -> np.ndarray:
        """int64 class indices (binary, categorical, pairs' relation) or float64 values (continuous)."""
        if self.kind == "continuous":
            return np.asarray(self.column("value"), dtype=np.float64)
        return np.asarray(self.column("label"), dtype=np.int64)

    @property
    def words(self) -> list[str] | None:
        """The concept word of each item (word sets; ``a`` for pairs), or None for sentence sets."""
        if self.kind == "pairs":
            return [str(w) for w in self.column("a")]
        if not self.has_column("word"):
            return None
        return [str(w) for w in self.column("word")]

    @property
    def is_word_level(self) -> bool:
        """True when items are words placed in a template (tokenization of the word matters)."""
        return self.kind == "pairs" or self.has_column("word")

    @property
    def texts_b(self) -> list[str]:
        """Pairs only: the rendered ``b`` word of each pair."""
        self._require_pairs("texts_b")
        return [str(t) for t in self.column("text_b")]

    @property
    def spans_b(self) -> list[tuple[int, int]]:
        """Pairs only: span of ``b`` inside ``texts_b``."""
        self._require_pairs("spans_b")
        return list(zip(self.column("span_b_start"), self.column("span_b_end"), strict=True))

    @property
    def relations(self) -> list[str]:
        """Pairs only: the relation name of each pair."""
        self._require_pairs("relations")
        return [str(r) for r in self.column("relation")]

    def _require_pairs(self, what: str) -> None:
        if self.kind != "pairs":
            raise DatasetError(f"{what} exists only for pairs sets; {self.name!r} is {self.kind}")

    # ------------------------------------------------------------------ derived
    def replace(self, **changes: Any) -> ConceptSet:
        """A copy with some fields changed (how controls build their outputs)."""
        return dataclasses.replace(self, **changes)

    def with_note(self, note: str) -> ConceptSet:
        return self.replace(notes=(*self.notes, note))

    def content_hash(self) -> str:
        """sha256 of kind, template, label names and every column's values, in a canonical JSON encoding.

        The activation cache keys on this, so two sets with the same rows give the same hash whatever their
        name or provenance text, and any change to a text, span or label gives a new one.
        """
        digest = hashlib.sha256()
        header = {"kind": self.kind, "template": self.template, "label_names": self.label_names}
        digest.update(json.dumps(header, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        for name in sorted(self.data.column_names):
            digest.update(b"\x00column\x00" + name.encode("utf-8") + b"\x00")
            values = self.column(name)
            digest.update(json.dumps(values, ensure_ascii=False, default=str).encode("utf-8"))
        return digest.hexdigest()

    def label_counts(self) -> dict[str, int]:
        """Items per class name (empty for continuous sets)."""
        if self.kind == "continuous":
            return {}
        counts = Counter(self.labels.tolist())
        names = self.label_names or [str(i) for i in range(max(counts) + 1)]
        return {names[i]: counts[i] for i in sorted(counts)}

    def summary(self, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
        """Readable summary: kind, size, groups, labels, provenance, notes; with a tokenizer, how words tokenize."""
        lines = [f"ConceptSet {self.name!r} ({self.kind}, {len(self)} rows, {len(set(self.groups))} groups)"]
        if self.kind == "continuous":
            values = self.labels
            lines.append(
                f"  value: mean {values.mean():.4g}, sd {values.std(ddof=1) if len(values) > 1 else 0.0:.4g}, "
                f"range [{values.min():.4g}, {values.max():.4g}]"
            )
        else:
            counts = self.label_counts()
            shown = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:12])
            more = f", ... ({len(counts)} classes)" if len(counts) > 12 else ""
            lines.append(f"  {'relations' if self.kind == 'pairs' else 'labels'}: {shown}{more}")
        if self.template is not None:
            lines.append(f"  template: {self.template!r}")
        if self.license:
            lines.append(f"  license: {self.license}")
        if self.source:
            lines.append(f"  source: {self.source}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if tokenizer is not None and self.is_word_level:
            lines.extend("  " + line for line in tokenization_report(self, tokenizer).summary_lines())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ConceptSet(name={self.name!r}, kind={self.kind!r}, n={len(self)})"
