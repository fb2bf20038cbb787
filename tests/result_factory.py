"""Build TestResult objects for unit tests from a short name plus the fields a test cares about."""

from __future__ import annotations

from typing import Any

from conceptspace.stats import TestKey, TestResult

KEY_FIELDS = ("test", "dataset", "method", "site", "position", "control", "model", "analysis")


def make_result(name: str, **fields: Any) -> TestResult:
    """A result whose key carries ``name`` as its detail (so ``result.key.detail == (name,)``).

    Key fields (dataset, site, control, ...) and result fields (p_value, effect_size, extra, ...) may be given;
    the rest take plain defaults: a probe on ``cities`` at ``layer.3``.
    """
    key_values: dict[str, Any] = {"test": "probe", "dataset": "cities", "method": "RidgeProbe", "site": "layer.3",
                                  "position": "last"}
    key_values.update({k: fields.pop(k) for k in KEY_FIELDS if k in fields})
    values: dict[str, Any] = {
        "claim": "C4", "statistic_name": "balanced_accuracy", "statistic": 0.8,
        "effect_size_name": "balanced_accuracy_minus_chance", "effect_size": 0.3, "ci_low": 0.25, "ci_high": 0.35,
        "p_value": 0.5, "n": 100, "n_groups": 25,
    }
    values.update(fields)
    return TestResult(key=TestKey(detail=(name,), **key_values), **values)


def names(results: Any) -> list[str]:
    """The names given to :func:`make_result`, in order."""
    return [r.key.detail[0] for r in results]
