"""Reading the ``tests`` of a results.json document back into a :class:`ResultSet`.

Why here and not in ``suite``: ``ResultSet.from_json`` must accept a results.json file as well as its own
``to_json`` text (a user who saved a run reaches for the class, not for a suite function), and ``stats`` may not
import ``suite``. The writer stays in ``conceptspace.suite._document``; this is its inverse, and
``conceptspace.suite.load_results`` calls it, so there is one reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conceptspace.errors import InvalidInputError
from conceptspace.stats._results import ResultSet, TestResult

RESULTS_SCHEMA = "conceptspace.results"
RESULTS_SCHEMA_VERSION = 3  # 3: the family, roles and controls; 2: every test record carries its key
#: versions this reader still reads (a version-2 document has no roles: its tests read back as they were)
READABLE_VERSIONS = (2, 3)
_RENAMED = {"id": "test_id", "p": "p_value"}  # record name -> TestResult name
_DISPLAY_ONLY = ("test_id", "dataset", "site", "layer", "position", "method", "control", "sanity_check")


def is_results_document(data: object) -> bool:
    """Whether parsed JSON is a results.json document (rather than ``ResultSet.to_json`` output)."""
    return isinstance(data, Mapping) and "schema" in data


def result_from_record(record: Mapping[str, Any]) -> TestResult:
    """The :class:`TestResult` behind one ``tests`` record of results.json (inverse of the record writer)."""
    if "key" not in record:
        raise InvalidInputError("this test record has no 'key' (written before conceptspace 0.2); re-run the suite")
    values = {_RENAMED.get(k, k): v for k, v in record.items()}
    return TestResult.from_dict({k: v for k, v in values.items() if k not in _DISPLAY_ONLY})


def results_from_document(document: Mapping[str, Any], source: str = "this document") -> ResultSet:
    """Every test of a parsed results.json document, corrected values and all."""
    if document.get("schema") != RESULTS_SCHEMA:
        raise InvalidInputError(f"{source} is not a conceptspace results.json (schema {document.get('schema')!r})")
    if document.get("schema_version") not in READABLE_VERSIONS:
        raise InvalidInputError(f"{source} has results schema version {document.get('schema_version')}; this "
                                f"conceptspace reads version {RESULTS_SCHEMA_VERSION}")
    return ResultSet(result_from_record(t) for t in document["tests"])
