"""Reading concept data from files: strict UTF-8 checks and the user CSV/JSONL loader.

CSV/TSV files are read with Hugging Face ``datasets.load_dataset`` (csv builder) into memory, with the builder's
cache pointed at a throw-away folder: a file that then fails validation leaves nothing cached, and a fixed file is
never shadowed by a stale Arrow copy of the broken one.

JSON-lines (and JSON array) files are parsed here, one ``json.loads`` per line, with the types the file has. Why
not the HF json builder: Arrow needs one type per column, so a column holding one number among strings came back
with every value JSON-quoted (``'"The cat is an animal."'``, label ``'"yes"'``): silently wrong data. Here a
column that mixes types is an error naming the line, and so is a line that is not valid JSON.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from conceptspace.concepts._schema import ConceptSet
from conceptspace.concepts._validation import RawTable, build_concept_set
from conceptspace.errors import DatasetError

_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSON_SUFFIXES = (".jsonl", ".json")


def read_text_strict(path: Path, what: str = "concept file") -> str:
    """The file's text, or a ``DatasetError`` naming the file, byte offset and line of the first bad byte.

    A NUL byte is refused as well as invalid UTF-8: valid UTF-8 may still be a binary (or UTF-16) file, and
    reading one as texts would feed garbage to the model instead of failing.
    """
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        raise DatasetError(f"{what} not found: {path}{hint}")
    data = path.read_bytes()
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if 0 <= nul < exc.start:
            raise _binary_error(path, data, nul) from None
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); "
            f"re-save the file as UTF-8"
        ) from None
    if nul >= 0:
        raise _binary_error(path, data, nul)
    return text


def _binary_error(path: Path, data: bytes, offset: int) -> DatasetError:
    line = data[:offset].count(b"\n") + 1
    return DatasetError(
        f"{path}: a NUL byte at offset {offset} (line {line}): this is a binary or UTF-16 file, not UTF-8 text; "
        "give a UTF-8 text file"
    )


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    from datasets.utils import logging as ds_logging

    from datasets import (  # type: ignore[attr-defined]  # mypy sees the data folder datasets/
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    verbosity = ds_logging.get_verbosity()
    disable_progress_bars()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(verbosity)
        if not was_disabled:
            enable_progress_bars()


def _json_type(value: Any) -> str | None:
    """The JSON type name of a parsed value (None for null, which is a missing cell of any column)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _json_records(text: str, origin: str) -> list[tuple[int, Any]]:
    """(line, parsed value) per record: one per non-blank line, or the items of one top-level JSON array."""
    if origin.lower().endswith(".json") and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{origin}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        return [(0, item) for item in items]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{origin}:{number}: not valid JSON ({exc.msg}, column {exc.colno}); each line must be one JSON "
                "object such as {\"text\": \"...\", \"label\": 1}"
            ) from None
    return records


def parse_json_table(text: str, origin: str) -> RawTable:
    """JSON lines (or a JSON array of objects) as columns, with each value's own JSON type.

    A key missing from a record is a missing cell (None), as is ``null``. A column whose values have two JSON
    types (a number among strings, a string among booleans) is refused, naming the first line that differs:
    there is no faithful way to guess which type was meant.
    """
    columns: dict[str, list[Any]] = {}
    first_type: dict[str, tuple[str, str]] = {}
    lines: list[int] = []
    for row, (number, record) in enumerate(_json_records(text, origin)):
        here = f"line {number}" if number else f"record {row + 1}"
        where = f"{origin}:{number}" if number else f"{origin}: {here}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object {{...}}, got JSON {_json_type(record) or 'null'}")
        for key, value in record.items():
            kind = _json_type(value)
            seen = first_type.setdefault(key, (kind, here)) if kind is not None else None
            if seen is not None and seen[0] != kind:
                raise DatasetError(
                    f"{where}: field {key!r} is a {kind} here but a {seen[0]} on {seen[1]}; give every "
                    f"value of a field one JSON type (e.g. quote numbers meant as text: \"1\")"
                )
            columns.setdefault(key, [None] * row).append(value)
        for values in columns.values():
            if len(values) == row:
                values.append(None)
        lines.append(number)
    if not lines:
        raise DatasetError(f"{origin}: no records (the file holds no JSON objects)")
    row_lines = lines if all(lines) else None
    return RawTable(columns=columns, origin=origin, line_offset=0, row_lines=row_lines)


def read_json_table(path: str | Path, what: str = "concept file") -> RawTable:
    """Read a .jsonl (or .json array) file strictly: UTF-8, one JSON object per line, one type per field."""
    file = Path(path)
    text = read_text_strict(file, what)
    if not text.strip():
        raise DatasetError(f"{file}: the file is empty")
    return parse_json_table(text, str(file))


def check_has_data_rows(text: str, origin: str, delimiter: str) -> None:
    """Refuse a CSV/TSV whose only non-blank record is its header (HF would say 'corresponds to no data')."""
    records = (row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if any(row))
    next(records, None)
    if next(records, None) is None:
        raise DatasetError(f"{origin}: no rows (only a header); add data rows below the header line")


def read_table_file(path: str | Path, what: str = "concept file") -> RawTable:
    """Read a CSV/TSV (header row) or JSON-lines file into plain columns, caching nothing."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        return read_json_table(file, what)
    if suffix not in _CSV_DELIMITERS:
        raise DatasetError(f"{file}: unsupported file type {file.suffix!r}; use .csv, .tsv or .jsonl")
    text = read_text_strict(file, what)
    if not text.strip():
        raise DatasetError(f"{file}: the file is empty")
    delimiter = _CSV_DELIMITERS[suffix]
    check_has_data_rows(text, str(file), delimiter)
    return RawTable(columns=_load_csv(file, delimiter), origin=str(file), line_offset=2)


def _load_csv(file: Path, delimiter: str) -> dict[str, list[Any]]:
    """The columns of a CSV/TSV file via the HF csv builder (pandas type inference), in memory only."""
    from datasets import Dataset, load_dataset  # type: ignore[attr-defined]  # see _quiet_progress

    with tempfile.TemporaryDirectory(prefix="conceptspace-load-") as cache_dir, _quiet_progress():
        try:
            loaded = load_dataset("csv", data_files=str(file), split="train", cache_dir=cache_dir,
                                  keep_in_memory=True, delimiter=delimiter)
        except Exception as exc:  # the builder raises many types (ParserError, DatasetGenerationError, ...)
            cause = exc.__cause__ or exc
            raise DatasetError(f"{file}: cannot be parsed as {file.suffix[1:].upper()}: {cause}") from None
        assert isinstance(loaded, Dataset)
        return {name: loaded.data.column(name).to_pylist() for name in loaded.column_names}


def load_user_concepts(
    path: str | Path,
    *,
    kind: str,
    columns: Mapping[str, str],
    template: str | None = None,
    label_names: Sequence[str] | None = None,
    name: str | None = None,
    duplicates: str = "warn",
    conflicts: str = "warn",
    keep_extra: bool = True,
    relation: str | None = None,
) -> ConceptSet:
    """Load a user's CSV/TSV/JSONL file as a validated ``ConceptSet``.

    ``columns`` maps roles to file columns, e.g. ``{"text": "sentence", "label": "is_true", "group": "topic"}``
    or, for a word set, ``{"word": "w", "label": "class"}`` with ``template="The word is {word}"``
    (default ``"{word}"``). Spans: ``{"span_start": ..., "span_end": ...}`` or one ``"span"`` column of pairs;
    with both ``text`` and ``word`` mapped and no span, the span is the word's first occurrence in the text.
    """
    file = Path(path)
    raw = read_table_file(file)
    return build_concept_set(
        raw,
        name=name or file.stem,
        kind=kind,
        columns=columns,
        template=template,
        label_names=label_names,
        relation=relation,
        duplicates=duplicates,
        conflicts=conflicts,
        keep_extra=keep_extra,
        source=str(file.resolve()),
    )
