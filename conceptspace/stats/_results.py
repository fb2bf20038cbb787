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
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from conceptspace.errors import ConceptspaceError, InvalidInputError
from conceptspace.site_names import EMBED, site_layer
from conceptspace.stats._result_views import export_frame, flat_extra_columns, json_text, results_html, short_repr

Correction = Literal["holm", "fdr_bh"]
TRAINED = "trained"
UNTRAINED = "untrained"
#: the control whose weights keep their singular values but not their singular vectors (see ConceptModel)
SPECTRUM_MATCHED = "spectrum_matched"
_MODELS = (TRAINED, UNTRAINED, SPECTRUM_MATCHED)
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
class TestKey:
    """What a test is, as fields: the one way tests are named, matched and compared.

    Why fields and not a string: the theory matches a test with the same test on a control, the report matches
    a test with the twin's, and the runner scopes every test to its suite analysis. Cutting id strings apart did
    that in six places with six grammars; a key is built once by the analysis that ran the test and read
    by field everywhere else. ``id`` is only the readable rendering (unique within a run).

    ``test`` is the family of statistic (``probe``, ``clustering``, ``relation``, ``analogy``, ``steering``...);
    ``method`` what computed it (``RidgeProbe``, ``kmeans``, ``steering_vs_random``); ``site`` and ``position``
    where it read the model (``layer.12``/``last``; ``unembed`` for the output weights); ``detail`` anything
    else that tells tests of one analysis apart (a metric, a relation); ``control`` is None for the real test,
    else what it controls for; ``model`` is ``trained`` or ``untrained`` (the twin); ``analysis`` is the suite
    analysis that produced it ("" outside a suite run).
    """

    __test__ = False

    test: str
    dataset: str
    method: str
    site: str | None = None
    position: str | None = None
    detail: tuple[str, ...] = ()
    control: str | None = None
    model: str = TRAINED
    analysis: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", tuple(str(d) for d in self.detail))
        for name in ("test", "method"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InvalidInputError(f"TestKey.{name} must be a non-empty string; got {getattr(self, name)!r}")
        if not isinstance(self.dataset, str):
            raise InvalidInputError(f"TestKey.dataset must be a string (may be empty); got {self.dataset!r}")
        if self.model not in _MODELS:
            raise InvalidInputError(f"TestKey.model must be one of {_MODELS}; got {self.model!r}")
        # One convention for a control model (the twin, the spectrum-matched twin): its real test is the control
        # of the same name of the model's test.
        if self.control in (UNTRAINED, SPECTRUM_MATCHED):
            object.__setattr__(self, "model", self.control)
        elif self.model != TRAINED and self.control is None:
            object.__setattr__(self, "control", self.model)

    @property
    def id(self) -> str:
        """``analysis/test/dataset/site/position/method/detail.../control`` (``task`` for the real test), with
        ``@untrained`` appended when a control other than the twin itself ran on the twin."""
        parts = [self.analysis, self.test, self.dataset, self.site, self.position, self.method, *self.detail]
        tail = self.control or "task"
        if self.model != TRAINED and self.control != self.model:
            tail += f"@{self.model}"
        return "/".join([*(p for p in parts if p), tail])

    def counterpart(self, control: str) -> TestKey:
        """The same test on a control: the twin (``untrained``), the lexical baseline (static token embedding,
        so the ``embed`` site), or a control of the same inputs (``control_task``, ``shuffled``...)."""
        if control in (UNTRAINED, SPECTRUM_MATCHED):
            return dataclasses.replace(self, control=control, model=control)
        if control == "lexical":
            return dataclasses.replace(self, control="lexical", site=EMBED)
        return dataclasses.replace(self, control=control)

    def replace(self, **changes: Any) -> TestKey:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestKey:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InvalidInputError(f"unknown TestKey field(s): {sorted(unknown)}")
        values: dict[str, Any] = {k: (tuple(v) if k == "detail" else v) for k, v in data.items()}
        return cls(**values)


_KEY_FIELDS = tuple(f.name for f in dataclasses.fields(TestKey))


@dataclasses.dataclass(frozen=True)
class TestResult:
    """One statistical test: its :class:`TestKey`, the statistic, an effect size with CI, and p.

    ``dataset``, ``site``, ``layer``, ``position``, ``method``, ``control`` and ``test_id`` are read from the
    key (``layer`` is the block index of a ``layer.<i>`` site, else None). ``control`` is None for the real test,
    otherwise what it controls for: ``"control_task"``, ``"untrained"``, ``"lexical"``, ``"random_direction"``...
    ``p_adjusted``/``significant`` are None until :meth:`ResultSet.correct` fills them. ``extra`` holds
    JSON-like details (frozen on creation).
    """

    __test__ = False  # not a pytest test class despite the name

    key: TestKey
    claim: str | None
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
        if not isinstance(self.key, TestKey):
            raise InvalidInputError(f"TestResult.key must be a TestKey; got {type(self.key).__name__}")
        object.__setattr__(self, "extra", _freeze(self.extra))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        object.__setattr__(self, "n", int(self.n))
        if self.n_groups is not None:
            object.__setattr__(self, "n_groups", int(self.n_groups))
        if not (math.isnan(self.p_value) or 0.0 < self.p_value <= 1.0):
            raise InvalidInputError(f"{self.test_id}: p_value must be in (0, 1] or NaN; got {self.p_value}")

    # --- fields of the key, read as the result's own (what tables, filters and frames show)
    @property
    def test_id(self) -> str:
        return self.key.id

    @property
    def dataset(self) -> str:
        return self.key.dataset

    @property
    def site(self) -> str | None:
        return self.key.site

    @property
    def layer(self) -> int | None:
        return site_layer(self.key.site)

    @property
    def position(self) -> str | None:
        return self.key.position

    @property
    def method(self) -> str:
        return self.key.method

    @property
    def control(self) -> str | None:
        return self.key.control

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON-ready dict (NaN/inf become None); the key's fields also appear flat, for reading."""
        out: dict[str, Any] = {"test_id": self.test_id}
        for f in dataclasses.fields(self):
            out[f.name] = self.key.to_dict() if f.name == "key" else _thaw(getattr(self, f.name))
        out.update({name: getattr(self, name) for name in _DERIVED})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        """Inverse of :meth:`to_dict` (None in a required float field reads back as NaN; the flat copies of the
        key's fields are ignored: the key is the record)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k not in _DERIVED and k != "test_id"}
        unknown = set(kwargs) - names
        if unknown:
            raise InvalidInputError(f"unknown TestResult field(s): {sorted(unknown)}")
        if isinstance(kwargs.get("key"), Mapping):
            kwargs["key"] = TestKey.from_dict(kwargs["key"])
        for name in ("statistic", "effect_size", "ci_low", "ci_high", "p_value"):
            if kwargs.get(name) is None:
                kwargs[name] = math.nan
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TestResult:
        """A copy with some fields changed (the record itself never changes); key fields (``control``,
        ``analysis``, ``detail``...) may be given directly and change the key."""
        key_changes = {k: changes.pop(k) for k in list(changes) if k in _KEY_FIELDS}
        if key_changes:
            changes["key"] = changes.get("key", self.key).replace(**key_changes)
        return dataclasses.replace(self, **changes)


def is_sanity_check(result: TestResult) -> bool:
    """Identities of the architecture (e.g. last-layer dot product = logit): pipeline checks, never evidence."""
    return bool(result.extra.get("sanity_check")) or result.control == "identity"



_DERIVED = ("dataset", "site", "layer", "position", "method", "control")


_COLUMNS = ["test_id", *_DERIVED, *(f.name for f in dataclasses.fields(TestResult) if f.name != "key")]


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
        return short_repr(self._items)

    def _repr_html_(self) -> str:
        """A small escaped HTML table for notebooks (the first rows; ``to_frame`` has everything)."""
        return results_html(self._items)

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
        _warn_about_floors(self._items, alpha)
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

    def to_frame(self, flat: bool = True) -> pd.DataFrame:
        """One row per result, one column per field; ``extra`` stays as a dict column.

        With ``flat`` (the default) the numbers a reader compares across tests are also columns of their own,
        read from ``extra`` (NaN where a test has none): ``selectivity`` with ``selectivity_ci_low/high``,
        ``twin_score`` (the untrained twin's score), ``control_task_score``, ``lexical_score``, ``null_mean``,
        ``null_sd`` and ``null_q95``. Hiding them in a dict column made them unsortable and unplottable.
        """
        rows = [{**r.to_dict(), "extra": dict(r.extra)} for r in self._items]
        frame = pd.DataFrame(rows, columns=_COLUMNS)
        if flat:
            for column, values in flat_extra_columns(self._items).items():
                frame.insert(len(frame.columns) - 1, column, values)
        return frame

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV (``extra`` as JSON text, so the file stays one value per cell)."""
        out = Path(path)
        export_frame(self.to_frame()).to_csv(out, index=False)
        return out

    def to_parquet(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as Parquet (``extra`` as JSON text); needs pyarrow (``conceptspace[parquet]``)."""
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ConceptspaceError(
                "ResultSet.to_parquet needs pyarrow; install it with `pip install 'conceptspace[parquet]'` "
                "(or `pip install pyarrow`), or use to_csv"
            ) from exc
        out = Path(path)
        export_frame(self.to_frame()).to_parquet(out, index=False)
        return out

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
    def from_json(cls, source: str | Path) -> ResultSet:
        """Inverse of :meth:`to_json`; also reads a results.json file (or its text) like ``load_results``.

        ``source`` is JSON text or the path of a file holding it; which document it is (this class's own
        ``{"results": [...]}`` or a suite's results.json) is read from its content.
        """
        from conceptspace.stats._document_reader import is_results_document, results_from_document

        text, origin = json_text(source)
        data = json.loads(text)
        if is_results_document(data):
            return results_from_document(data, source=origin)
        if not isinstance(data, Mapping) or "results" not in data:
            raise InvalidInputError(f"{origin} is neither ResultSet.to_json output nor a results.json document")
        return cls.from_dict(data)

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


class PValueFloorWarning(UserWarning):
    """Some tests' smallest attainable p-value is too large for the correction they are put through."""


def attainable_floor(result: TestResult) -> float | None:
    """The smallest p-value a Monte Carlo test can report, ``1 / (B + 1)`` for ``B`` permutations or placebos
    (read from ``extra``), or None when the test does not say (an analytic test has no such floor)."""
    draws = result.extra.get("n_permutations") or result.extra.get("n_placebo")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        return None
    return 1.0 / (draws + 1)


def _warn_about_floors(results: Sequence[TestResult], alpha: float) -> None:
    """Say so when a test's floor sits above alpha / m: under Holm (and Benjamini-Hochberg) it can then be
    significant only if tests with smaller p-values are rejected first, and never if its floor exceeds alpha.
    A user who corrected 96 tests with 199 permutations each got nothing significant, and no word why."""
    m = len(results)
    floors = [(r, f) for r in results if (f := attainable_floor(r)) is not None and f > alpha / m]
    if not floors:
        return
    never = sum(f > alpha for _, f in floors)
    worst = max(f for _, f in floors)
    lost = f"; {never} can never pass" if never else ""
    warnings.warn(
        f"{len(floors)} of {m} tests cannot reach alpha/m = {alpha / m:.2g} on their own: their smallest attainable "
        f"p-value 1/(B+1) is up to {worst:.2g} (e.g. {floors[0][0].test_id}){lost}. Draw more permutations or "
        "placebos, or correct a smaller family of primary tests.",
        PValueFloorWarning, stacklevel=3,
    )


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4f}"
