"""User files and bad input: one validation path, errors that name the file, column or row."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from conceptspace.concepts import DatasetWarning, load_user_concepts
from conceptspace.errors import DatasetError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def good_csv(tmp_path: Path) -> Path:
    rows = ["sentence,truth,topic", "The sky is blue.,1,sky", "The sky is green.,0,sky", "Snow is white.,1,snow",
            "Snow is black.,0,snow"]
    return _write(tmp_path / "facts.csv", "\n".join(rows) + "\n")


def test_user_csv_loads_with_mapping(good_csv: Path) -> None:
    cs = load_user_concepts(good_csv, kind="binary", columns={"text": "sentence", "label": "truth", "group": "topic"})
    assert cs.name == "facts" and len(cs) == 4
    assert cs.labels.tolist() == [1, 0, 1, 0] and cs.label_names == ["false", "true"]
    assert cs.groups == ["sky", "sky", "snow", "snow"]
    assert cs.spans is None


def test_user_jsonl_word_set_with_template(tmp_path: Path) -> None:
    lines = [{"w": "happy", "v": 2.7}, {"w": "sad", "v": -2.1}, {"w": "table", "v": 0.0}]
    path = _write(tmp_path / "valence.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    cs = load_user_concepts(
        path, kind="continuous", columns={"word": "w", "value": "v"}, template="I feel {word} today"
    )
    assert cs.texts[1] == "I feel sad today" and cs.spans is not None and cs.spans[1] == (7, 10)
    assert cs.labels.dtype.kind == "f" and cs.groups == ["happy", "sad", "table"]


def test_user_span_column_and_word_lookup(tmp_path: Path) -> None:
    lines = [{"t": "a cat sat", "s": [2, 5], "c": "animal"}, {"t": "a red hat", "s": [2, 5], "c": "color"}]
    path = _write(tmp_path / "spans.jsonl", "\n".join(json.dumps(x) for x in lines))
    cs = load_user_concepts(path, kind="categorical", columns={"text": "t", "span": "s", "label": "c"})
    assert cs.spans == [(2, 5), (2, 5)]
    path2 = _write(tmp_path / "words.csv", "t,w,c\nthe cat sat,cat,animal\na red hat,red,color\n")
    cs2 = load_user_concepts(path2, kind="categorical", columns={"text": "t", "word": "w", "label": "c"})
    assert cs2.spans == [(4, 7), (2, 5)] and cs2.words == ["cat", "red"]


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not found: .*nothere\.csv"):
        load_user_concepts(tmp_path / "nothere.csv", kind="binary", columns={"text": "t", "label": "l"})


def test_misspelled_column_suggests_the_close_match(good_csv: Path) -> None:
    with pytest.raises(DatasetError, match=r"facts.csv: column 'sentense' .* not found \(did you mean 'sentence'\?\)"):
        load_user_concepts(good_csv, kind="binary", columns={"text": "sentense", "label": "truth"})


def test_missing_role_says_which(good_csv: Path) -> None:
    with pytest.raises(DatasetError, match="needs a column mapped to 'label'"):
        load_user_concepts(good_csv, kind="binary", columns={"text": "sentence"})


def test_empty_set(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.csv", "text,label\n")
    with pytest.raises(DatasetError, match="empty"):
        load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"})


def test_one_class_only(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.csv", "text,label\na,1\nb,1\n")
    with pytest.raises(DatasetError, match="only one class"):
        load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"})


def test_nan_label_names_the_row_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "nan.csv", "text,label\na,1\nb,\nc,0\n")
    with pytest.raises(DatasetError, match=r"nan.csv: row 2, line 3: label column 'label' is empty/NaN"):
        load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"})


def test_nan_value_in_continuous_set(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.csv", "text,value\na,1.5\nb,nan\n")
    with pytest.raises(DatasetError, match="row 2, line 3"):
        load_user_concepts(path, kind="continuous", columns={"text": "text", "value": "value"})


def test_duplicate_rows_warn_with_count(tmp_path: Path) -> None:
    path = _write(tmp_path / "dup.csv", "text,label\na,1\nb,0\na,1\na,1\n")
    with pytest.warns(DatasetWarning, match="2 duplicate rows"):
        cs = load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"})
    assert len(cs) == 4 and "2 duplicate rows" in cs.summary()
    dropped = load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"}, duplicates="drop")
    assert len(dropped) == 2


def test_span_outside_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "span.csv", "text,label,s,e\nabc,1,0,2\nxyz,0,1,9\n")
    with pytest.raises(DatasetError, match=r"row 2, line 3: span \(1, 9\) lies outside its text \(length 3\)"):
        load_user_concepts(path, kind="binary",
                           columns={"text": "text", "label": "label", "span_start": "s", "span_end": "e"})


def test_template_without_placeholder(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.csv", "w,l\ncat,a\nred,b\n")
    with pytest.raises(DatasetError, match="no \\{word\\} placeholder"):
        load_user_concepts(path, kind="categorical", columns={"word": "w", "label": "l"}, template="The word is")
    with pytest.raises(DatasetError, match="uses \\{colour\\}, which is not a column"):
        load_user_concepts(path, kind="categorical", columns={"word": "w", "label": "l"}, template="{word} {colour}")


def test_non_utf8_bytes_name_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\u00e9,1\nx,0\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1.csv: not valid UTF-8 \(byte 0xe9 at offset 14, line 2\)"):
        load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"})


def test_unsupported_extension(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.xlsx", "x")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_user_concepts(path, kind="binary", columns={"text": "t", "label": "l"})


def test_failed_validation_leaves_nothing_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    hf_cache = tmp_path / "hf-cache"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bad = _write(tmp_path / "bad.csv", "text,label\na,1\nb,\n")
    with pytest.raises(DatasetError):
        load_user_concepts(bad, kind="binary", columns={"text": "text", "label": "label"})
    assert not hf_cache.exists() or not any(hf_cache.rglob("*"))
    assert not any(scratch.iterdir())
    # once fixed, the same path loads the new content (no stale copy of the broken file)
    _write(bad, "text,label\na,1\nb,0\n")
    assert load_user_concepts(bad, kind="binary", columns={"text": "text", "label": "label"}).labels.tolist() == [1, 0]


def test_content_hash_is_stable_and_sensitive(good_csv: Path, tmp_path: Path) -> None:
    mapping = {"text": "sentence", "label": "truth", "group": "topic"}
    first = load_user_concepts(good_csv, kind="binary", columns=mapping)
    again = load_user_concepts(good_csv, kind="binary", columns=mapping, name="other-name")
    assert first.content_hash() == again.content_hash() and len(first.content_hash()) == 64
    changed = _write(tmp_path / "changed.csv", good_csv.read_text(encoding="utf-8").replace("Snow is black.,0",
                                                                                          "Snow is black.,1"))
    assert load_user_concepts(changed, kind="binary", columns=mapping).content_hash() != first.content_hash()


def test_binary_with_more_than_two_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "three.csv", "text,label\na,x\nb,y\nc,z\n")
    with pytest.raises(DatasetError, match=r"3 distinct labels .*kind='categorical'"):
        load_user_concepts(path, kind="binary", columns={"text": "text", "label": "label"})


def test_pairs_from_user_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", "x,y\nking,queen\nman,woman\n")
    cs = load_user_concepts(path, kind="pairs", columns={"a": "x", "b": "y"}, relation="gender")
    assert cs.relations == ["gender", "gender"] and cs.texts_b == ["queen", "woman"]
    assert cs.spans_b == [(0, 5), (0, 5)]
