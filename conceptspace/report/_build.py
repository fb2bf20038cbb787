"""Write a run's report: ``results.json`` (versioned schema), ``report.md``, self-contained ``report.html``, figures.

Why three forms: JSON is what other tools and the determinism test read; Markdown renders on GitHub next to the
committed reference report; HTML is the single file a reviewer opens offline (figures inlined as PNG data URIs,
no external URL). All three are built from the same :class:`ReportData`, so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.suite._runner import RunOutcome, results_document
from conceptspace.theory._verdicts import CLAIMS, is_sanity_check


@dataclass
class Figure:
    """One figure: file name under ``figures/``, caption, PNG bytes."""

    name: str
    caption: str
    png: bytes


@dataclass
class ClaimSection:
    """What the report says about one claim."""

    claim: str
    title: str
    statement: str
    tests: str
    controls: str
    verdict: dict[str, Any]
    analyses: list[dict[str, Any]]
    summary: str
    figures: list[Figure] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


@dataclass
class ReportData:
    """Everything rendered: header facts, the verdict table rows, one section per claim, the JSON document."""

    document: dict[str, Any]
    verdict_rows: list[dict[str, str]]
    sections: list[ClaimSection]


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, scientific for tiny p-values, '-' for missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if x != 0 and abs(x) < 10 ** (-digits):
            return f"{x:.1e}"
        return f"{x:.{digits}f}"
    return str(x)


def _verdict_row(verdict: dict[str, Any], results: ResultSet) -> dict[str, str]:
    by_id = {r.test_id: r for r in results}
    best = by_id.get(verdict.get("best_test_id") or "")
    twin = by_id.get(best.test_id[: -len("/task")] + "/untrained") if best and best.test_id.endswith("/task") else None
    row = {"claim": verdict["claim"], "title": verdict["title"], "verdict": verdict["verdict"],
           "best": "-", "effect": "-", "ci": "-", "p_adj": "-", "twin": "-", "n_tests": str(len(verdict["test_ids"])),
           "reason": verdict["reason"]}
    if best is not None:
        row.update(best=best.test_id, effect=f"{fmt(best.effect_size)} ({best.effect_size_name})",
                   ci=f"[{fmt(best.ci_low)}, {fmt(best.ci_high)}]", p_adj=fmt(best.p_adjusted, 4))
    if twin is not None:
        row["twin"] = f"{fmt(twin.effect_size)} [{fmt(twin.ci_low)}, {fmt(twin.ci_high)}]"
    return row


def _figures_for(claim: str, outcome: RunOutcome) -> list[Figure]:
    from conceptspace.analyses import _figures as figures
    out: list[Figure] = []
    for record in outcome.records:
        if record.spec.claim != claim or record.status != "ok":
            continue
        rows = [r for r in outcome.results if r.extra.get("analysis") == record.spec.id and not is_sanity_check(r)]
        name = record.spec.id
        if record.spec.kind in ("probe", "proximity"):
            by_method: dict[str, list[TestResult]] = {}
            for r in rows:
                by_method.setdefault(r.method, []).append(r)
            for method, group in by_method.items():
                ylabel = group[0].effect_size_name
                png = figures.layer_curves(f"{claim} {name}: {method} ({group[0].dataset})", group, ylabel)
                if png:
                    slug = f"{name}-{method}".replace("/", "_")
                    out.append(Figure(f"{slug}.png", f"{name}, {method}: effect per layer with 95% CI band; "
                                      "untrained twin and controls overlaid; stars: significant after correction",
                                      png))
        else:
            png = figures.paired_bars(f"{claim} {name}", rows, "effect size (95% CI)")
            if png:
                out.append(Figure(f"{name}.png", f"{name}: effect with 95% CI, model beside its untrained twin", png))
        curves = record.figure_data.get("dose_response")
        if curves:
            png = figures.dose_response(f"{claim} {name}: dose-response", curves)
            if png:
                out.append(Figure(f"{name}-dose-response.png", f"{name}: steering dose-response vs placebo", png))
    return out


def build_report(outcome: RunOutcome, *, with_figures: bool = True) -> ReportData:
    """Assemble the report's content from a finished run."""
    document = results_document(outcome)
    verdicts = {v["claim"]: v for v in document["verdicts"]}
    rows = [_verdict_row(v, outcome.results) for v in document["verdicts"]]
    sections = []
    for claim_id, verdict in verdicts.items():
        claim = CLAIMS[claim_id]
        mine = ResultSet(r for r in outcome.results if r.claim == claim_id)
        analyses = [a for a in document["analyses"] if a["claim"] == claim_id]
        caveats = [c for c in outcome.caveats if any(c.startswith(a["id"]) for a in analyses)]
        sections.append(ClaimSection(
            claim=claim_id, title=claim.title, statement=claim.statement, tests=claim.tests,
            controls=claim.controls, verdict=verdict, analyses=analyses,
            summary=mine.summary(f"{claim_id}: {claim.title}") if len(mine) else "",
            figures=_figures_for(claim_id, outcome) if with_figures else [], caveats=caveats,
        ))
    return ReportData(document, rows, sections)


def execution_note(doc: dict[str, Any]) -> str:
    """Where the traces ran (empty for a local run)."""
    remote = doc["model"].get("remote")
    if remote is True:
        return ", traced on NDIF (remote)"
    if remote == "local":
        return ", traced through the remote dry run (nnsight's in-process round trip)"
    return ""


def twin_note(doc: dict[str, Any]) -> str:
    """Which untrained control ran (its own architecture, a stand-in model, or none)."""
    twin = doc.get("twin")
    seed = doc["suite"]["twin_seed"]
    if twin is None:
        return "no untrained twin in this run"
    source = twin.get("twin_source", "config")
    if source == "config":
        return f"untrained twin seed {seed}"
    return f"untrained control: an untrained {twin['name']} (seed {seed}) standing in for the twin"
