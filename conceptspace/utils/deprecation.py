"""Keyword arguments renamed for one vocabulary keep working for one release, with a DeprecationWarning.

Why: the toolkit settled on one name per idea (``n_bootstrap`` for resamples, ``dataset`` for what a test ran
on, ``strengths`` for steering multiples, ``penalty`` for a ridge strength, ``alpha`` only for significance);
scripts written against 0.1 must not break silently, and must be told the new name.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["renamed_keywords"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**old_to_new: str) -> Callable[[F], F]:
    """Decorator: accept each old keyword as its new name, warn once per call, refuse both given together."""

    def decorate(function: F) -> F:
        parameters = inspect.signature(function).parameters
        for new in old_to_new.values():
            if new not in parameters:
                raise TypeError(f"{function.__qualname__} has no parameter {new!r} to rename to")

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{function.__qualname__}() got both {old!r} (old name) and {new!r}")
                    warnings.warn(f"{function.__qualname__}(): {old!r} is renamed {new!r}; the old name goes away in "
                                  "the next release", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
