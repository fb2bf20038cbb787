"""report.md: the verdict table first, then one section per claim, rendered from :class:`ReportData`."""

from __future__ import annotations

import json
from urllib.parse import quote

from conceptspace.report._build import (
    SECONDARY_HEADING,
    ReportData,
    execution_note,
    family_note,
    family_rows,
    layers_note,
    role_note,
    twin_note,
    with_space,
)
from conceptspace.utils.text_safety import md_code, md_fence, md_text


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub table; cells must already be escaped (``md_text`` / ``md_code(in_table=True)`` / our numbers)."""
    def cell(c: str) -> str:
        return c.replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
    if doc.get("null_seed") is not None:
        out += [f"**NULL BATTERY (seed {doc['null_seed']})**: every label set permuted within its groups, pairs "
                "re-paired, directions drawn from permuted labels. Nothing here is evidence about the model.", ""]
    n_primary = sum(1 for t in doc["tests"] if (t.get("extra") or {}).get("role") == "primary")
    out.append(f"Suite {md_code(suite['source'])}{' (--quick)' if doc['quick'] else ''}; seed {doc['seed']}; "
               f"{suite['correction']} across claims over {n_primary} primary tests (Bonferroni within a claim) at "
               f"alpha {suite['alpha']}; sequential permutations from {suite['n_permutations']}, "
               f"{suite['n_bootstrap']} bootstrap samples. Model: {md_text(model['name'])} "
               f"({md_text(model['architecture'])}, {model['n_layers']} layers, d={model['d_model']}, "
               f"{model['parameters']:,} parameters, weights sha256 "
               f"{md_code(str(model.get('weights_sha256'))[:16] + '...')}){execution_note(doc)}"
               f"{'; variant: ' + md_text(model['variant']) if model.get('variant') else ''}; "
               f"{md_text(twin_note(doc))}.{with_space(md_text(layers_note(doc)))}")
    out += ["", "## Verdicts", ""]
    out.append(_md_table(
        ["claim", "verdict", "best test", "effect", "95% CI", "p (adj.)", "draws", "minus controls (paired 95% CI)",
         "tests"],
        [[f"{r['claim']} {md_text(r['title'])}", f"**{md_text(r['verdict'])}**",
          md_code(r["best"], in_table=True) if r["best"] != "-" else "-", md_text(r["effect"]), r["ci"],
          r["p_adj"], r["draws"], r["paired"], r["n_tests"]] for r in data.verdict_rows],
    ))
    out += ["", "Verdict rules (fixed in the suite before the run):", ""]
    out += [f"- {v['rule']}" for v in doc["verdicts"]]  # built from validated suite values only
    out += ["", "## Multiple testing", "", md_text(family_note(doc)), ""]
    rows = family_rows(doc)
    if rows:
        out.append(_md_table(["claim", "primary tests", "p (Bonferroni in claim)", "p (adjusted across claims)"],
                             rows))
    for s in data.sections:
        verdict = md_text(s.verdict["verdict"])
        out += ["", f"## {s.claim}: {s.title} ({verdict})", "", f"*Claim.* {s.statement}", "",
                f"*Tested by.* {s.tests}", "", f"*Controls.* {s.controls}", "",
                f"*Verdict.* **{verdict}**: {md_text(s.verdict['reason'])}.", ""]
        for a in s.analyses:
            status = md_text(a["status"] + (f" ({a['reason']})" if a["reason"] else ""))
            read = md_text(f"; read at {', '.join(a['sites'])}") if a.get("sites") else ""
            out.append(f"- analysis {md_code(a['id'])} ({md_text(a['kind'] + role_note(a))}): {status}; "
                       f"{a['n_tests']} tests{read}")
        if s.secondary:
            out += ["", f"*{SECONDARY_HEADING}.*", ""]
            out.append(_md_table(
                ["analysis", "test", "effect", "95% CI", "p (uncorrected)", "p floor 1/(B+1)", "draws",
                 "minus controls (paired 95% CI)"],
                [[md_code(r["analysis"], in_table=True), md_code(r["test"], in_table=True), md_text(r["effect"]),
                  r["ci"], r["p"], r["floor"], r["draws"], r["paired"]] for r in s.secondary]))
        for f in s.figures:
            out += ["", f"![{md_text(f.caption)}](figures/{quote(f.name)})", "", f"*{md_text(f.caption)}*"]
        if s.summary:
            out += ["", md_fence(s.summary)]
        if s.caveats:
            out += ["", "Caveats:", ""] + [f"- {md_text(c)}" for c in s.caveats]
    out += ["", "## Run", "", f"Timings (s): {md_text(json.dumps(doc['timings']))}", "", *_forward_line(doc["timings"]),
            "Packages: " + ", ".join(f"{md_text(k)} {md_text(v)}" for k, v in doc["packages"].items()), ""]
    return "\n".join(out)


def _forward_line(timings: dict[str, object]) -> list[str]:
    """One line: texts the run's extraction requests asked for (each forwarding its own) vs texts forwarded."""
    passes = timings.get("forward_passes")
    if not isinstance(passes, dict):
        return []
    return [f"Forward passes: {passes['forwarded_texts']} texts forwarded for {passes['requested_texts']} requested "
            f"({passes['requests']} extraction requests, {passes['cache_hits']} served from the cache without a "
            "forward).", ""]
