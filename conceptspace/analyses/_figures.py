"""Figures of a run (matplotlib, Agg backend): PNG bytes that the report writes to files and inlines in HTML.

Why these figures: a per-layer curve with its CI band and the untrained twin overlaid is the one picture that
shows both where a concept becomes decodable and whether training (not the architecture) put it there; a
paired bar chart does the same for layer-less tests; a dose-response plot shows a steering effect against its
placebo band.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from conceptspace.stats._results import TRAINED, UNTRAINED, TestResult


@dataclass(frozen=True)
class Figure:
    """One figure of a report: file name under ``figures/``, caption, PNG bytes."""

    name: str
    caption: str
    png: bytes


_STYLE = {None: ("#1f5fa8", "model"), "untrained": ("#c0392b", "untrained twin"),
          "control_task": ("#7f8c8d", "control task"), "lexical": ("#27ae60", "last-token embedding")}


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def layer_curves(title: str, results: Sequence[TestResult], ylabel: str) -> bytes | None:
    """Effect size per layer with its CI band, one line per control (model, twin, control task); lexical flat."""
    series: dict[str | None, list[TestResult]] = {}
    flat: list[TestResult] = []
    for r in results:
        if r.layer is None:
            flat.append(r)
        else:
            series.setdefault(r.control, []).append(r)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for control, rows in series.items():
        rows = sorted(rows, key=lambda r: r.layer or 0)
        color, label = _STYLE.get(control, ("#8e44ad", str(control)))
        xs = [int(r.layer or 0) for r in rows]
        ax.plot(xs, [r.effect_size for r in rows], marker="o", ms=3, color=color, label=label)
        lo = [r.ci_low if _finite(r.ci_low) else r.effect_size for r in rows]
        hi = [r.ci_high if _finite(r.ci_high) else r.effect_size for r in rows]
        ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
        for r in rows:
            if r.significant:
                ax.plot([int(r.layer or 0)], [r.effect_size], marker="*", ms=9, color=color, linestyle="none")
    for r in flat:
        color, label = _STYLE.get(r.control, ("#8e44ad", str(r.control)))
        ax.axhline(r.effect_size, color=color, linestyle="--", linewidth=1, label=label)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def paired_bars(title: str, results: Sequence[TestResult], ylabel: str, max_bars: int = 24) -> bytes | None:
    """Effect with CI per test, model beside its untrained twin (layer-less and geometry tests)."""
    pairs: dict[str, dict[str | None, TestResult]] = {}
    for r in results:
        if r.control not in (None, UNTRAINED):
            continue
        stem = r.key.replace(control=None, model=TRAINED, analysis="").id.removesuffix("/task")
        pairs.setdefault(stem, {})[r.control] = r
    stems = [s for s in pairs if None in pairs[s]][:max_bars]
    if not stems:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(stems) + 1.2))
    for offset, control in ((-0.2, None), (0.2, "untrained")):
        color, label = _STYLE[control]
        ys, xs, lo, hi = [], [], [], []
        for i, s in enumerate(stems):
            row = pairs[s].get(control)
            if row is None or not _finite(row.effect_size):
                continue
            ys.append(i + offset)
            xs.append(row.effect_size)
            lo.append(row.effect_size - row.ci_low if _finite(row.ci_low) else 0.0)
            hi.append(row.ci_high - row.effect_size if _finite(row.ci_high) else 0.0)
        if xs:
            ax.barh(ys, xs, height=0.38, color=color, label=label,
                    xerr=[[max(v, 0.0) for v in lo], [max(v, 0.0) for v in hi]], error_kw={"lw": 0.8})
    ax.set_yticks(range(len(stems)))
    ax.set_yticklabels([s[-60:] for s in stems], fontsize=6)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def dose_response(title: str, curves: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes | None:
    """Mean target-score change vs alpha for the concept direction (model and twin) with its CI band."""
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, curve in curves.items():
        alphas = list(curve.get("alpha", []))
        if not alphas:
            continue
        color = _STYLE[None if label == "task" else "untrained"][0]
        name = "model" if label == "task" else "untrained twin"
        keys = list(curve)
        mean_key = next((k for k in keys if k.startswith("concept") and "low" not in k and "high" not in k), None)
        if mean_key is None:
            continue
        ax.plot(alphas, curve[mean_key], marker="o", color=color, label=f"{name}: concept direction")
        low = next((k for k in keys if k.startswith("concept") and "low" in k), None)
        high = next((k for k in keys if k.startswith("concept") and "high" in k), None)
        if low and high:
            ax.fill_between(alphas, curve[low], curve[high], color=color, alpha=0.18, linewidth=0)
        placebo = next((k for k in keys if k.startswith("random") and "mean" in k), None)
        if placebo:
            ax.plot(alphas, curve[placebo], linestyle="--", color=color, alpha=0.7, label=f"{name}: random dirs")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("alpha (relative to the site's typical norm)")
    ax.set_ylabel("change in target log-odds")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)
