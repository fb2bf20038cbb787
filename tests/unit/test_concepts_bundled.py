"""Bundled concept datasets: every set loads with its documented row count, datasheets carry license/citation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conceptspace.concepts import (
    ConceptSet,
    analogy_quadruples,
    analogy_questions,
    format_concept_table,
    list_concepts,
    load_concepts,
)
from conceptspace.errors import DatasetError
from conceptspace.resources import datasets_dir

DATASETS = sorted(p.name for p in datasets_dir().iterdir() if p.is_dir())
NAMES = [info.name for info in list_concepts()]
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|\s*([\d,]+)\s*\|", re.MULTILINE)


def _meta(dataset: str) -> dict:
    return json.loads((datasets_dir() / dataset / "meta.json").read_text(encoding="utf-8"))


def test_every_concept_type_is_covered() -> None:
    kinds = {info.kind for info in list_concepts()}
    assert kinds == {"binary", "categorical", "continuous", "pairs"}
    assert set(DATASETS) == {
        "empath_categories", "function_vectors", "google_analogy", "lre_relations", "repe_emotions",
        "phrase_composition", "python_docs_corpus", "trilemma_city_locations", "truth_is_universal",
        "vader_lexicon", "world_models",
    }


@pytest.mark.parametrize("name", NAMES)
def test_bundled_set_loads_with_documented_count(name: str) -> None:
    info = next(i for i in list_concepts() if i.name == name)
    concept_set = load_concepts(name)
    assert isinstance(concept_set, ConceptSet)
    assert len(concept_set) == info.n_rows > 0
    assert concept_set.kind == info.kind
    assert len(concept_set.texts) == len(concept_set.groups) == len(concept_set.labels) == info.n_rows
    if concept_set.kind in ("binary", "categorical"):
        assert len(set(concept_set.labels.tolist())) >= 2
    spans = concept_set.spans
    if concept_set.is_word_level:
        assert spans is not None
        words = concept_set.words
        assert words is not None
        for text, (start, end), word in list(zip(concept_set.texts, spans, words, strict=True))[:200]:
            assert text[start:end] == word
    if concept_set.kind == "pairs":
        for text, (start, end), word in list(zip(concept_set.texts_b, concept_set.spans_b,
                                                 concept_set.column("b"), strict=True))[:200]:
            assert text[start:end] == word


@pytest.mark.parametrize("dataset", DATASETS)
def test_datasheet_license_and_counts(dataset: str) -> None:
    folder = datasets_dir() / dataset
    sheet = (folder / "DATASHEET.md").read_text(encoding="utf-8")
    meta = _meta(dataset)
    assert (folder / "SOURCE.md").is_file()
    assert any(p.name.startswith("LICENSE") for p in folder.iterdir())
    for heading in ("## Source", "## License", "## Citation", "## What a row is", "## Row counts",
                    "## Known quirks", "## Intended use"):
        assert heading in sheet, f"{dataset}/DATASHEET.md lacks {heading}"
    assert meta["license"] in sheet
    assert meta["citation"].split(".")[0] in sheet
    documented = {m.group(1): (m.group(2), int(m.group(3).replace(",", ""))) for m in _ROW.finditer(sheet)}
    for subset, entry in meta["subsets"].items():
        name = f"{dataset}/{subset}" if subset else dataset
        assert documented.get(name) == (entry["kind"], entry["n_rows"]), f"{name}: datasheet disagrees with meta.json"
    assert len(documented) == len(meta["subsets"])


def test_datasets_folder_holds_no_python() -> None:
    assert not list(datasets_dir().rglob("*.py"))
    total = sum(p.stat().st_size for p in datasets_dir().rglob("*") if p.is_file())
    assert total < 50 * 2**20


def test_subset_argument_equals_slash_name() -> None:
    a = load_concepts("truth_is_universal", subset="neg_animal_class")
    b = load_concepts("truth_is_universal/neg_animal_class")
    assert a.content_hash() == b.content_hash()
    assert a.name == b.name == "truth_is_universal/neg_animal_class"


def test_incomplete_or_misspelled_names_explain_themselves() -> None:
    with pytest.raises(DatasetError, match="name one: truth_is_universal/animal_class"):
        load_concepts("truth_is_universal")
    with pytest.raises(DatasetError, match="did you mean 'repe_emotions'"):
        load_concepts("repe_emotion")
    with pytest.raises(DatasetError, match="did you mean 'neg_animal_class'"):
        load_concepts("truth_is_universal", subset="neg_animal_clas")


def test_trilemma_uses_boolean_truth_columns_not_multiclass_label() -> None:
    cs = load_concepts("trilemma_city_locations/true_false")
    assert cs.label_names == ["false", "true"]
    index = cs.texts.index("The city of Laoag is not located in Libya.")  # negated and true
    assert cs.labels[index] == 1
    assert cs.column("negated")[index] is True
    neither = load_concepts("trilemma_city_locations/true_false_neither")
    assert neither.label_counts() == {"false": 2731, "true": 2767, "neither": 1749}


def test_truth_polarity_groups_pair_affirmative_and_negated() -> None:
    cs = load_concepts("truth_is_universal/animal_class_polarity")
    groups, texts, labels = cs.groups, cs.texts, cs.labels
    first = [i for i, g in enumerate(groups) if g == groups[0]]
    assert [texts[i] for i in first] == ["The salmon is a fish.", "The salmon is not a fish."]
    assert sorted(labels[first].tolist()) == [0, 1]
    assert len(set(groups)) == 164


def test_disjunctions_with_contradictory_labels_are_dropped_and_noted() -> None:
    cs = load_concepts("truth_is_universal/animal_class_disj")
    assert len(cs) == 357
    assert any("different labels" in note for note in cs.notes)
    assert len(set(cs.texts)) == len(cs)


def test_google_analogy_pairs_rebuild_the_original_questions() -> None:
    family = load_concepts("google_analogy/family")
    quads = analogy_quadruples(family)
    a, b = family.column("a"), family.column("b")
    built = {(a[i], b[i], a[j], b[j]) for i, j in quads}
    original = set(analogy_questions("family"))
    assert len(quads) == 506 and original <= built
    everything = load_concepts("google_analogy/all")
    assert len(everything.label_names or []) == 14
    assert len(analogy_questions()) == 19544


def test_continuous_sets_have_plausible_values() -> None:
    lat = load_concepts("world_models/place_latitude").labels
    assert lat.dtype.kind == "f" and -90 <= lat.min() < 0 < lat.max() <= 90
    valence = load_concepts("vader_lexicon/valence").labels
    assert -4 <= valence.min() < 0 < valence.max() <= 4
    years = load_concepts("world_models/art_year").labels
    assert 1950 <= years.min() and years.max() < 2023


def test_template_override_and_bad_template() -> None:
    cs = load_concepts("function_vectors/categories", template="Consider: {word}.")
    assert cs.texts[0] == "Consider: alpaca." and cs.spans is not None and cs.spans[0] == (10, 16)
    with pytest.raises(DatasetError, match="no \\{word\\} placeholder"):
        load_concepts("function_vectors/categories", template="Consider: {w}.")


def test_concept_table_lists_every_name() -> None:
    table = format_concept_table(list_concepts())
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "rows", "license"]
    assert len(lines) == len(NAMES) + 2
    assert any(line.startswith("lre_relations/adj_antonym ") and " 98 " in line for line in lines)


def test_no_name_is_listed_twice() -> None:
    assert len(NAMES) == len(set(NAMES))
    assert Path(datasets_dir()).is_dir()
