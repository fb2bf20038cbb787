"""The shared result type: one immutable record per statistical test, and an immutable set of them.

Why one type for every analysis: probes, geometry, interventions and the report all end in "a statistic, an
effect size with a CI, a p-value", and multiple-comparison correction must run across *every* test of a run.
A single record type makes ``ResultSet.correct`` the one place where that happens, keeps the raw p-value next
to the adjusted one, and gives the report one schema to render.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from conceptspace.errors import InvalidInputError

Correction = Literal["holm", "fdr_bh"]
_FLOAT_FIELDS = ("statistic", "effect_size", "ci_low", "ci_high", "p_value", "p_adjusted", "alpha")


def _freeze(value: Any) -> Any:
    """Deep-immutable, JSON-compatible copy: mappings -> MappingProxyType, sequences -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return tuple(_freeze(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise InvalidInputError(
        f"extra values must be JSON-like (str, number, bool, None, list, dict); got {type(value).__name__}"
    )


def _thaw(value: Any) -> Any:
    """Plain dict/list copy of a frozen value, with non-finite floats as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclasses.dataclass(frozen=True)
class TestResult:
    """One statistical test: what was tested, on what, the statistic, an effect size with CI, and p.

    ``control`` is None for the real test, otherwise what it controls for: ``"control_task"``,
    ``"untrained"``, ``"lexical"``, ``"shuffled"``, ``"random_direction"``... ``p_adjusted``/``significant`` are
    None until :meth:`ResultSet.correct` fills them. ``extra`` holds JSON-like details (frozen on creation).
    """

    __test__ = False  # not a pytest test class despite the name

    test_id: str
    claim: str | None
    dataset: str
    layer: int | None
    position: str | None
    method: str
    control: str | None
    statistic_name: str
    statistic: float
    effect_size_name: str
    effect_size: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float | None = None
    significant: bool | None = None
    n: int = 0
    n_groups: int | None = None
    correction: str | None = None
    alpha: float | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", _freeze(self.extra))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        if self.layer is not None:
            object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "n", int(self.n))
        if self.n_groups is not None:
            object.__setattr__(self, "n_groups", int(self.n_groups))
        if not (math.isnan(self.p_value) or 0.0 < self.p_value <= 1.0):
            raise InvalidInputError(f"{self.test_id}: p_value must be in (0, 1] or NaN; got {self.p_value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON-ready dict (NaN/inf become None)."""
        return {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        """Inverse of :meth:`to_dict` (None in a required float field reads back as NaN)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InvalidInputError(f"unknown TestResult field(s): {sorted(unknown)}")
        kwargs = dict(data)
        for name in ("statistic", "effect_size", "ci_low", "ci_high", "p_value"):
            if kwargs.get(name) is None:
                kwargs[name] = math.nan
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TestResult:
        """A copy with some fields changed (the record itself never changes)."""
        return dataclasses.replace(self, **changes)


_COLUMNS = [f.name for f in dataclasses.fields(TestResult)]


class ResultSet(Sequence[TestResult]):
    """An immutable, ordered collection of :class:`TestResult` with correction and rendering."""

    __slots__ = ("_items",)

    def __init__(self, results: Iterable[TestResult] = ()) -> None:
        items = tuple(results)
        for r in items:
            if not isinstance(r, TestResult):
                raise InvalidInputError(f"ResultSet holds TestResult objects; got {type(r).__name__}")
        ids = [r.test_id for r in items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InvalidInputError(f"duplicate test_id(s) in one ResultSet: {dupes[:5]}; make ids unique")
        self._items = items

    @overload
    def __getitem__(self, index: int) -> TestResult: ...
    @overload
    def __getitem__(self, index: slice) -> ResultSet: ...
    def __getitem__(self, index: int | slice) -> TestResult | ResultSet:
        if isinstance(index, slice):
            return ResultSet(self._items[index])
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[TestResult]:
        return iter(self._items)

    def __add__(self, other: object) -> ResultSet:
        if not isinstance(other, ResultSet):
            return NotImplemented
        return ResultSet(self._items + other._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultSet) and self._items == other._items

    def __hash__(self) -> int:
        return hash(tuple(r.test_id for r in self._items))

    def __repr__(self) -> str:
        return f"ResultSet({len(self)} results)"

    def correct(self, method: Correction = "holm", alpha: float = 0.05) -> ResultSet:
        """Adjust p-values across *every* result in the set (Holm or Benjamini-Hochberg).

        The raw ``p_value`` is kept; ``p_adjusted``, ``significant``, ``correction`` and ``alpha`` are set.
        A NaN p-value is an error: silently dropping a test would shrink the family and inflate discoveries.
        """
        if method not in ("holm", "fdr_bh"):
            raise InvalidInputError(f"correction method must be 'holm' or 'fdr_bh'; got {method!r}")
        if not 0.0 < alpha < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1); got {alpha}")
        if not self._items:
            return self
        p = np.array([r.p_value for r in self._items], dtype=np.float64)
        bad = [r.test_id for r, v in zip(self._items, p, strict=True) if math.isnan(v)]
        if bad:
            raise InvalidInputError(
                f"{len(bad)} result(s) have a NaN p-value ({bad[:5]}); fix or remove them before correcting, "
                "every test run must stay in the family"
            )
        reject, p_adj, _, _ = multipletests(p, alpha=alpha, method=method)
        return ResultSet(
            r.replace(p_adjusted=float(pa), significant=bool(rej), correction=method, alpha=alpha)
            for r, pa, rej in zip(self._items, p_adj, reject, strict=True)
        )

    def filter(self, **field_equals: Any) -> ResultSet:
        """Results whose fields equal every given value, e.g. ``filter(dataset="cities", control=None)``."""
        unknown = set(field_equals) - set(_COLUMNS)
        if unknown:
            raise InvalidInputError(f"unknown field(s) {sorted(unknown)}; fields are {_COLUMNS}")
        return ResultSet(r for r in self._items if all(getattr(r, k) == v for k, v in field_equals.items()))

    def to_frame(self) -> pd.DataFrame:
        """One row per result, one column per field (``extra`` as a dict column)."""
        rows = [{**r.to_dict(), "extra": dict(r.extra)} for r in self._items]
        frame = pd.DataFrame(rows, columns=_COLUMNS)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """``{"results": [...]}`` of strict-JSON-ready dicts."""
        return {"results": [r.to_dict() for r in self._items]}

    def to_json(self, **json_kwargs: Any) -> str:
        """Strict JSON (no NaN tokens) of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), allow_nan=False, **json_kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultSet:
        """Inverse of :meth:`to_dict`."""
        return cls(TestResult.from_dict(d) for d in data["results"])

    @classmethod
    def from_json(cls, text: str) -> ResultSet:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def summary(self, title: str = "Test results") -> str:
        """A statsmodels-style fixed-width table: one line per test, raw and adjusted p side by side."""
        headers = ["test", "layer", "control", "statistic", "effect", "ci_low", "ci_high", "p", "p_adj", "sig"]
        rows = []
        for r in self._items:
            rows.append(
                [
                    r.test_id,
                    "" if r.layer is None else str(r.layer),
                    r.control or "-",
                    _num(r.statistic),
                    _num(r.effect_size),
                    _num(r.ci_low),
                    _num(r.ci_high),
                    _num(r.p_value),
                    "" if r.p_adjusted is None else _num(r.p_adjusted),
                    "" if r.significant is None else ("*" if r.significant else ""),
                ]
            )
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
        total = sum(widths) + 2 * (len(widths) - 1)

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest])

        corrections = {r.correction for r in self._items}
        stats = sorted({f"{r.statistic_name} / {r.effect_size_name}" for r in self._items})
        out = [title.center(total), "=" * total]
        out.append(f"Tests: {len(self)}    Correction: {', '.join(sorted(c or 'none' for c in corrections)) or 'none'}")
        out.append("Statistic / effect: " + ("; ".join(stats) if stats else "-"))
        out.append("=" * total)
        out.append(line(headers))
        out.append("-" * total)
        out.extend(line(row) for row in rows)
        out.append("=" * total)
        out.append("p: permutation or test p-value before correction; p_adj: after correction; * significant.")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.summary()


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4f}"
