"""One report across several runs (models, seeds, twins): verdicts claim by run, and per-claim curves overlaid
with layers aligned by relative depth.

Why relative depth: a claim about "the middle of the network" has to be compared at the same fraction of depth
in a 6-layer encoder, a 30-layer SmolLM2 and an 80-layer model run over NDIF; block indices do not line up. A
test at block ``i`` of an ``L``-block model sits at depth ``i / (L - 1)``; layer-less tests (``unembed``,
``final_norm``, the lexical baseline) are tabled, not drawn.

Nothing is recomputed: every number comes from the runs' own results.json (read with
:func:`conceptspace.suite.load_results`), so the comparison cannot disagree with the reports it compares.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from conceptspace.analyses._figures import Figure, to_png
from conceptspace.depth import block_depth
from conceptspace.errors import InvalidInputError
from conceptspace.report._html import _img
from conceptspace.stats import ResultSet, TestResult, is_sanity_check
from conceptspace.suite import load_results
from conceptspace.theory import CLAIMS
from conceptspace.utils.text_safety import md_code, md_text

__all__ = ["ComparedRun", "compare_runs", "read_run", "write_comparison"]


@dataclass(frozen=True)
class ComparedRun:
    """One run as the comparison sees it: a label, its document's header facts, its tests and verdicts."""

    label: str
    folder: Path
    model: dict[str, Any]
    suite: str
    seed: int
    quick: bool
    results: ResultSet
    verdicts: dict[str, dict[str, Any]]

    def depth(self, result: TestResult) -> float | None:
        """Relative depth of a test's block (0 = first block, 1 = last), or None for a layer-less test."""
        n_layers = int(self.model.get("n_layers") or 0)
        if result.layer is None or n_layers < 2:
            return None
        return block_depth(result.layer, n_layers)


def read_run(folder: str | Path, label: str | None = None) -> ComparedRun:
    """A run folder written by ``conceptspace run`` (it holds results.json)."""
    path = Path(folder)
    document_path = path / "results.json" if path.is_dir() else path
    if not document_path.exists():
        raise InvalidInputError(f"{folder}: no results.json there; pass a folder written by `conceptspace run`")
    document = json.loads(document_path.read_text(encoding="utf-8"))
    results = load_results(document_path)
    model = dict(document["model"])
    name = label or f"{model.get('name')} (seed {document.get('seed')}{', quick' if document.get('quick') else ''})"
    return ComparedRun(label=name, folder=document_path.parent, model=model, suite=document["suite"]["name"],
                       seed=int(document.get("seed", 0)), quick=bool(document.get("quick")), results=results,
                       verdicts={v["claim"]: v for v in document["verdicts"]})


def compare_runs(folders: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[ComparedRun]:
    """Read every run; labels default to model, seed and --quick, made unique if two runs share them."""
    if len(folders) < 2:
        raise InvalidInputError("compare needs at least two run folders")
    if labels is not None and len(labels) != len(folders):
        raise InvalidInputError(f"{len(labels)} labels for {len(folders)} runs: give one label per run")
    runs = [read_run(f, None if labels is None else labels[i]) for i, f in enumerate(folders)]
    seen: dict[str, int] = {}
    unique = []
    for run in runs:
        count = seen.get(run.label, 0)
        seen[run.label] = count + 1
        unique.append(run if count == 0 else ComparedRun(**{**run.__dict__, "label": f"{run.label} #{count + 1}"}))
    return unique


def verdict_table(runs: Sequence[ComparedRun]) -> list[list[str]]:
    """Rows: claims in the battery's order (those any run judged); columns: the runs' verdicts."""
    claims = [c for c in CLAIMS if any(c in run.verdicts for run in runs)]
    return [[c, *(run.verdicts.get(c, {}).get("verdict", "-") for run in runs)] for c in claims]


def _curve_points(run: ComparedRun, claim: str, method: str) -> list[tuple[float, float, float, float]]:
    points = []
    for r in run.results:
        depth = run.depth(r)
        evidence = r.control is None and not is_sanity_check(r)
        if r.claim == claim and r.method == method and evidence and depth is not None:
            points.append((depth, r.effect_size, r.ci_low, r.ci_high))
    return sorted(points)


def claim_curves(runs: Sequence[ComparedRun], claim: str) -> Figure | None:
    """Effect vs relative depth for every run (one line per run and method), with its CI band."""
    methods = sorted({r.method for run in runs for r in run.results if r.claim == claim and r.layer is not None
                      and r.control is None and not is_sanity_check(r)})
    series = [(run, m, _curve_points(run, claim, m)) for run in runs for m in methods]
    series = [s for s in series if len(s[2]) >= 1]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for run, method, points in series:
        depth, effect, low, high = (list(v) for v in zip(*points, strict=True))
        label = run.label if len(methods) == 1 else f"{run.label}: {method}"
        below = [max(e - lo, 0.0) for e, lo in zip(effect, low, strict=True)]
        above = [max(hi - e, 0.0) for e, hi in zip(effect, high, strict=True)]
        bars = ax.errorbar(depth, effect, yerr=[below, above], marker="o", capsize=3, label=label)
        if len(depth) > 1:  # a band between layers; a single layer keeps its error bar
            ax.fill_between(depth, low, high, color=bars.lines[0].get_color(), alpha=0.12, linewidth=0)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("relative depth (block / (blocks - 1))")
    ax.set_ylabel("effect size (95% CI)")
    ax.set_title(f"{claim} {CLAIMS[claim].title if claim in CLAIMS else ''}: runs overlaid", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    return Figure(f"compare-{claim}.png", f"{claim}: effect per relative depth, one line per run (model-only tests, "
                  "95% CI as bars and band)", to_png(fig))


def _markdown(runs: Sequence[ComparedRun], figures: list[Figure]) -> str:
    out = ["# conceptspace comparison", ""]
    for run in runs:
        m = run.model
        out.append(f"- {md_text(run.label)}: suite {md_code(run.suite)}, {md_text(m.get('name'))} "
                   f"({md_text(m.get('architecture'))}, {m.get('n_layers')} blocks, d={m.get('d_model')}), seed "
                   f"{run.seed}{', --quick' if run.quick else ''}; {md_code(str(run.folder))}")
    header = ["claim", *(md_text(run.label) for run in runs)]
    out += ["", "## Verdicts", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in verdict_table(runs)]
    out += ["", "Each verdict is the run's own (its suite's rules, its correction); a difference between runs is a "
            "difference in evidence, not a test of one.", "", "## Curves by relative depth", ""]
    for f in figures:
        out += [f"![{md_text(f.caption)}](figures/{f.name})", "", f"*{md_text(f.caption)}*", ""]
    return "\n".join(out)


def _html(runs: Sequence[ComparedRun], figures: list[Figure]) -> str:
    e = html.escape
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>conceptspace comparison</title>',
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em}"
             "th{background:#f2f4f7}</style></head><body><h1>conceptspace comparison</h1><ul>"]
    for run in runs:
        m = run.model
        parts.append(f"<li>{e(run.label)}: suite <code>{e(run.suite)}</code>, {e(str(m.get('name')))} "
                     f"({e(str(m.get('architecture')))}, {m.get('n_layers')} blocks), seed {run.seed}</li>")
    parts.append("</ul><h2>Verdicts</h2><table><tr><th>claim</th>"
                 + "".join(f"<th>{e(run.label)}</th>" for run in runs) + "</tr>")
    for row in verdict_table(runs):
        parts.append("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</table><h2>Curves by relative depth</h2>")
    for f in figures:
        parts.append(f"<figure>{_img(f.png, f.caption)}"
                     f"<figcaption>{e(f.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_comparison(folders: Sequence[str | Path], out_dir: str | Path,
                     labels: Sequence[str] | None = None) -> dict[str, Path]:
    """Write compare.md, compare.html and figures/ for the runs in ``folders``; return the paths."""
    runs = compare_runs(folders, labels)
    claims = [c for c in CLAIMS if any(r.claim == c for run in runs for r in run.results)]
    figures = [f for f in (claim_curves(runs, c) for c in claims) if f is not None]
    folder = Path(out_dir)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    for f in figures:
        (folder / "figures" / f.name).write_bytes(f.png)
    paths = {"markdown": folder / "compare.md", "html": folder / "compare.html"}
    paths["markdown"].write_text(_markdown(runs, figures), encoding="utf-8")
    paths["html"].write_text(_html(runs, figures), encoding="utf-8")
    return paths
