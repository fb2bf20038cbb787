"""Write a run's report: ``results.json`` (versioned schema), ``report.md``, self-contained ``report.html``, figures.

Why three forms: JSON is what other tools and the determinism test read; Markdown renders on GitHub next to the
committed reference report; HTML is the single file a reviewer opens offline (figures inlined as PNG data URIs,
no external URL). All three are built from the same :class:`ReportData`, so they cannot disagree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from conceptspace.results import ResultSet, TestResult
from conceptspace.runner import RunOutcome, results_document
from conceptspace.text_safety import md_code, md_fence, md_text
from conceptspace.theory import CLAIMS, is_sanity_check


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
    from conceptspace import figures

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


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub table; cells must already be escaped (``md_text`` / ``md_code(in_table=True)`` / our numbers)."""
    def cell(c: str) -> str:
        return c.replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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


def render_markdown(data: ReportData) -> str:
    """report.md: verdict table first, then one section per claim.

    Every string that a user or a model file controls (suite name and source, model name and architecture,
    twin name, test ids, reasons, caveats) goes through ``md_text`` / ``md_code``: report.md is rendered by
    tools that pass raw HTML and links through, so a name like ``<img onerror=...>`` must stay inert text.
    Claim statements, verdict rules (built from validated suite values) and the numbers are ours and stay as
    written.
    """
    doc = data.document
    model, suite = doc["model"], doc["suite"]
    out = [f"# conceptspace report: {md_text(suite['name'])} on {md_text(model['name'])}", ""]
    out.append(f"Suite {md_code(suite['source'])}{' (--quick)' if doc['quick'] else ''}; seed {doc['seed']}; "
               f"{suite['correction']} correction across {sum(not t['sanity_check'] for t in doc['tests'])} tests at "
               f"alpha {suite['alpha']}; {suite['n_permutations']} permutations, {suite['n_bootstrap']} bootstrap "
               f"samples. Model: {md_text(model['name'])} ({md_text(model['architecture'])}, {model['n_layers']} "
               f"layers, d={model['d_model']}, {model['parameters']:,} parameters, weights sha256 "
               f"{md_code(str(model.get('weights_sha256'))[:16] + '...')}){execution_note(doc)}; "
               f"{md_text(twin_note(doc))}.")
    out += ["", "## Verdicts", ""]
    out.append(_md_table(
        ["claim", "verdict", "best test", "effect", "95% CI", "p (adj.)", "untrained twin", "tests"],
        [[f"{r['claim']} {md_text(r['title'])}", f"**{md_text(r['verdict'])}**",
          md_code(r["best"], in_table=True) if r["best"] != "-" else "-", md_text(r["effect"]), r["ci"],
          r["p_adj"], r["twin"], r["n_tests"]] for r in data.verdict_rows],
    ))
    out += ["", "Verdict rules (fixed in the suite before the run):", ""]
    out += [f"- {v['rule']}" for v in doc["verdicts"]]  # built from validated suite values only
    for s in data.sections:
        verdict = md_text(s.verdict["verdict"])
        out += ["", f"## {s.claim}: {s.title} ({verdict})", "", f"*Claim.* {s.statement}", "",
                f"*Tested by.* {s.tests}", "", f"*Controls.* {s.controls}", "",
                f"*Verdict.* **{verdict}**: {md_text(s.verdict['reason'])}.", ""]
        for a in s.analyses:
            status = md_text(a["status"] + (f" ({a['reason']})" if a["reason"] else ""))
            out.append(f"- analysis {md_code(a['id'])} ({md_text(a['kind'])}): {status}; {a['n_tests']} tests")
        for f in s.figures:
            out += ["", f"![{md_text(f.caption)}](figures/{quote(f.name)})", "", f"*{md_text(f.caption)}*"]
        if s.summary:
            out += ["", md_fence(s.summary)]
        if s.caveats:
            out += ["", "Caveats:", ""] + [f"- {md_text(c)}" for c in s.caveats]
    out += ["", "## Run", "", f"Timings (s): {md_text(json.dumps(doc['timings']))}", "",
            "Packages: " + ", ".join(f"{md_text(k)} {md_text(v)}" for k, v in doc["packages"].items()), ""]
    return "\n".join(out)


def write_report(outcome: RunOutcome, out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, report.md, report.html and figures/*.png into ``out_dir``; return their paths."""
    from conceptspace.report_html import render_html

    folder = Path(out_dir)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    data = build_report(outcome)
    paths = {"json": folder / "results.json", "markdown": folder / "report.md", "html": folder / "report.html"}
    paths["json"].write_text(json.dumps(data.document, indent=1, sort_keys=True, allow_nan=False) + "\n",
                             encoding="utf-8")
    for section in data.sections:
        for figure in section.figures:
            (folder / "figures" / figure.name).write_bytes(figure.png)
    paths["markdown"].write_text(render_markdown(data), encoding="utf-8")
    paths["html"].write_text(render_html(data), encoding="utf-8")
    return paths
