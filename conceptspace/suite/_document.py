"""The results.json document of a run (schema: docs/RESULTS_SCHEMA.md), and reading one back.

Why a module of its own: the document is the run's public record; other tools, the determinism test and
``conceptspace compare`` read it, so writing and reading it must be one pair of functions that round-trips.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from conceptspace import __version__
from conceptspace.errors import InvalidInputError
from conceptspace.stats._results import ResultSet, TestResult, is_sanity_check
from conceptspace.suite._runner import RunOutcome

RESULTS_SCHEMA_VERSION = 2
_RENAMED = {"id": "test_id", "p": "p_value"}  # record name -> TestResult name
_DISPLAY_ONLY = ("test_id", "dataset", "site", "layer", "position", "method", "control", "sanity_check")


def package_versions() -> dict[str, str]:
    """Versions of the packages that produce the numbers (for results.json)."""
    out = {}
    for name in ("conceptspace", "torch", "transformers", "nnsight", "numpy", "scipy", "scikit-learn",
                 "statsmodels", "pandas", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "conceptspace":
                out[name] = __version__
    out["python"] = platform.python_version()
    return out


def _sites_read(results: ResultSet) -> list[str]:
    """The sites an analysis's tests read, in first-seen order: what its depth-relative layers became here."""
    return list(dict.fromkeys(r.site for r in results if r.site and r.key.control is None))


def results_document(outcome: RunOutcome) -> dict[str, Any]:
    """The results.json document (schema in docs/RESULTS_SCHEMA.md)."""
    return {
        "schema": "conceptspace.results",
        "schema_version": RESULTS_SCHEMA_VERSION,
        "model": outcome.model,
        "twin": outcome.twin,
        "suite": outcome.suite.to_dict(),
        "quick": outcome.quick,
        "seed": outcome.suite.seed,
        "packages": package_versions(),
        "timings": outcome.timings,
        "analyses": [
            {"id": r.spec.id, "claim": r.spec.claim, "kind": r.spec.kind, "status": r.status, "reason": r.reason,
             "params": r.params, "n_tests": len(r.results), "sites": _sites_read(r.results)}
            for r in outcome.records
        ],
        "tests": [_test_record(r) for r in outcome.results],
        "verdicts": [v.to_dict() for v in outcome.verdicts],
        "caveats": outcome.caveats,
    }


def _test_record(r: TestResult) -> dict[str, Any]:
    d = r.to_dict()
    return {
        "id": d["test_id"], "key": d["key"], "claim": d["claim"], "dataset": d["dataset"], "site": d["site"],
        "layer": d["layer"],
        "position": d["position"], "method": d["method"], "control": d["control"],
        "statistic_name": d["statistic_name"], "statistic": d["statistic"],
        "effect_size_name": d["effect_size_name"], "effect_size": d["effect_size"], "ci_low": d["ci_low"],
        "ci_high": d["ci_high"], "p": d["p_value"], "p_adjusted": d["p_adjusted"], "significant": d["significant"],
        "n": d["n"], "n_groups": d["n_groups"], "correction": d["correction"], "alpha": d["alpha"],
        "sanity_check": is_sanity_check(r), "extra": d["extra"],
    }


def result_from_record(record: Mapping[str, Any]) -> TestResult:
    """The :class:`TestResult` behind one ``tests`` record of results.json (inverse of the record writer)."""
    if "key" not in record:
        raise InvalidInputError("this test record has no 'key' (written before conceptspace 0.2); re-run the suite")
    values = {_RENAMED.get(k, k): v for k, v in record.items()}
    return TestResult.from_dict({k: v for k, v in values.items() if k not in _DISPLAY_ONLY})


def load_results(path: str | Path) -> ResultSet:
    """Every test of a results.json file, corrected values and all, as a :class:`ResultSet`."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if document.get("schema") != "conceptspace.results":
        raise InvalidInputError(f"{path} is not a conceptspace results.json (schema {document.get('schema')!r})")
    if document.get("schema_version") != RESULTS_SCHEMA_VERSION:
        raise InvalidInputError(f"{path} has results schema version {document.get('schema_version')}; this "
                                f"conceptspace reads version {RESULTS_SCHEMA_VERSION}")
    return ResultSet(result_from_record(t) for t in document["tests"])
