"""Input checks shared by probes, folds and statistics.

Every check raises :class:`~conceptspace.errors.InvalidInputError` with a message that says what to fix, so a
researcher who passes the wrong array learns it at the call, not three modules later from a LinAlgError.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from conceptspace.errors import InvalidInputError


def check_features(X: Any, *, ndim: int | tuple[int, ...] = 2, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite float64 array of the expected rank, or raise saying what is wrong."""
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a numeric array; could not convert it to float: {exc}") from exc
    if arr.ndim not in allowed:
        shapes = " or ".join({2: "(n, d)", 3: "(n_layers, n, d)"}.get(k, f"{k}-D") for k in allowed)
        raise InvalidInputError(f"{name} must have shape {shapes}; got shape {arr.shape}")
    if arr.size == 0 or 0 in arr.shape:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); pass at least two items with features")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InvalidInputError(
            f"{name} contains {bad} NaN or infinite value(s); drop or repair those items before probing"
        )
    return arr


def check_labels(y: Any, n: int, *, task: str, name: str = "y") -> np.ndarray:
    """Validate targets of length ``n``.

    ``task`` is ``"classification"`` (at least two classes; any hashable labels) or ``"regression"`` (finite
    floats, one or several outputs).
    """
    arr = np.asarray(y)
    if arr.shape[:1] != (n,):
        raise InvalidInputError(f"{name} has {arr.shape[0] if arr.ndim else 0} entries but X has {n} items")
    if n == 0:
        raise InvalidInputError(f"{name} is empty; pass at least two labelled items")
    if task == "classification":
        if arr.ndim != 1:
            raise InvalidInputError(f"class labels {name} must be 1-D; got shape {arr.shape}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InvalidInputError(f"{name} contains NaN or infinite labels; drop the unlabelled items")
        if arr.dtype.kind == "O" and any(v is None for v in arr):
            raise InvalidInputError(f"{name} contains None labels; drop the unlabelled items")
        if np.unique(arr).size < 2:
            raise InvalidInputError(
                f"{name} has a single class ({arr[0]!r}); a probe needs items from at least two classes"
            )
        return arr
    if task == "regression":
        try:
            out = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"continuous targets {name} must be numeric: {exc}") from exc
        if out.ndim not in (1, 2):
            raise InvalidInputError(f"continuous targets {name} must be (n,) or (n, k); got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise InvalidInputError(f"{name} contains NaN or infinite targets; drop those items")
        return out
    raise ValueError(f"unknown task {task!r}")


def check_groups(groups: Sequence[Hashable] | np.ndarray | None, n: int) -> np.ndarray:
    """Return integer group codes (0..G-1) for ``n`` items.

    ``None`` means every item is its own group: correct only when items share no entity, template or source
    sentence, which the caller is asserting by passing it.
    """
    if groups is None:
        return np.arange(n)
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInputError(f"groups must be a 1-D sequence with one id per item ({n}); got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidInputError("groups contains NaN; give every item a group id")
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InvalidInputError(f"group ids must be mutually comparable (all str or all int): {exc}") from exc
    return codes.astype(np.int64)


def infer_task(y: Any) -> str:
    """``"regression"`` for float targets, ``"classification"`` for anything else (ints, strings, bools)."""
    return "regression" if np.asarray(y).dtype.kind == "f" else "classification"
