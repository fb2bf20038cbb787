"""User concept files are read with the types they hold; anything ambiguous is an error naming the line.

The regression these guard: the HF json builder turned a column with one number among strings into JSON-quoted
strings ('"The cat is an animal."', label '"yes"') without a word, and a header-only CSV said only
'Instruction "train" corresponds to no data!'.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conceptspace.concepts import load_user_concepts
from conceptspace.errors import DatasetError

BINARY = {"text": "text", "label": "label"}


def _jsonl(path: Path, rows: list[object], blank_after: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_clean_jsonl_keeps_texts_and_labels_exactly(tmp_path):
    rows = [{"text": 'He said "yes".', "label": 1}, {"text": "The cat is an animal.", "label": 0},
            {"text": "Rocks are alive.", "label": 0}, {"text": "Water is wet.", "label": 1}]
    cs = load_user_concepts(_jsonl(tmp_path / "t.jsonl", rows), kind="binary", columns=BINARY)
    assert list(cs.texts) == [r["text"] for r in rows]  # no JSON quoting, quotes inside kept as they are
    assert cs.labels.tolist() == [1, 0, 0, 1] and cs.label_names == ["false", "true"]


def test_one_number_in_the_text_column_is_an_error_naming_its_line(tmp_path):
    rows = [{"text": "The cat is an animal.", "label": 1}, {"text": "Dogs bark.", "label": 0}, {"text": 7, "label": 1}]
    path = _jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DatasetError, match=r"t\.jsonl:3: field 'text' is a number here but a string on line 1"):
        load_user_concepts(path, kind="binary", columns=BINARY)


def test_label_column_of_numbers_and_strings_is_an_error_not_a_quoted_label(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": "yes"}, {"text": "c", "label": 0}]
    path = _jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DatasetError, match=r"t\.jsonl:2: field 'label' is a string here but a number on line 1"):
        load_user_concepts(path, kind="binary", columns=BINARY)


def test_malformed_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": 0\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"t\.jsonl:3: not valid JSON"):
        load_user_concepts(path, kind="binary", columns=BINARY)


def test_a_line_that_is_not_an_object_is_refused(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": 1}, ["b", 0]])
    with pytest.raises(DatasetError, match=r"t\.jsonl:2: expected a JSON object"):
        load_user_concepts(path, kind="binary", columns=BINARY)


def test_row_errors_point_at_the_file_line_across_blank_lines(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "  ", "label": 1}]
    path = _jsonl(tmp_path / "t.jsonl", rows, blank_after=1)  # the empty text sits on line 4, row 3
    with pytest.raises(DatasetError, match=r"row 3, line 4: column 'text' \(text\) is empty"):
        load_user_concepts(path, kind="binary", columns=BINARY)


def test_missing_keys_and_nulls_are_missing_cells_not_a_type_clash(tmp_path):
    rows = [{"text": "a", "label": 1, "note": None}, {"text": "b", "label": 0}, {"text": "c", "label": 1, "note": "x"}]
    cs = load_user_concepts(_jsonl(tmp_path / "t.jsonl", rows), kind="binary", columns=BINARY)
    assert cs.data["note"] == [None, None, "x"]


def test_booleans_and_spans_keep_their_types(tmp_path):
    rows = [{"t": "the red car", "s": [4, 7], "c": True}, {"t": "a blue sky", "s": [2, 6], "c": False}]
    cs = load_user_concepts(_jsonl(tmp_path / "t.jsonl", rows), kind="binary",
                            columns={"text": "t", "span": "s", "label": "c"})
    assert cs.labels.tolist() == [1, 0] and cs.spans == [(4, 7), (2, 6)]


def test_json_array_file_is_typed_and_names_the_record(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}]), encoding="utf-8")
    assert load_user_concepts(path, kind="binary", columns=BINARY).labels.tolist() == [1, 0]
    path.write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": "0"}]), encoding="utf-8")
    with pytest.raises(DatasetError, match="record 2: field 'label' is a string here but a number on record 1"):
        load_user_concepts(path, kind="binary", columns=BINARY)


@pytest.mark.parametrize(("name", "content"), [("h.csv", "text,label\n"), ("h.tsv", "text\tlabel\n\n\n")])
def test_header_only_table_says_so(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{name.replace('.', '[.]')}: no rows \(only a header\)"):
        load_user_concepts(path, kind="binary", columns=BINARY)


def test_csv_with_rows_still_loads(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("text,label\nWater is wet.,1\nFire is cold.,0\n", encoding="utf-8")
    assert load_user_concepts(path, kind="binary", columns=BINARY).labels.tolist() == [1, 0]


@pytest.mark.parametrize("data", [b"text,label\nab\x00c,1\n", "text,label\nhi,1\n".encode("utf-16")])
def test_binary_or_utf16_file_is_refused(tmp_path, data):
    path = tmp_path / "b.csv"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=r"b\.csv: (a NUL byte|not valid UTF-8)"):
        load_user_concepts(path, kind="binary", columns=BINARY)
