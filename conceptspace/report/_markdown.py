"""report.md: the verdict table first, then one section per claim, rendered from :class:`ReportData`."""

from __future__ import annotations

import json

from conceptspace.report._build import ReportData, execution_note, twin_note


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(data: ReportData) -> str:
    """report.md: verdict table first, then one section per claim."""
    doc = data.document
    model, suite = doc["model"], doc["suite"]
    out = [f"# conceptspace report: {suite['name']} on {model['name']}", ""]
    out.append(f"Suite `{suite['source']}`{' (--quick)' if doc['quick'] else ''}; seed {doc['seed']}; "
               f"{suite['correction']} correction across {sum(not t['sanity_check'] for t in doc['tests'])} tests at "
               f"alpha {suite['alpha']}; {suite['n_permutations']} permutations, {suite['n_bootstrap']} bootstrap "
               f"samples. Model: {model['name']} ({model['architecture']}, {model['n_layers']} layers, "
               f"d={model['d_model']}, {model['parameters']:,} parameters, weights sha256 "
               f"`{str(model.get('weights_sha256'))[:16]}...`){execution_note(doc)}; {twin_note(doc)}.")
    out += ["", "## Verdicts", ""]
    out.append(_md_table(
        ["claim", "verdict", "best test", "effect", "95% CI", "p (adj.)", "untrained twin", "tests"],
        [[f"{r['claim']} {r['title']}", f"**{r['verdict']}**", f"`{r['best']}`", r["effect"], r["ci"], r["p_adj"],
          r["twin"], r["n_tests"]] for r in data.verdict_rows],
    ))
    out += ["", "Verdict rules (fixed in the suite before the run):", ""]
    out += [f"- {v['rule']}" for v in doc["verdicts"]]
    for s in data.sections:
        out += ["", f"## {s.claim}: {s.title} ({s.verdict['verdict']})", "", f"*Claim.* {s.statement}", "",
                f"*Tested by.* {s.tests}", "", f"*Controls.* {s.controls}", "",
                f"*Verdict.* **{s.verdict['verdict']}**: {s.verdict['reason']}.", ""]
        for a in s.analyses:
            status = a["status"] + (f" ({a['reason']})" if a["reason"] else "")
            out.append(f"- analysis `{a['id']}` ({a['kind']}): {status}; {a['n_tests']} tests")
        for f in s.figures:
            out += ["", f"![{f.caption}](figures/{f.name})", "", f"*{f.caption}*"]
        if s.summary:
            out += ["", "```", s.summary, "```"]
        if s.caveats:
            out += ["", "Caveats:", ""] + [f"- {c}" for c in s.caveats]
    out += ["", "## Run", "", f"Timings (s): {json.dumps(doc['timings'])}", "",
            "Packages: " + ", ".join(f"{k} {v}" for k, v in doc["packages"].items()), ""]
    return "\n".join(out)
