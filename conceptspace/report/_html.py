"""The self-contained HTML report: one file, inline CSS, figures as PNG data URIs, no script, no external URL.

Why no JavaScript and no links out: the file must open offline, years later, and render the same in a headless
browser test; everything a reader needs is in the page.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

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

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.8em;margin:1em 0;width:100%;table-layout:fixed}
td,th{border:1px solid #ccc;padding:.3em .5em;
vertical-align:top}th{background:#f2f4f7}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.72em}
.v{font-weight:bold;padding:.1em .4em;border-radius:3px}.supported{background:#d4efdf}
.not-supported{background:#f5d5d2}.inconclusive{background:#fdebd0}.not-run{background:#e5e7e9}
figure{margin:1em 0}figcaption{font-size:.8em;color:#555}code{font-size:.9em}
td{overflow-wrap:anywhere}td code{word-break:break-all;font-size:.8em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _badge(verdict: str) -> str:
    return f'<span class="v {verdict.replace(" ", "-")}">{_e(verdict)}</span>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def render_html(data: ReportData) -> str:
    """report.html from the same content as report.md."""
    doc = data.document
    model, suite = doc["model"], doc["suite"]
    n_primary = sum(1 for t in doc["tests"] if (t.get("extra") or {}).get("role") == "primary")
    null_banner = (f"<p><strong>NULL BATTERY (seed {doc['null_seed']})</strong>: every label set permuted within its "
                   "groups, pairs re-paired, directions drawn from permuted labels. Nothing here is evidence about "
                   "the model.</p>") if doc.get("null_seed") is not None else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>conceptspace report: {_e(suite['name'])} on {_e(model['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>conceptspace report: {_e(suite['name'])} on {_e(model['name'])}</h1>",
        null_banner,
        f"<p>Suite <code>{_e(suite['source'])}</code>{' (--quick)' if doc['quick'] else ''}; seed {doc['seed']}; "
        f"{_e(suite['correction'])} across claims over {n_primary} primary tests (Bonferroni within a claim) at "
        f"alpha {suite['alpha']}; sequential permutations from {suite['n_permutations']}, "
        f"{suite['n_bootstrap']} bootstrap samples. Model "
        f"{_e(model['name'])} ({_e(model['architecture'])}, {model['n_layers']} layers, d={model['d_model']}, "
        f"{model['parameters']:,} parameters, weights sha256 <code>{_e(str(model.get('weights_sha256'))[:16])}"
        f"...</code>){_e(execution_note(doc))}{'; variant: ' + _e(model['variant']) if model.get('variant') else ''}; "
        f"{_e(twin_note(doc))}.{with_space(_e(layers_note(doc)))}</p>",
        "<h2>Verdicts</h2><table><tr><th>claim</th><th>verdict</th><th>best test</th><th>effect</th>"
        "<th>95% CI</th><th>p (adj.)</th><th>draws</th><th>minus controls (paired 95% CI)</th><th>tests</th>"
        "<th>reason</th></tr>",
    ]
    for r in data.verdict_rows:
        parts.append(
            f"<tr><td>{_e(r['claim'])} {_e(r['title'])}</td><td>{_badge(r['verdict'])}</td>"
            f"<td><code>{_e(r['best'])}</code></td><td>{_e(r['effect'])}</td><td>{_e(r['ci'])}</td>"
            f"<td>{_e(r['p_adj'])}</td><td>{_e(r['draws'])}</td><td>{_e(r['paired'])}</td><td>{_e(r['n_tests'])}</td>"
            f"<td>{_e(r['reason'])}</td></tr>"
        )
    parts.append("</table><p>Verdict rules, fixed in the suite before the run:</p><ul>")
    parts += [f"<li>{_e(v['rule'])}</li>" for v in doc["verdicts"]]
    parts.append("</ul>")
    parts += ["<h2>Multiple testing</h2>", f"<p>{_e(family_note(doc))}</p>"]
    rows = family_rows(doc)
    if rows:
        parts.append("<table><tr><th>claim</th><th>primary tests</th><th>p (Bonferroni in claim)</th>"
                     "<th>p (adjusted across claims)</th></tr>"
                     + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
                     + "</table>")
    for s in data.sections:
        parts += [
            f"<h2>{_e(s.claim)}: {_e(s.title)} {_badge(s.verdict['verdict'])}</h2>",
            f"<p><em>Claim.</em> {_e(s.statement)}</p><p><em>Tested by.</em> {_e(s.tests)}</p>",
            f"<p><em>Controls.</em> {_e(s.controls)}</p>",
            f"<p><em>Verdict.</em> <strong>{_e(s.verdict['verdict'])}</strong>: {_e(s.verdict['reason'])}.</p><ul>",
        ]
        for a in s.analyses:
            status = a["status"] + (f" ({a['reason']})" if a["reason"] else "")
            read = f"; read at {', '.join(a['sites'])}" if a.get("sites") else ""
            parts.append(f"<li>analysis <code>{_e(a['id'])}</code> ({_e(a['kind'] + role_note(a))}): {_e(status)}; "
                         f"{a['n_tests']} tests{_e(read)}</li>")
        parts.append("</ul>")
        if s.secondary:
            parts.append(f"<p><em>{_e(SECONDARY_HEADING)}.</em></p><table><tr><th>analysis</th><th>test</th>"
                         "<th>effect</th><th>95% CI</th><th>p (uncorrected)</th><th>p floor 1/(B+1)</th>"
                         "<th>draws</th><th>minus controls (paired 95% CI)</th></tr>"
                         + "".join("<tr>" + "".join(f"<td>{_e(r[c])}</td>" for c in
                                                    ("analysis", "test", "effect", "ci", "p", "floor", "draws",
                                                     "paired")) + "</tr>" for r in s.secondary) + "</table>")
        for f in s.figures:
            parts.append(f"<figure>{_img(f.png, f.caption)}<figcaption>{_e(f.caption)}</figcaption></figure>")
        if s.summary:
            parts.append(f"<pre>{_e(s.summary)}</pre>")
        if s.caveats:
            parts.append("<p>Caveats:</p><ul>" + "".join(f"<li>{_e(c)}</li>" for c in s.caveats) + "</ul>")
    parts += [
        "<h2>Run</h2>",
        f"<p>Timings (s): <code>{_e(json.dumps(doc['timings']))}</code></p>",
        "<p>Packages: " + _e(", ".join(f"{k} {v}" for k, v in doc["packages"].items())) + "</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
