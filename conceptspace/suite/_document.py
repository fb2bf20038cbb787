"""The results.json document of a run (schema: docs/RESULTS_SCHEMA.md), and reading one back.

Why a module of its own: the document is the run's public record; other tools, the determinism test and
``conceptspace compare`` read it, so writing and reading it must be one pair of functions that round-trips.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from conceptspace import __version__
from conceptspace.stats._document_reader import RESULTS_SCHEMA_VERSION, result_from_record, results_from_document
from conceptspace.stats._results import ResultSet, TestResult, is_sanity_check
from conceptspace.suite._runner import RunOutcome

__all__ = ["RESULTS_SCHEMA_VERSION", "load_results", "package_versions", "result_from_record", "results_document"]


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
        "null_seed": outcome.null_seed,
        "seed": outcome.suite.seed,
        "controls": outcome.controls,
        "family": family_record(outcome),
        "packages": package_versions(),
        "timings": outcome.timings,
        "analyses": [
            {"id": r.spec.id, "claim": r.spec.claim, "kind": r.spec.kind, "role": r.spec.role, "status": r.status,
             "reason": r.reason,
             "params": r.params, "n_tests": len(r.results), "sites": _sites_read(r.results)}
            for r in outcome.records
        ],
        "tests": [_test_record(r) for r in outcome.results],
        "verdicts": [v.to_dict() for v in outcome.verdicts],
        "caveats": outcome.caveats,
    }


def family_record(outcome: RunOutcome) -> dict[str, Any]:
    """How the run's p-values were corrected: which tests were in the family, and each claim's adjusted p."""
    roles: dict[str, int] = {}
    for r in outcome.results:
        role = str(r.extra.get("role", "exploratory"))
        roles[role] = roles.get(role, 0) + 1
    return {
        "procedure": (f"{outcome.suite.correction} across claims over Bonferroni-within-claim p-values of the primary "
                      "tests (one pre-declared test per analysis); every other test reported with its raw p"),
        "alpha": outcome.suite.alpha,
        "tests_by_role": roles,
        "claims": [c.to_dict() for c in outcome.family.values()],
        "sequential": {"start": outcome.suite.n_permutations,
                       "maximum": outcome.suite.max_permutations or 20 * outcome.suite.n_permutations,
                       "stopping": "Clopper-Pearson interval of the exceedance probability (99%) clears every "
                                   "decision threshold alpha / (m_c * j)"},
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


def load_results(path: str | Path) -> ResultSet:
    """Every test of a results.json file, corrected values and all, as a :class:`ResultSet`.

    The same reader as ``ResultSet.from_json(path)`` (``conceptspace.stats._document_reader``)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return results_from_document(document, source=str(path))
