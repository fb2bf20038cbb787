"""Concept datasets: the public entry points (load, list, validate, tokenization report, controls).

The work is split into one-job modules; this module is the stable import path the rest of the toolkit uses:

- ``concept_schema``: ``ConceptSet`` / ``ConceptInfo`` and the canonical columns;
- ``concept_validation``: the single validation path (columns, templates, spans, labels, duplicates);
- ``concept_files``: strict UTF-8 reading and user CSV/TSV/JSONL files via HF ``datasets``;
- ``bundled_concepts``: readers and catalogue of the datasets shipped in ``datasets/``;
- ``tokenization``: how a set's words tokenize under a model's tokenizer;
- ``controls``: shuffled labels, control task, frequency-matched and random sets;
- ``concept_pairs``: analogy quadruples from pairs sets.
"""

from __future__ import annotations

from typing import Any

from conceptspace.concepts._bundled import analogy_questions, format_concept_table, list_bundled, load_bundled
from conceptspace.concepts._controls import (
    control_task,
    frequency_matched_rows,
    frequency_matched_words,
    null_labels,
    random_concept_set,
    shuffled_labels,
    zipf_frequencies,
)
from conceptspace.concepts._files import load_user_concepts
from conceptspace.concepts._pairs import analogy_quadruples
from conceptspace.concepts._schema import DEFAULT_WORD_TEMPLATE, KINDS, ConceptInfo, ConceptSet
from conceptspace.concepts._tokenization import TokenizationReport, drop_multi_token, tokenization_report
from conceptspace.concepts._validation import DatasetWarning


def load_concepts(name: str, *, subset: str | None = None, **options: Any) -> ConceptSet:
    """Load a bundled concept set by name: ``"repe_emotions"``, ``"truth_is_universal/neg_animal_class"`` or
    ``("truth_is_universal", subset="neg_animal_class")``.

    Options: ``template`` (word and pairs sets: a string with ``{word}``), ``duplicates`` / ``conflicts``
    (warn, drop, error, keep; bundled sets default to documented drops). ``list_concepts()`` names every set.
    """
    return load_bundled(name, subset, **options)


def list_concepts() -> list[ConceptInfo]:
    """Every loadable bundled name with kind, row count, license and description."""
    return list_bundled()


__all__ = [
    "DEFAULT_WORD_TEMPLATE",
    "KINDS",
    "ConceptInfo",
    "ConceptSet",
    "DatasetWarning",
    "TokenizationReport",
    "analogy_quadruples",
    "analogy_questions",
    "control_task",
    "drop_multi_token",
    "format_concept_table",
    "frequency_matched_rows",
    "frequency_matched_words",
    "list_concepts",
    "load_concepts",
    "load_user_concepts",
    "null_labels",
    "random_concept_set",
    "shuffled_labels",
    "tokenization_report",
    "zipf_frequencies",
]
