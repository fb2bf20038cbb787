"""The single validation path every concept dataset goes through, bundled or user-supplied.

A reader (bundled parser or CSV/JSONL loader) produces a ``RawTable`` (plain columns plus where they came from);
``build_concept_set`` maps its columns onto the canonical roles, renders word templates into texts with spans,
checks every row, and only then builds the HF ``Dataset``. Errors name the file, the column (with the closest
existing column when one is misspelled) or the row, because a researcher fixing a CSV needs exactly that.
Nothing is written to disk here, so a set that fails validation leaves no cached trace.
"""

from __future__ import annotations

import difflib
import math
import string
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from conceptspace.concepts._schema import CANONICAL_COLUMNS, KINDS, WORD_PLACEHOLDER, ConceptSet
from conceptspace.errors import DatasetError
from datasets import Dataset  # type: ignore[attr-defined]  # mypy sees the data folder datasets/ (HF ships no py.typed)

ROLES: tuple[str, ...] = (
    "text",
    "word",
    "label",
    "value",
    "group",
    "span",
    "span_start",
    "span_end",
    "a",
    "b",
    "relation",
)
POLICIES: tuple[str, ...] = ("warn", "drop", "error", "keep")
_TRUE_STRINGS = {"true", "t", "yes", "1"}
_FALSE_STRINGS = {"false", "f", "no", "0"}


class DatasetWarning(UserWarning):
    """Suspicious but loadable data (duplicate rows, one text with two labels)."""


@dataclass(frozen=True)
class RawTable:
    """Columns exactly as read, before validation.

    ``line_offset``: the file line of data row 0 (2 for a CSV with a header, 1 for JSONL), or 0 when rows do not
    map to lines; used only to make error messages point at the right line. ``row_lines``, when given, is the
    file line of each row (a JSON-lines file may hold blank lines, so rows and lines need not be in step).
    """

    columns: Mapping[str, Sequence[Any]]
    origin: str
    line_offset: int = 0
    row_lines: Sequence[int] | None = None

    @property
    def n_rows(self) -> int:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise DatasetError(f"{self.origin}: columns have different lengths {sorted(lengths)}")
        return lengths.pop() if lengths else 0

    def where(self, row: int) -> str:
        """Human-readable position of data row ``row`` (0-based) in the source."""
        if self.row_lines is not None and row < len(self.row_lines):
            return f"{self.origin}: row {row + 1}, line {self.row_lines[row]}"
        line = f", line {row + self.line_offset}" if self.line_offset else ""
        return f"{self.origin}: row {row + 1}{line}"


def is_missing(value: Any) -> bool:
    """None, NaN or an empty/whitespace string: what CSV readers make of an empty cell."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def suggest_column(name: str, available: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for a misspelled column name, else the list of columns."""
    close = difflib.get_close_matches(name, list(available), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in available}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (columns: {', '.join(available)})"


def template_fields(template: str, origin: str) -> list[str]:
    """Field names used by ``template``; raises when it is malformed or lacks the ``{word}`` placeholder."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DatasetError(
            f"{origin}: template {template!r} is malformed ({exc}); escape literal braces as {{{{ }}}}"
        ) from None
    fields = [f for _, f, _, _ in parsed if f is not None]
    if any(f == "" or f.isdigit() for f in fields):
        raise DatasetError(
            f"{origin}: template {template!r} uses a positional placeholder; write {{{WORD_PLACEHOLDER}}} instead"
        )
    if WORD_PLACEHOLDER not in fields:
        raise DatasetError(
            f"{origin}: template {template!r} has no {{{WORD_PLACEHOLDER}}} placeholder; add it where the word "
            f"goes, e.g. 'The word is {{{WORD_PLACEHOLDER}}}'"
        )
    return fields


def render_template(template: str, fields: Mapping[str, Any]) -> tuple[str, int, int]:
    """Render ``template`` and return (text, start, end) of the first ``{word}`` occurrence.

    Rendering piece by piece (rather than ``str.format`` then ``find``) gives the exact span even when the word
    also occurs in the literal text or in another field.
    """
    out: list[str] = []
    start = end = -1
    length = 0
    for literal, field_name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        length += len(literal)
        if field_name is None:
            continue
        value = fields[field_name]
        if conversion == "r":
            value = repr(value)
        elif conversion == "s":
            value = str(value)
        piece = format(value, spec or "")
        if field_name == WORD_PLACEHOLDER and start < 0:
            start, end = length, length + len(piece)
        out.append(piece)
        length += len(piece)
    return "".join(out), start, end


def _required_roles(kind: str) -> list[tuple[str, ...]]:
    """Alternatives per requirement: each tuple needs at least one of its roles mapped."""
    if kind in ("binary", "categorical"):
        return [("text", "word"), ("label",)]
    if kind == "continuous":
        return [("text", "word"), ("value",)]
    return [("a",), ("b",)]


def _check_mapping(raw: RawTable, kind: str, columns: Mapping[str, str]) -> None:
    available = list(raw.columns)
    for role, source in columns.items():
        if role not in ROLES:
            raise DatasetError(f"{raw.origin}: unknown column role {role!r}{suggest_column(role, ROLES)}")
        if source not in raw.columns:
            raise DatasetError(
                f"{raw.origin}: column {source!r} (mapped to {role!r}) not found{suggest_column(source, available)}"
            )
    for alternatives in _required_roles(kind):
        if not any(r in columns for r in alternatives):
            need = " or ".join(repr(r) for r in alternatives)
            raise DatasetError(
                f"{raw.origin}: a {kind} set needs a column mapped to {need}; pass columns={{{alternatives[0]!r}: "
                f"'<your column>'}} (file columns: {', '.join(available)})"
            )
    if ("span_start" in columns) != ("span_end" in columns):
        raise DatasetError(f"{raw.origin}: map both 'span_start' and 'span_end', or a single 'span' column")
    if kind == "pairs" and "text" in columns:
        raise DatasetError(f"{raw.origin}: a pairs set renders 'a' and 'b' through a template; do not map 'text'")


def _as_int(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool) or is_missing(value):
        raise DatasetError(f"{where}: {what} is {value!r}; it must be an integer character offset")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {what} is {value!r}; it must be an integer character offset") from None
    if not as_float.is_integer():
        raise DatasetError(f"{where}: {what} is {value!r}; it must be an integer character offset")
    return int(as_float)


def _string_cell(raw: RawTable, columns: Mapping[str, str], role: str, row: int) -> str:
    source = columns[role]
    value = raw.columns[source][row]
    if is_missing(value):
        raise DatasetError(f"{raw.where(row)}: column {source!r} ({role}) is empty")
    return str(value)


def _encode_binary(values: list[Any], label_names: list[str] | None, where: str) -> tuple[list[int], list[str]]:
    distinct = sorted({str(v) for v in values})
    if len(distinct) < 2:
        raise DatasetError(f"{where}: only one class ({distinct[0]!r}); a binary concept needs both classes")
    if len(distinct) > 2:
        raise DatasetError(
            f"{where}: {len(distinct)} distinct labels ({', '.join(distinct[:6])}); a binary set needs exactly two "
            f"(use kind='categorical' for more)"
        )
    if label_names is not None:
        return _encode_named(values, label_names, where), list(label_names)
    lowered = {d.lower() for d in distinct}
    if lowered <= (_TRUE_STRINGS | _FALSE_STRINGS) and (lowered & _TRUE_STRINGS) and (lowered & _FALSE_STRINGS):
        return [1 if str(v).lower() in _TRUE_STRINGS else 0 for v in values], ["false", "true"]
    return [distinct.index(str(v)) for v in values], distinct


def _encode_named(values: list[Any], label_names: Sequence[str], where: str) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    for value in values:
        key = str(value)
        if key not in index:
            raise DatasetError(f"{where}: label {key!r} is not among label_names {list(label_names)}")
        out.append(index[key])
    return out


def _sorted_names(values: list[Any]) -> list[str]:
    distinct = set(values)
    try:
        ordered = sorted(distinct, key=float)
    except (TypeError, ValueError):
        ordered = sorted(distinct, key=str)
    names: list[str] = []
    for value in ordered:
        name = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        if name not in names:
            names.append(name)
    return names


def _encode_labels(
    raw: RawTable, kind: str, columns: Mapping[str, str], label_names: list[str] | None
) -> tuple[list[int], list[str]]:
    source = columns["label"]
    values = list(raw.columns[source])
    for row, value in enumerate(values):
        if is_missing(value):
            raise DatasetError(f"{raw.where(row)}: label column {source!r} is empty/NaN; fill it or drop the row")
    normalized = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    where = f"{raw.origin}: column {source!r}"
    if kind == "binary":
        return _encode_binary(normalized, label_names, where)
    names = list(label_names) if label_names is not None else _sorted_names(normalized)
    if len(set(map(str, normalized))) < 2:
        raise DatasetError(f"{where}: only one class ({str(normalized[0])!r}); a categorical set needs two or more")
    return _encode_named(normalized, names, where), names


def _encode_values(raw: RawTable, columns: Mapping[str, str]) -> list[float]:
    source = columns["value"]
    out: list[float] = []
    for row, value in enumerate(raw.columns[source]):
        try:
            number = float(value) if not is_missing(value) and not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise DatasetError(f"{raw.where(row)}: value {value!r} in column {source!r} is not a number") from None
        if not math.isfinite(number):
            raise DatasetError(f"{raw.where(row)}: value in column {source!r} is {value!r}; it must be a finite number")
        out.append(number)
    if len(set(out)) < 2:
        raise DatasetError(
            f"{raw.origin}: every value in column {source!r} is {out[0]!r}; a continuous set needs variation"
        )
    return out


def _apply_policy(policy: str, message: str, origin: str) -> None:
    if policy == "error":
        raise DatasetError(f"{origin}: {message}")
    if policy == "warn":
        warnings.warn(f"{origin}: {message}", DatasetWarning, stacklevel=4)


def build_concept_set(
    raw: RawTable,
    *,
    name: str,
    kind: str,
    columns: Mapping[str, str],
    template: str | None = None,
    label_names: Sequence[str] | None = None,
    relation: str | None = None,
    duplicates: str = "warn",
    conflicts: str = "warn",
    keep_extra: bool = True,
    source: str = "",
    license: str = "",
    citation: str = "",
    description: str = "",
    notes: Sequence[str] = (),
) -> ConceptSet:
    """Validate ``raw`` and build a ``ConceptSet``; raise ``DatasetError`` naming the file/column/row on bad input.

    ``columns`` maps roles (text, word, label, value, group, span | span_start+span_end, a, b, relation) to the
    raw column names. ``duplicates``/``conflicts`` (one of warn, drop, error, keep) say what to do with identical
    rows and with one text carrying different labels; both are always recorded in the set's notes.
    """
    if kind not in KINDS:
        raise DatasetError(f"{raw.origin}: kind {kind!r} is not one of {', '.join(KINDS)}{suggest_column(kind, KINDS)}")
    for policy_name, policy in (("duplicates", duplicates), ("conflicts", conflicts)):
        if policy not in POLICIES:
            raise DatasetError(f"{policy_name}={policy!r}: choose one of {', '.join(POLICIES)}")
    n_rows = raw.n_rows
    if n_rows == 0:
        raise DatasetError(f"{raw.origin}: the concept set is empty (no data rows)")
    _check_mapping(raw, kind, columns)
    names_in = list(label_names) if label_names is not None else None

    uses_template = kind == "pairs" or ("word" in columns and "text" not in columns)
    if template is not None and not uses_template:
        raise DatasetError(
            f"{raw.origin}: a template renders a 'word' column into text; this set maps 'text' directly, so drop "
            f"the template (or map the word column to 'word' instead of 'text')"
        )
    if uses_template:
        template = template if template is not None else "{" + WORD_PLACEHOLDER + "}"
        for field_name in template_fields(template, raw.origin):
            if field_name != WORD_PLACEHOLDER and field_name not in raw.columns:
                raise DatasetError(
                    f"{raw.origin}: template {template!r} uses {{{field_name}}}, which is not a column"
                    f"{suggest_column(field_name, list(raw.columns))}"
                )

    out: dict[str, list[Any]] = defaultdict(list)
    other_fields = [f for f in (template_fields(template, raw.origin) if uses_template and template else [])
                    if f != WORD_PLACEHOLDER]
    for row in range(n_rows):
        extra = {}
        for field_name in other_fields:
            cell = raw.columns[field_name][row]
            if is_missing(cell):
                raise DatasetError(f"{raw.where(row)}: column {field_name!r} (used by the template) is empty")
            extra[field_name] = cell
        if kind == "pairs":
            assert template is not None
            a = _string_cell(raw, columns, "a", row)
            b = _string_cell(raw, columns, "b", row)
            text, s, e = render_template(template, {**extra, WORD_PLACEHOLDER: a})
            text_b, sb, eb = render_template(template, {**extra, WORD_PLACEHOLDER: b})
            rel = _string_cell(raw, columns, "relation", row) if "relation" in columns else (relation or name)
            out["a"].append(a)
            out["b"].append(b)
            out["relation"].append(rel)
            out["text"].append(text)
            out["span_start"].append(s)
            out["span_end"].append(e)
            out["text_b"].append(text_b)
            out["span_b_start"].append(sb)
            out["span_b_end"].append(eb)
            default_group = a
        else:
            word = _string_cell(raw, columns, "word", row) if "word" in columns else None
            span: tuple[int, int] | None = None
            if "text" in columns:
                text = _string_cell(raw, columns, "text", row)
            else:
                assert template is not None and word is not None
                text, s, e = render_template(template, {**extra, WORD_PLACEHOLDER: word})
                span = (s, e)
            if "span" in columns:
                cell = raw.columns[columns["span"]][row]
                if not isinstance(cell, (list, tuple)) or len(cell) != 2:
                    raise DatasetError(f"{raw.where(row)}: span {cell!r} must be a [start, end] pair")
                span = (_as_int(cell[0], raw.where(row), "span start"), _as_int(cell[1], raw.where(row), "span end"))
            elif "span_start" in columns:
                span = (
                    _as_int(raw.columns[columns["span_start"]][row], raw.where(row), "span_start"),
                    _as_int(raw.columns[columns["span_end"]][row], raw.where(row), "span_end"),
                )
            elif word is not None and "text" in columns:
                found = text.find(word)
                if found < 0:
                    raise DatasetError(f"{raw.where(row)}: word {word!r} does not occur in its text {text!r}")
                span = (found, found + len(word))
            if span is not None:
                s, e = span
                if not 0 <= s < e <= len(text):
                    raise DatasetError(
                        f"{raw.where(row)}: span ({s}, {e}) lies outside its text (length {len(text)}): {text!r}"
                    )
                out["span_start"].append(s)
                out["span_end"].append(e)
            out["text"].append(text)
            if word is not None:
                out["word"].append(word)
            default_group = word if word is not None else text
        group = _string_cell(raw, columns, "group", row) if "group" in columns else default_group
        out["group"].append(group)

    if kind in ("binary", "categorical"):
        out["label"], names_out = _encode_labels(raw, kind, columns, names_in)
    elif kind == "continuous":
        out["value"] = _encode_values(raw, columns)
        names_out = None
    else:
        relations = out["relation"]
        names_out = names_in if names_in is not None else sorted(set(relations))
        out["label"] = _encode_named(relations, names_out, f"{raw.origin}: relation")

    mapped = set(columns.values())
    if keep_extra:
        for column_name, values in raw.columns.items():
            if column_name not in mapped and column_name not in CANONICAL_COLUMNS:
                out[column_name] = list(values)

    keep, notes_out = _screen_rows(out, kind, raw, duplicates, conflicts)
    if len(keep) < n_rows:
        out = defaultdict(list, {k: [v[i] for i in keep] for k, v in out.items()})
    if not keep:
        raise DatasetError(f"{raw.origin}: no rows left after removing duplicates/conflicts")
    if kind in ("binary", "categorical") and len(set(out["label"])) < 2:
        raise DatasetError(f"{raw.origin}: only one class left after removing duplicates/conflicts")

    try:
        data = Dataset.from_dict(dict(out))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"{raw.origin}: a column mixes incompatible types ({exc}); make each column one type"
        ) from None
    return ConceptSet(
        name=name,
        kind=kind,
        data=data,
        template=template if uses_template else None,
        label_names=list(names_out) if names_out is not None else None,
        source=source,
        license=license,
        citation=citation,
        description=description,
        notes=(*notes, *notes_out),
    )


def _screen_rows(
    out: Mapping[str, list[Any]], kind: str, raw: RawTable, duplicates: str, conflicts: str
) -> tuple[list[int], list[str]]:
    """Find duplicate rows and texts with conflicting labels; return the rows to keep and notes for the summary."""
    n = len(out["text"])
    spans = list(zip(out["span_start"], out["span_end"], strict=True)) if "span_start" in out else [None] * n
    target = out["value"] if kind == "continuous" else out["label"]
    keys: list[tuple[Any, ...]]
    if kind == "pairs":
        keys = list(zip(out["a"], out["b"], out["relation"], out["text"], strict=True))
    else:
        keys = list(zip(out["text"], spans, target, strict=True))
    seen: set[Any] = set()
    duplicate_rows = []
    for i, key in enumerate(keys):
        if key in seen:
            duplicate_rows.append(i)
        seen.add(key)
    notes: list[str] = []
    drop: set[int] = set()
    if duplicate_rows:
        example = ", ".join(f"row {i + 1}" for i in duplicate_rows[:5])
        action = {"drop": "dropped", "keep": "kept", "warn": "kept", "error": ""}[duplicates]
        message = f"{len(duplicate_rows)} duplicate rows ({example}{', ...' if len(duplicate_rows) > 5 else ''})"
        _apply_policy(duplicates, message + "; pass duplicates='drop' to remove them", raw.origin)
        notes.append(f"{message} {action}")
        if duplicates == "drop":
            drop.update(duplicate_rows)
    if kind != "pairs":
        targets_by_item: dict[Any, set[Any]] = defaultdict(set)
        for i in range(n):
            if i not in drop:
                targets_by_item[(out["text"][i], spans[i])].add(target[i])
        conflicting = {item for item, values in targets_by_item.items() if len(values) > 1}
        if conflicting:
            rows = [i for i in range(n) if i not in drop and (out["text"][i], spans[i]) in conflicting]
            example = next(iter(conflicting))[0]
            action = {"drop": "dropped (all their rows)", "keep": "kept", "warn": "kept", "error": ""}[conflicts]
            message = f"{len(conflicting)} texts carry different labels ({len(rows)} rows; e.g. {example!r})"
            _apply_policy(conflicts, message + "; pass conflicts='drop' to remove them", raw.origin)
            notes.append(f"{message} {action}")
            if conflicts == "drop":
                drop.update(rows)
    return [i for i in range(n) if i not in drop], notes
