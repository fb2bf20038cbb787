"""The catalogue of bundled concept datasets: one small reader per upstream file format.

Each folder under ``datasets/`` keeps the upstream files verbatim (with LICENSE, SOURCE.md and a DATASHEET.md)
plus a ``meta.json`` (license, citation, subsets with kind, row count and description) so the catalogue can be
listed without parsing any data. A reader turns the verbatim files into a ``RawTable`` and a column mapping; the
shared validator (``concept_validation.build_concept_set``) does the rest, exactly as for user files.

Names: ``<dataset>/<subset>`` (e.g. ``truth_is_universal/neg_animal_class``), or the bare dataset name for
datasets with a single set (``repe_emotions``, ``empath_categories``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from conceptspace.concepts._files import read_text_strict
from conceptspace.concepts._schema import DEFAULT_WORD_TEMPLATE, ConceptInfo, ConceptSet
from conceptspace.concepts._validation import RawTable, build_concept_set, suggest_column
from conceptspace.errors import DatasetError
from conceptspace.resources import datasets_dir


@dataclass(frozen=True)
class Prepared:
    """A bundled set read from its files, ready for validation."""

    raw: RawTable
    columns: dict[str, str]
    template: str | None = None
    label_names: list[str] | None = None
    duplicates: str = "drop"
    conflicts: str = "drop"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subset:
    """One loadable set: its kind and the function that reads it from the dataset folder."""

    kind: str
    read: Callable[[Path], Prepared]
    options: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- file readers
@functools.lru_cache(maxsize=64)
def _csv_rows(path: Path) -> tuple[dict[str, str], ...]:
    """Rows of a header CSV as dicts of strings (cached: several subsets read the same file)."""
    return tuple(csv.DictReader(io.StringIO(read_text_strict(path), newline="")))


@functools.lru_cache(maxsize=128)
def _json(path: Path) -> Any:
    try:
        return json.loads(read_text_strict(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc})") from None


def _bool(value: str) -> bool:
    return value.strip().lower() == "true"


def _origin(folder: Path, *files: str) -> str:
    return " + ".join(f"{folder.name}/{f}" for f in files)


# ---------------------------------------------------------------------------------------------- trilemma
def _trilemma(with_synthetic: bool) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        files = ["city_locations.csv", *(["city_locations_synthetic.csv"] if with_synthetic else [])]
        rows = [r for f in files for r in _csv_rows(folder / f)]
        cols: dict[str, list[Any]] = {k: [] for k in ("statement", "city", "label", "negated", "country", "real")}
        for r in rows:
            cols["statement"].append(r["statement"])
            cols["city"].append(r["object_1"])
            cols["negated"].append(_bool(r["negation"]))
            cols["country"].append(r["object_2"])
            cols["real"].append(_bool(r["real_object"]))
            flags = [name for name in ("is_true", "is_false", "is_neither") if _bool(r[name])]
            if len(flags) != 1:
                raise DatasetError(f"{folder.name}: row {r['statement']!r} has truth flags {flags}; need exactly one")
            cols["label"].append(flags[0][3:])
        names = ["false", "true", "neither"] if with_synthetic else ["false", "true"]
        raw = RawTable(cols, _origin(folder, *files))
        return Prepared(raw, {"text": "statement", "label": "label", "group": "city"}, label_names=names)

    return read


# ---------------------------------------------------------------------------------------------- truth_is_universal
_TRUTH_TOPICS = ("animal_class", "element_symb", "inventors")


def _truth_file(stem: str) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        return _truth_prepared(folder, [stem])

    return read


def _truth_prepared(folder: Path, stems: Sequence[str]) -> Prepared:
    cols: dict[str, list[Any]] = {k: [] for k in ("statement", "label", "group", "topic", "form", "language")}
    for stem in stems:
        negated = stem.startswith("neg_")
        core = stem.removeprefix("neg_")
        language = "de" if core.endswith("_de") else "en"
        core = core.removesuffix("_de")
        form = "negated" if negated else "affirmative"
        for suffix, name in (("_conj", "conjunction"), ("_disj", "disjunction")):
            if core.endswith(suffix):
                core, form = core.removesuffix(suffix), name
        # Affirmative, negated and German files are row-aligned translations of one source sentence: same group.
        aligned = form in ("affirmative", "negated")
        for i, r in enumerate(_csv_rows(folder / f"{stem}.csv")):
            cols["statement"].append(r["statement"])
            cols["label"].append({"0": "false", "1": "true"}.get(r["label"].strip(), r["label"]))
            cols["group"].append(f"{core}#{i}" if aligned else r["statement"])
            cols["topic"].append(core)
            cols["form"].append(form)
            cols["language"].append(language)
    raw = RawTable(cols, _origin(folder, *(f"{s}.csv" for s in stems)), line_offset=2 if len(stems) == 1 else 0)
    return Prepared(raw, {"text": "statement", "label": "label", "group": "group"}, label_names=["false", "true"])


def _truth_polarity(topic: str) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        return _truth_prepared(folder, [topic, f"neg_{topic}"])

    return read


# ---------------------------------------------------------------------------------------------- word classes
def _empath(folder: Path) -> Prepared:
    text = read_text_strict(folder / "categories.tsv")
    words: list[str] = []
    labels: list[str] = []
    empty = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        category, *members = line.split("\t")
        for member in members:
            if not member.strip():
                empty += 1
                continue
            words.append(member.strip().replace("_", " "))
            labels.append(category)
    raw = RawTable({"word": words, "category": labels}, _origin(folder, "categories.tsv"))
    notes = (f"skipped {empty} empty word slots in categories.tsv",) if empty else ()
    return Prepared(raw, {"word": "word", "label": "category"}, DEFAULT_WORD_TEMPLATE, conflicts="keep", notes=notes)


def _fv_categories(folder: Path) -> Prepared:
    classes = _json(folder / "categories.json")
    words = [w for members in classes.values() for w in members]
    labels = [c for c, members in classes.items() for _ in members]
    raw = RawTable({"word": words, "category": labels}, _origin(folder, "categories.json"))
    return Prepared(raw, {"word": "word", "label": "category"}, DEFAULT_WORD_TEMPLATE, conflicts="keep")


def _repe(folder: Path) -> Prepared:
    texts: list[str] = []
    labels: list[str] = []
    emotions = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    for emotion in emotions:
        scenarios = _json(folder / f"{emotion}.json")
        texts.extend(scenarios)
        labels.extend([emotion] * len(scenarios))
    raw = RawTable({"scenario": texts, "emotion": labels}, _origin(folder, "*.json"))
    return Prepared(raw, {"text": "scenario", "label": "emotion"}, label_names=list(emotions))


# ---------------------------------------------------------------------------------------------- pairs
_FV_PAIRS = {
    "capitalize": "capitalize.json",
    "country_capital": "country-capital.json",
    "country_currency": "country-currency.json",
    "national_parks": "national_parks.json",
    "next_item": "next_item.json",
    "park_country": "park-country.json",
    "present_past": "present-past.json",
    "prev_item": "prev_item.json",
    "singular_plural": "singular-plural.json",
}


def _fv_pairs(subset: str) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        items = _json(folder / _FV_PAIRS[subset])
        cols = {"a": [i["input"] for i in items], "b": [i["output"] for i in items], "relation": [subset] * len(items)}
        raw = RawTable(cols, _origin(folder, _FV_PAIRS[subset]))
        return Prepared(raw, {"a": "a", "b": "b", "relation": "relation"}, DEFAULT_WORD_TEMPLATE)

    return read


@functools.lru_cache(maxsize=4)
def _analogy_sections(path: Path) -> tuple[tuple[str, tuple[tuple[str, str, str, str], ...]], ...]:
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for number, line in enumerate(read_text_strict(path).splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
            continue
        parts = line.split()
        if current is None or len(parts) != 4:
            raise DatasetError(f"{path}: line {number} is not 'a b c d' under a ': section' header")
        sections[current].append((parts[0], parts[1], parts[2], parts[3]))
    return tuple((name, tuple(qs)) for name, qs in sections.items())


def analogy_questions(section: str | None = None) -> list[tuple[str, str, str, str]]:
    """The original google_analogy questions (a, b, c, d meaning a:b :: c:d), optionally of one section."""
    sections = dict(_analogy_sections(datasets_dir() / "google_analogy" / "questions-words.txt"))
    if section is None:
        return [q for qs in sections.values() for q in qs]
    if section not in sections:
        raise DatasetError(f"google_analogy has no section {section!r}{suggest_column(section, list(sections))}")
    return list(sections[section])


def _google(section: str | None) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        cols: dict[str, list[str]] = {"a": [], "b": [], "relation": []}
        for name, questions in _analogy_sections(folder / "questions-words.txt"):
            if section is not None and name != section:
                continue
            seen: set[tuple[str, str]] = set()
            for a, b, c, d in questions:
                for pair in ((a, b), (c, d)):
                    if pair not in seen:  # questions are built from pairs; keep each pair once, in first-seen order
                        seen.add(pair)
                        cols["a"].append(pair[0])
                        cols["b"].append(pair[1])
                        cols["relation"].append(name)
        raw = RawTable(cols, _origin(folder, "questions-words.txt"))
        return Prepared(raw, {"a": "a", "b": "b", "relation": "relation"}, DEFAULT_WORD_TEMPLATE)

    return read


def _lre_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.json"), key=lambda p: (p.parent.name, p.stem))


def _lre(relation: str | None) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        cols: dict[str, list[str]] = {"a": [], "b": [], "relation": [], "relation_type": []}
        files = [p for p in _lre_files(folder) if relation is None or p.stem == relation]
        for path in files:
            content = _json(path)
            for sample in content["samples"]:
                cols["a"].append(sample["subject"])
                cols["b"].append(sample["object"])
                cols["relation"].append(path.stem)
                cols["relation_type"].append(path.parent.name)
        origin = _origin(folder, *(f"{p.parent.name}/{p.name}" for p in files)) if relation else folder.name
        raw = RawTable(cols, origin)
        return Prepared(raw, {"a": "a", "b": "b", "relation": "relation"}, DEFAULT_WORD_TEMPLATE)

    return read


# ---------------------------------------------------------------------------------------------- continuous
_VADER_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")


def _vader(subset: str) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        cols: dict[str, list[Any]] = {"word": [], "valence": [], "valence_sd": []}
        for number, line in enumerate(read_text_strict(folder / "vader_lexicon.txt").splitlines(), start=1):
            parts = line.split("\t")
            if len(parts) < 3:
                raise DatasetError(f"{folder.name}/vader_lexicon.txt: line {number} has {len(parts)} fields, need 4")
            token = parts[0]
            if subset != "valence_all" and not _VADER_WORD.fullmatch(token):
                continue
            valence = float(parts[1])
            if subset == "polarity" and abs(valence) < 1.0:
                continue
            cols["word"].append(token)
            cols["valence"].append(valence)
            cols["valence_sd"].append(float(parts[2]))
        if subset == "polarity":
            cols["polarity"] = ["positive" if v > 0 else "negative" for v in cols["valence"]]
        raw = RawTable(cols, _origin(folder, "vader_lexicon.txt"))
        if subset == "polarity":
            return Prepared(
                raw, {"word": "word", "label": "polarity"}, DEFAULT_WORD_TEMPLATE, label_names=["negative", "positive"]
            )
        return Prepared(raw, {"word": "word", "value": "valence"}, DEFAULT_WORD_TEMPLATE)

    return read


def _places(axis: str) -> Callable[[Path], Prepared]:
    def read(folder: Path) -> Prepared:
        rows = _csv_rows(folder / "world_place.csv")
        cols: dict[str, list[Any]] = {
            "name": [r["name"] for r in rows],
            "latitude": [float(r["latitude"]) for r in rows],
            "longitude": [float(r["longitude"]) for r in rows],
            "country": [r["country"] for r in rows],
            "entity_type": [r["entity_type"] for r in rows],
            "entity_subtype": [r["entity_subtype"] for r in rows],
            "is_test": [_bool(r["is_test"]) for r in rows],
        }
        raw = RawTable(cols, _origin(folder, "world_place.csv"), line_offset=2)
        return Prepared(raw, {"word": "name", "value": axis, "group": "name"}, "Where is {word}?")

    return read


def _decimal_year(iso: str) -> float:
    day = date.fromisoformat(iso)
    start, end = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return day.year + (day - start).days / (end - start).days


def _art(folder: Path) -> Prepared:
    rows = _csv_rows(folder / "art.csv")
    cols: dict[str, list[Any]] = {
        "title": [r["title"] for r in rows],
        "creator": [r["creator"] for r in rows],
        "entity_type": [r["entity_type"] for r in rows],
        "release_date": [r["release_date"] for r in rows],
        "year": [_decimal_year(r["release_date"]) for r in rows],
        "work": [f"{r['title']} by {r['creator']}" for r in rows],
        "is_test": [_bool(r["is_test"]) for r in rows],
    }
    raw = RawTable(cols, _origin(folder, "art.csv"), line_offset=2)
    return Prepared(raw, {"word": "title", "value": "year", "group": "work"}, "The {entity_type} {word} by {creator}")


# ---------------------------------------------------------------------------------------------- phrases
def _phrases(folder: Path) -> Prepared:
    """Adjective-noun phrases (authored here, CC0): idiom vs compositional, grouped by the shared adjective so that
    an idiom and its matched literal phrase are never split."""
    rows = _csv_rows(folder / "phrases.csv")
    cols: dict[str, list[Any]] = {"phrase": [], "class": [], "adjective": [], "noun": [], "pair": [], "group": []}
    for r in rows:
        adjective, noun = r["adjective"].strip(), r["noun"].strip()
        if not adjective or not noun or " " in adjective or " " in noun:
            raise DatasetError(f"{folder.name}/phrases.csv: {adjective!r} {noun!r} must be two single words")
        cols["phrase"].append(f"{adjective} {noun}")
        cols["class"].append(r["class"].strip())
        cols["adjective"].append(adjective)
        cols["noun"].append(noun)
        cols["pair"].append(r["pair"].strip())
        cols["group"].append(adjective)
    raw = RawTable(cols, _origin(folder, "phrases.csv"), line_offset=2)
    return Prepared(raw, {"word": "phrase", "label": "class", "group": "group"}, DEFAULT_WORD_TEMPLATE,
                    label_names=["compositional", "idiom"], duplicates="error", conflicts="error")


# ---------------------------------------------------------------------------------------------- the catalogue
def _catalogue() -> dict[str, dict[str | None, Subset]]:
    truth: dict[str | None, Subset] = {}
    for topic in _TRUTH_TOPICS:
        for stem in (topic, f"neg_{topic}", f"{topic}_de", f"neg_{topic}_de", f"{topic}_conj", f"{topic}_disj"):
            truth[stem] = Subset("binary", _truth_file(stem))
        truth[f"{topic}_polarity"] = Subset("binary", _truth_polarity(topic))
    google: dict[str | None, Subset] = {"all": Subset("pairs", _google(None))}
    for section, _ in _analogy_sections(datasets_dir() / "google_analogy" / "questions-words.txt"):
        google[section] = Subset("pairs", _google(section))
    lre: dict[str | None, Subset] = {"all": Subset("pairs", _lre(None))}
    for path in _lre_files(datasets_dir() / "lre_relations"):
        lre[path.stem] = Subset("pairs", _lre(path.stem))
    fv: dict[str | None, Subset] = {"categories": Subset("categorical", _fv_categories)}
    fv.update({name: Subset("pairs", _fv_pairs(name)) for name in _FV_PAIRS})
    return {
        "trilemma_city_locations": {
            "true_false": Subset("binary", _trilemma(False)),
            "true_false_neither": Subset("categorical", _trilemma(True)),
        },
        "truth_is_universal": truth,
        "empath_categories": {None: Subset("categorical", _empath)},
        "function_vectors": fv,
        "repe_emotions": {None: Subset("categorical", _repe)},
        "google_analogy": google,
        "lre_relations": lre,
        "vader_lexicon": {
            "valence": Subset("continuous", _vader("valence")),
            "valence_all": Subset("continuous", _vader("valence_all")),
            "polarity": Subset("binary", _vader("polarity")),
        },
        "phrase_composition": {None: Subset("binary", _phrases)},
        "world_models": {
            "place_latitude": Subset("continuous", _places("latitude")),
            "place_longitude": Subset("continuous", _places("longitude")),
            "art_year": Subset("continuous", _art),
        },
    }


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str | None, Subset]]:
    """Every bundled dataset and its subsets (``None`` = the dataset has a single set)."""
    return _catalogue()


def full_name(dataset: str, subset: str | None) -> str:
    return dataset if subset is None else f"{dataset}/{subset}"


def split_name(name: str, subset: str | None) -> tuple[str, str | None]:
    """Resolve ``name`` (``dataset`` or ``dataset/subset``) plus an optional ``subset`` argument."""
    if "/" in name:
        dataset, _, inline = name.partition("/")
        if subset is not None and subset != inline:
            raise DatasetError(f"concept set {name!r} already names subset {inline!r}; subset={subset!r} disagrees")
        return dataset, inline
    return name, subset


def resolve(name: str, subset: str | None = None) -> tuple[str, str | None, Subset]:
    """Find a bundled set, with a close-match suggestion or the list of subsets when the name is incomplete."""
    dataset, sub = split_name(name, subset)
    table = catalogue()
    if dataset not in table:
        raise DatasetError(f"no bundled concept dataset {dataset!r}{suggest_column(dataset, sorted(table))}")
    subsets = table[dataset]
    if sub is None and None not in subsets:
        choices = ", ".join(f"{dataset}/{s}" for s in subsets)
        raise DatasetError(f"{dataset!r} has several concept sets; name one: {choices}")
    if sub not in subsets:
        known = [s for s in subsets if s is not None]
        hint = suggest_column(sub, known) if sub is not None and known else ""
        raise DatasetError(f"{dataset!r} has no subset {sub!r}{hint}")
    return dataset, sub, subsets[sub]


@functools.lru_cache(maxsize=16)
def dataset_meta(dataset: str) -> dict[str, Any]:
    """The folder's meta.json: license, source, citation, and per-subset kind, row count and description."""
    path = datasets_dir() / dataset / "meta.json"
    meta: dict[str, Any] = json.loads(read_text_strict(path))
    return meta


def load_bundled(
    name: str,
    subset: str | None = None,
    *,
    template: str | None = None,
    duplicates: str | None = None,
    conflicts: str | None = None,
) -> ConceptSet:
    """Load one bundled set through the shared validator; ``template`` overrides a word set's default."""
    dataset, sub, spec = resolve(name, subset)
    prepared = spec.read(datasets_dir() / dataset)
    meta = dataset_meta(dataset)
    key = sub if sub is not None else ""
    described = meta.get("subsets", {}).get(key, {})
    return build_concept_set(
        prepared.raw,
        name=full_name(dataset, sub),
        kind=spec.kind,
        columns=prepared.columns,
        template=template if template is not None else prepared.template,
        label_names=prepared.label_names,
        duplicates=duplicates or prepared.duplicates,
        conflicts=conflicts or prepared.conflicts,
        source=meta.get("source", ""),
        license=meta.get("license", ""),
        citation=meta.get("citation", ""),
        description=described.get("description", meta.get("description", "")),
        notes=prepared.notes,
    )


def list_bundled() -> list[ConceptInfo]:
    """Every loadable bundled name with kind, documented row count, license and description (no data read)."""
    infos = []
    for dataset, subsets in catalogue().items():
        meta = dataset_meta(dataset)
        for sub, spec in subsets.items():
            described = meta.get("subsets", {}).get(sub if sub is not None else "", {})
            infos.append(
                ConceptInfo(
                    name=full_name(dataset, sub),
                    kind=spec.kind,
                    n_rows=int(described.get("n_rows", -1)),
                    license=meta.get("license", ""),
                    description=described.get("description", ""),
                )
            )
    return infos


def format_concept_table(infos: Sequence[ConceptInfo]) -> str:
    """A fixed-width table of concept sets for the terminal (``conceptspace datasets``)."""
    headers = ("name", "kind", "rows", "license", "description")
    rows = [(i.name, i.kind, str(i.n_rows), i.license, i.description) for i in infos]
    widths = [max([len(h), *(len(r[c]) for r in rows)]) for c, h in enumerate(headers[:-1])]
    def line(cells: Sequence[str]) -> str:
        fixed = [cells[c].ljust(widths[c]) if c != 2 else cells[c].rjust(widths[c]) for c in range(len(widths))]
        return "  ".join([*fixed, cells[-1]]).rstrip()
    out = [line(headers), line(["-" * w for w in widths] + ["-" * len(headers[-1])])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)
