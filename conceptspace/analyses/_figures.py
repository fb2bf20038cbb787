"""Figures of results as matplotlib objects: a ResultSet (or its frame) in, a ``matplotlib.figure.Figure`` out.

Why these figures: a per-layer curve with its CI band and the untrained twin overlaid is the one picture that
shows both where a concept becomes decodable and whether training (not the architecture) put it there; a
paired bar chart does the same for layer-less tests; a dose-response plot shows a steering effect against its
placebo band.

Why Figures and not PNG bytes: a researcher restyles, combines (``ax=`` draws into their own subplot) and saves
in the format a paper needs. The report turns a Figure into the PNG it inlines with :func:`to_png`. Figures are
built without pyplot, so no global figure list grows and no GUI backend is touched; each is laid out with
constrained layout and its legend sits outside the axes, so nothing covers the data and no label is cut off.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from conceptspace.errors import InvalidInputError
from conceptspace.stats._results import UNTRAINED, ResultSet, TestResult


@dataclass(frozen=True)
class Figure:
    """One figure of a report: file name under ``figures/``, caption, PNG bytes."""

    name: str
    caption: str
    png: bytes


class NothingToDraw(InvalidInputError):
    """The data holds nothing this figure shows (e.g. no per-layer results for a layer curve)."""


ResultsLike: TypeAlias = ResultSet | Sequence[TestResult] | pd.DataFrame

_MODEL = ""  # the control value of the real test in a frame (None/NaN there)
_STYLE = {_MODEL: ("#1f5fa8", "model"), UNTRAINED: ("#c0392b", "untrained twin"),
          "control_task": ("#7f8c8d", "control task"), "lexical": ("#27ae60", "last-token embedding")}
_OTHER = "#8e44ad"
_CURVE_COLORS = ("#1f5fa8", "#c0392b", "#27ae60", "#8e44ad")


def to_png(fig: MplFigure, dpi: int = 90) -> bytes:
    """PNG bytes of a figure (tight bounding box, padded, no timestamp so reruns give equal files)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1, metadata={"Software": None})
    return buffer.getvalue()


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[MplFigure, Axes]:
    """The caller's axes (drawn into as they are) or a fresh constrained-layout figure with one axes."""
    if ax is not None:
        figure = ax.get_figure(root=True)
        if not isinstance(figure, MplFigure):
            raise InvalidInputError("ax= must be an Axes that belongs to a matplotlib Figure")
        return figure, ax
    fig = MplFigure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _legend_outside(ax: Axes) -> None:
    """Legend to the right of the axes: it never covers a curve or a bar."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def _results_frame(data: ResultsLike, needs: Sequence[str]) -> pd.DataFrame:
    """One row per test with numeric effect/CI columns and ``control`` "" for the real test."""
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
    else:
        items: list[Any] = list(data)
        if items and not all(isinstance(r, TestResult) for r in items):
            raise InvalidInputError("figures take a ResultSet, a sequence of TestResult or a pandas DataFrame")
        frame = ResultSet(items).to_frame(flat=False)
    missing = [c for c in needs if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"the frame lacks column(s) {missing}; pass ResultSet.to_frame() or a ResultSet")
    for column in ("effect_size", "ci_low", "ci_high", "layer"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if "control" in frame.columns:
        frame["control"] = frame["control"].astype("object").where(frame["control"].notna(), _MODEL)
    return frame


def _band(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """CI band of a curve; a missing bound collapses onto the estimate (never drawn as 0)."""
    effect = rows["effect_size"].to_numpy(dtype=float)
    low = rows["ci_low"].to_numpy(dtype=float)
    high = rows["ci_high"].to_numpy(dtype=float)
    return np.where(np.isfinite(low), low, effect), np.where(np.isfinite(high), high, effect)


def layer_curves(data: ResultsLike, *, title: str = "", ylabel: str | None = None,
                 ax: Axes | None = None) -> MplFigure:
    """Effect size per layer with its CI band, one line per control (model, twin, control task); stars mark
    tests significant after correction; a layer-less result (the lexical baseline) is a dashed level."""
    frame = _results_frame(data, ("layer", "control", "effect_size", "ci_low", "ci_high"))
    per_layer, flat = frame[frame["layer"].notna()], frame[frame["layer"].isna()]
    if per_layer.empty:
        raise NothingToDraw("no per-layer results (every 'layer' is empty): draw them with paired_bars")
    fig, ax = _new_axes(ax, (7.5, 3.6))
    for control, rows in per_layer.groupby("control", sort=False):
        rows = rows.sort_values("layer")
        color, label = _STYLE.get(str(control), (_OTHER, str(control)))
        xs = rows["layer"].to_numpy(dtype=float)
        ax.plot(xs, rows["effect_size"], marker="o", ms=3, color=color, label=label)
        low, high = _band(rows)
        ax.fill_between(xs, low, high, color=color, alpha=0.18, linewidth=0)
        if "significant" in rows.columns:
            hits = rows[rows["significant"].eq(True)]
            ax.plot(hits["layer"], hits["effect_size"], marker="*", ms=9, color=color, linestyle="none")
    for _, r in flat.iterrows():
        color, label = _STYLE.get(str(r["control"]), (_OTHER, str(r["control"])))
        ax.axhline(r["effect_size"], color=color, linestyle="--", linewidth=1, label=label)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    default_label = str(frame["effect_size_name"].iloc[0]) if "effect_size_name" in frame.columns else "effect"
    ax.set_ylabel(ylabel or default_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


def short_labels(stems: Sequence[str]) -> list[str]:
    """Test ids without the path parts every one of them shares (shown once, in the title, instead).

    Why: cutting long ids to a fixed width cut names mid-word at the front ("ion_vectors/..."); dropping the
    shared analysis/test/dataset parts keeps what tells the bars apart, whole."""
    parts = [s.split("/") for s in stems]
    if len(parts) < 2 or len({len(p) for p in parts}) != 1:
        return list(stems)
    keep = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    return ["/".join(p[i] for i in keep) for p in parts]


def paired_bars(data: ResultsLike, *, title: str = "", xlabel: str = "effect size (95% CI)", max_bars: int = 24,
                ax: Axes | None = None) -> MplFigure:
    """Effect with CI per test, the model beside its untrained twin (layer-less and geometry tests)."""
    frame = _results_frame(data, ("test_id", "control", "effect_size", "ci_low", "ci_high"))
    frame = frame[frame["control"].isin([_MODEL, UNTRAINED])].copy()
    frame["stem"] = frame["test_id"].astype(str).str.rsplit("/", n=1).str[0]
    stems = list(dict.fromkeys(frame.loc[frame["control"] == _MODEL, "stem"]))[:max_bars]
    if not stems:
        raise NothingToDraw("no test on the model (control None) to draw")
    labels = short_labels(stems)
    width = max(7.5, 5.0 + 0.055 * max(len(label) for label in labels))  # room for the labels beside the bars
    fig, ax = _new_axes(ax, (width, 0.32 * len(stems) + 1.4))
    position = {s: i for i, s in enumerate(stems)}
    for offset, control in ((-0.2, _MODEL), (0.2, UNTRAINED)):
        color, label = _STYLE[control]
        rows = frame[(frame["control"] == control) & frame["stem"].isin(position)
                     & np.isfinite(frame["effect_size"])].drop_duplicates("stem")
        if rows.empty:
            continue
        effect = rows["effect_size"].to_numpy(dtype=float)
        low, high = _band(rows)
        ax.barh([position[s] + offset for s in rows["stem"]], effect, height=0.38, color=color, label=label,
                xerr=[np.maximum(effect - low, 0.0), np.maximum(high - effect, 0.0)], error_kw={"lw": 0.8})
    ax.set_yticks(range(len(stems)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    _legend_outside(ax)
    return fig


DoseLike: TypeAlias = Any  # a SteeringResult, its dose_response() frame, or a mapping label -> either


def _dose_frames(data: DoseLike) -> dict[str, pd.DataFrame]:
    """``{legend label: dose_response() frame}`` from any accepted input."""
    if isinstance(data, Mapping):
        items = list(data.items())
    else:
        items = [("concept direction", data)]
    out = {}
    for label, item in items:
        frame = item.dose_response() if hasattr(item, "dose_response") else item
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(f"dose_response takes a SteeringResult or its dose_response() frame; "
                                    f"{label!r} is {type(item).__name__}")
        missing = [c for c in ("alpha", "concept", "concept_ci_low", "concept_ci_high") if c not in frame.columns]
        if missing:
            raise InvalidInputError(f"{label!r} lacks column(s) {missing}: pass SteeringResult.dose_response()")
        out[str(label)] = frame.sort_values("alpha")
    if not out:
        raise NothingToDraw("no dose-response curve to draw")
    return out


def dose_response(data: DoseLike, *, title: str = "", ax: Axes | None = None) -> MplFigure:
    """Mean target-score change vs strength for the concept direction (CI band), against the placebo band of
    random directions (their 2.5-97.5% quantiles, with the median dashed).

    ``data``: a ``SteeringResult``, its ``dose_response()`` frame, or ``{"model": ..., "untrained twin": ...}``
    for several curves on one axes (the key is the legend label).
    """
    frames = _dose_frames(data)
    fig, ax = _new_axes(ax, (7.0, 3.4))
    for color, (label, frame) in zip(_CURVE_COLORS * len(frames), frames.items(), strict=False):
        alphas = frame["alpha"].to_numpy(dtype=float)
        prefix = f"{label}: " if len(frames) > 1 else ""
        ax.plot(alphas, frame["concept"], marker="o", color=color, label=label)
        ax.fill_between(alphas, frame["concept_ci_low"], frame["concept_ci_high"], color=color, alpha=0.18,
                        linewidth=0)
        if {"random_low", "random_high"} <= set(frame.columns):
            ax.fill_between(alphas, frame["random_low"], frame["random_high"], facecolor="none", edgecolor=color,
                            hatch="///", alpha=0.5, linewidth=0, label=f"{prefix}random directions (95%)")
        if "random_median" in frame.columns:
            ax.plot(alphas, frame["random_median"], linestyle="--", color=color, alpha=0.7, linewidth=1)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(sorted({0.0, *(float(a) for f in frames.values() for a in f["alpha"])}))  # the grid, no crowding
    ax.set_xlabel("strength (multiple of the site's typical norm)")
    ax.set_ylabel("change in target log-odds")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig
