"""The google_analogy descriptions must name the pair direction the data file actually has.

The capital sections were once described as "country -> capital" while the pairs are (Athens, Greece). The
check is data-driven: the countries of the file are the first words of the ``currency`` and
``gram6-nationality-adjective`` sections, so in a capital section they must be the *second* word.
"""

from __future__ import annotations

import json

from conceptspace.resources import datasets_dir


def _sections() -> dict[str, set[tuple[str, str]]]:
    sections: dict[str, set[tuple[str, str]]] = {}
    current = ""
    for line in (datasets_dir() / "google_analogy" / "questions-words.txt").read_text().splitlines():
        if line.startswith(":"):
            current = line.split()[1]
            sections[current] = set()
        elif line.strip():
            a, b = line.split()[:2]
            sections[current].add((a, b))
    return sections


def test_capital_sections_are_capital_to_country_in_data_and_description() -> None:
    sections = _sections()
    countries = {a for a, _ in sections["currency"]} | {a for a, _ in sections["gram6-nationality-adjective"]}
    meta = json.loads((datasets_dir() / "google_analogy" / "meta.json").read_text())
    datasheet = (datasets_dir() / "google_analogy" / "DATASHEET.md").read_text()
    for section in ("capital-common-countries", "capital-world"):
        firsts = {a for a, _ in sections[section]}
        seconds = {b for _, b in sections[section]}
        assert not firsts & countries, f"{section}: a country appears as the first word"
        assert len(seconds & countries) >= 15, f"{section}: the second words are not countries"
        description = meta["subsets"][section]["description"]
        assert description.startswith("word pairs: capital -> country"), description
        assert f"| `google_analogy/{section}` | pairs | {len(sections[section])} | {description} |" in datasheet
    assert ("Athens", "Greece") in sections["capital-common-countries"]
