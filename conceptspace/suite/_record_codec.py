"""A finished analysis's output as two files (JSON and one ``.npz``), so a worker process can hand it to the runner.

Why not pickle: the project never unpickles anything (reading a pickle can run code), and a record is plain data.
Why not results.json's own form: that form is strict JSON for readers (NaN written as null, tuples as lists), while
the runner must get every value back exactly, NaN and tuple included, so that a run over several processes gives
the numbers of a run in one, bit for bit (``tests/unit/test_parallel_runner.py``). JSON writes a float as the
shortest text that reads back to the same double, so floats survive the text form; arrays go to the ``.npz``
(numeric dtypes only: ``np.load(..., allow_pickle=False)`` reads them back).

A value this codec cannot write (an object it does not know) raises :class:`UnencodableError`; the runner then
runs that analysis again in its own process rather than lose or approximate anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conceptspace.stats._results import ResultSet, TestKey, TestResult


class UnencodableError(TypeError):
    """A record holds a value the codec does not know (the runner re-runs the analysis in its own process)."""


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    """``value`` as JSON-ready data with every container tagged by its type; arrays appended to ``arrays``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise UnencodableError("an object array cannot be written without pickle")
        arrays.append(array)
        return {"__array__": len(arrays) - 1, "scalar": isinstance(value, np.generic)}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise UnencodableError("a mapping with non-string keys")
        return {"__dict__": {k: _encode(v, arrays) for k, v in value.items()}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return {"__list__": [_encode(v, arrays) for v in value]}
    if isinstance(value, pd.DataFrame):
        return {"__frame__": _encode_frame(value, arrays)}
    raise UnencodableError(f"a value of type {type(value).__name__}")


def _encode_frame(frame: pd.DataFrame, arrays: list[np.ndarray]) -> dict[str, Any]:
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        raise UnencodableError("a data frame with an index other than 0..n-1")
    if not all(isinstance(c, str) for c in frame.columns):
        raise UnencodableError("a data frame with non-string column names")
    columns = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.hasobject:  # strings and mixed values: a list, and pandas' own dtype name ("str", "object")
            columns.append([name, f"pandas:{frame[name].dtype}", _encode(values.tolist(), arrays)])
        else:
            columns.append([name, values.dtype.str, _encode(values, arrays)])
    return {"length": len(frame), "columns": columns}


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        array = arrays[f"arr_{value['__array__']}"]
        return array[()] if value["scalar"] else array
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__list__" in value:
        return [_decode(v, arrays) for v in value["__list__"]]
    if "__frame__" in value:
        spec = value["__frame__"]
        data = {}
        for name, dtype, column in spec["columns"]:
            decoded = _decode(column, arrays)
            data[name] = pd.Series(decoded, dtype=dtype.removeprefix("pandas:")) if dtype.startswith("pandas:") \
                else decoded
        return pd.DataFrame(data, index=pd.RangeIndex(spec["length"]))
    raise ValueError(f"unknown tag in a record file: {sorted(value)}")


def _result_fields(result: TestResult, arrays: list[np.ndarray]) -> dict[str, Any]:
    fields = {name: getattr(result, name) for name in result.__dataclass_fields__ if name != "key"}
    fields["extra"] = dict(result.extra)
    return {"key": result.key.to_dict(), "fields": _encode(fields, arrays)}


def write_record(folder: Path, stem: str, *, scalars: Mapping[str, Any], results: ResultSet,
                 replicates: Mapping[TestKey, np.ndarray], figure_data: Mapping[str, Any]) -> None:
    """Write one record as ``<stem>.npz`` then ``<stem>.json`` (by rename, last: its presence means complete).

    ``scalars``: plain JSON values (status, reason, timings). Raises :class:`UnencodableError` before writing
    anything when a value cannot be written."""
    arrays: list[np.ndarray] = []
    document = {
        "scalars": _encode(dict(scalars), arrays),
        "results": [_result_fields(r, arrays) for r in results],
        "replicates": [[key.to_dict(), _encode(np.asarray(value), arrays)] for key, value in replicates.items()],
        "figure_data": _encode(dict(figure_data), arrays),
    }
    text = json.dumps(document, allow_nan=True)
    np.savez(folder / f"{stem}.npz", *arrays)  # stored as arr_0, arr_1, ...
    partial = folder / f"{stem}.json.partial"
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, folder / f"{stem}.json")


def has_record(folder: Path, stem: str) -> bool:
    """Whether :func:`write_record` finished ``stem``."""
    return (folder / f"{stem}.json").is_file()


def read_record(folder: Path, stem: str) -> tuple[dict[str, Any], ResultSet, dict[TestKey, np.ndarray],
                                                   dict[str, Any]]:
    """Inverse of :func:`write_record`: (scalars, results, replicates, figure data)."""
    document = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    with np.load(folder / f"{stem}.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    results = ResultSet(
        TestResult(key=TestKey.from_dict(item["key"]), **_decode(item["fields"], arrays))
        for item in document["results"]
    )
    replicates = {TestKey.from_dict(key): _decode(value, arrays) for key, value in document["replicates"]}
    return _decode(document["scalars"], arrays), results, replicates, _decode(document["figure_data"], arrays)
