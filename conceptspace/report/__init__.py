"""Reports of a run: ``results.json`` (versioned schema), ``report.md``, self-contained ``report.html``, figures.

Why three forms built from one :class:`ReportData`: JSON is what other tools and the determinism test read,
Markdown renders next to the committed reference report, HTML is the single file a reviewer opens offline; built
from the same data, they cannot disagree.
"""

from __future__ import annotations

from conceptspace.report._build import ReportData, build_report
from conceptspace.report._compare import ComparedRun, compare_runs, read_run, write_comparison
from conceptspace.report._html import render_html
from conceptspace.report._markdown import render_markdown
from conceptspace.report._write import write_report

__all__ = [
    "ComparedRun",
    "ReportData",
    "build_report",
    "compare_runs",
    "read_run",
    "render_html",
    "render_markdown",
    "write_comparison",
    "write_report",
]
