"""Views of a :class:`~conceptspace.stats.ResultSet` for a person at the keyboard: flat columns, files, reprs.

Why a module of its own: these are renderings, not statistics; keeping them out of ``_results`` keeps the
record types short. Nothing here imports ``_results`` (it is imported by it), so the functions take the
results as a plain sequence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conceptspace.utils.html_table import html_table

if TYPE_CHECKING:
    from conceptspace.stats._results import TestResult

# column -> (extra key, index into a [low, high] pair or None for a scalar)
FLAT_EXTRA: dict[str, tuple[str, int | None]] = {
    "selectivity": ("selectivity", None),
    "selectivity_ci_low": ("selectivity_ci", 0),
    "selectivity_ci_high": ("selectivity_ci", 1),
    "twin_score": ("untrained_score", None),
    "control_task_score": ("control_task_score", None),
    "lexical_score": ("lexical_score", None),
    "null_mean": ("null_mean", None),
    "null_sd": ("null_sd", None),
    "null_q95": ("null_q95", None),
}
_REPR_ROWS = 5
_HTML_ROWS = 20


def _number(value: Any) -> float:
    """A float for a frame cell: NaN for a missing or non-numeric value (never a silent 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _extra_value(extra: Any, name: str, index: int | None) -> float:
    value = extra.get(name)
    if index is None:
        return _number(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > index:
        return _number(value[index])
    return math.nan


def _with_paired_selectivity(extra: Any) -> Any:
    """Selectivity (task minus control task, Hewitt & Liang) where a run gave it as the paired difference the
    verdict judges (``extra["paired"]["control_task"]``, primary tests) rather than as its own field."""
    paired = (extra.get("paired") or {}).get("control_task") if hasattr(extra, "get") else None
    if "selectivity" in extra or not paired or paired.get("difference") is None:
        return extra
    return {**dict(extra), "selectivity": paired["difference"],
            "selectivity_ci": [paired.get("ci_low"), paired.get("ci_high")]}


def flat_extra_columns(results: Sequence[TestResult]) -> dict[str, np.ndarray]:
    """The :data:`FLAT_EXTRA` columns, one float per result."""
    extras = [_with_paired_selectivity(r.extra) for r in results]
    return {column: np.array([_extra_value(extra, name, index) for extra in extras], dtype=np.float64)
            for column, (name, index) in FLAT_EXTRA.items()}


def export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a results frame whose ``extra`` column is JSON text (CSV and Parquet need flat cells)."""
    out = frame.copy()
    out["extra"] = [json.dumps(_plain(e), sort_keys=True, allow_nan=False) for e in out["extra"]]
    return out


def _plain(value: Any) -> Any:
    """JSON-ready copy (NaN/inf become None, like ``TestResult.to_dict``)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(source: str | Path) -> tuple[str, str]:
    """``(text, where it came from)`` for JSON given inline or as the path of a file."""
    if isinstance(source, Path):
        return source.read_text(encoding="utf-8"), str(source)
    stripped = source.lstrip()
    if stripped.startswith(("{", "[")):
        return source, "this JSON text"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source!r} is neither JSON text nor an existing file")
    return path.read_text(encoding="utf-8"), source


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "nan"
    return f"{x:.3g}"


def _row(r: TestResult) -> list[str]:
    p_adj = "" if r.p_adjusted is None else _fmt(r.p_adjusted)
    sig = "" if r.significant is None else ("*" if r.significant else "")
    return [r.test_id, r.effect_size_name, _fmt(r.effect_size), f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
            _fmt(r.p_value), p_adj, sig]


_HEADERS = ["test", "effect", "value", "CI", "p", "p_adj", "sig"]


def short_repr(results: Sequence[TestResult]) -> str:
    """A few lines: the count, the correction, and the first results (never the whole table)."""
    corrections = sorted({r.correction or "none" for r in results}) or ["none"]
    lines = [f"ResultSet({len(results)} results, correction={'/'.join(corrections)})"]
    for r in results[:_REPR_ROWS]:
        test, name, value, ci, p, p_adj, sig = _row(r)
        lines.append(f"  {test}: {name}={value} {ci} p={p}" + (f" p_adj={p_adj}{sig}" if p_adj else ""))
    if len(results) > _REPR_ROWS:
        lines.append(f"  ... {len(results) - _REPR_ROWS} more (.summary() or .to_frame() for all)")
    return "\n".join(lines)


def results_html(results: Sequence[TestResult]) -> str:
    """:func:`html_table` of the first results."""
    rows = [_row(r) for r in results[:_HTML_ROWS]]
    return html_table(_HEADERS, rows, f"ResultSet: {len(results)} results", more=len(results) - _HTML_ROWS)
