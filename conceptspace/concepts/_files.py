"""Reading concept data from files: strict UTF-8 checks and the user CSV/JSONL loader.

User files are read with Hugging Face ``datasets.load_dataset`` (csv / json builders) into memory, with the
builder's cache pointed at a throw-away folder: a file that then fails validation leaves nothing cached, and a
fixed file is never shadowed by a stale Arrow copy of the broken one.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from conceptspace.concepts._schema import ConceptSet
from conceptspace.concepts._validation import RawTable, build_concept_set
from conceptspace.errors import DatasetError

_BUILDERS = {".csv": ("csv", ","), ".tsv": ("csv", "\t"), ".jsonl": ("json", None), ".json": ("json", None)}


def read_text_strict(path: Path) -> str:
    """The file's text, or a ``DatasetError`` naming the file, byte offset and line of the first non-UTF-8 byte."""
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        raise DatasetError(f"concept file not found: {path}{hint}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); "
            f"re-save the file as UTF-8"
        ) from None


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


def read_table_file(path: str | Path) -> RawTable:
    """Read a CSV/TSV (header row) or JSON-lines file into plain columns via HF ``datasets``, caching nothing."""
    from datasets import Dataset, load_dataset  # type: ignore[attr-defined]  # see _quiet_progress

    file = Path(path)
    builder = _BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise DatasetError(f"{file}: unsupported file type {file.suffix!r}; use .csv, .tsv or .jsonl")
    text = read_text_strict(file)
    if not text.strip():
        raise DatasetError(f"{file}: the file is empty")
    kind, delimiter = builder
    options: dict[str, Any] = {"delimiter": delimiter} if delimiter else {}
    with tempfile.TemporaryDirectory(prefix="conceptspace-load-") as cache_dir, _quiet_progress():
        try:
            loaded = load_dataset(
                kind, data_files=str(file), split="train", cache_dir=cache_dir, keep_in_memory=True, **options
            )
        except Exception as exc:  # the builders raise many types (ArrowInvalid, ParserError, DatasetGenerationError)
            cause = exc.__cause__ or exc
            raise DatasetError(f"{file}: cannot be parsed as {file.suffix[1:].upper()}: {cause}") from None
        assert isinstance(loaded, Dataset)
        columns = {name: loaded.data.column(name).to_pylist() for name in loaded.column_names}
    line_offset = 2 if kind == "csv" else (1 if file.suffix.lower() == ".jsonl" else 0)
    return RawTable(columns=columns, origin=str(file), line_offset=line_offset)


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
