"""Write a run's report folder: results.json, report.md, report.html and ``figures/*.png``."""

from __future__ import annotations

import json
from pathlib import Path

from conceptspace.report._build import build_report
from conceptspace.report._html import render_html
from conceptspace.report._markdown import render_markdown
from conceptspace.suite._runner import RunOutcome


def write_report(outcome: RunOutcome, out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, report.md, report.html and ``figures/*.png`` into ``out_dir``; return their paths."""
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
