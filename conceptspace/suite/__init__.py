"""Probe suites: the declarative TOML experiment specs in ``probes/``, and the runner that executes one.

Why here, above the analyses and the theory: a suite is the pre-registration of a run (datasets, layers,
controls, permutations, correction, verdict thresholds), and the runner is the one place that sees the whole run,
so it is the one place where "p-values corrected across every test of the run" can be kept.
"""

from __future__ import annotations

from conceptspace.suite._document import RESULTS_SCHEMA_VERSION, load_results, result_from_record, results_document
from conceptspace.suite._runner import AnalysisRecord, RunOutcome, run_suite
from conceptspace.suite._spec import AnalysisSpec, Suite, SuiteError, load_suite, parse_suite

__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "AnalysisRecord",
    "AnalysisSpec",
    "RunOutcome",
    "Suite",
    "SuiteError",
    "load_results",
    "load_suite",
    "parse_suite",
    "result_from_record",
    "results_document",
    "run_suite",
]
