"""How geometry analyses name their results: test ids, the layer field, and the effect of a permutation null.

Why: every geometry analysis returns :class:`~conceptspace.stats.TestResult` objects so the report corrects
across probes, geometry and interventions together; the ids must be unique and readable in one family, and the
``layer`` field must mean the same thing as for probes (block index, None for layer-less sites such as the
static embedding or unembedding, whose name then sits in ``extra["site"]`` and in the id).
"""

from __future__ import annotations

import numpy as np

from conceptspace.stats._results import TRAINED, TestKey


def geometry_key(test: str, dataset: str, site: str | None, position: str | None, method: str, *detail: str,
                 control: str | None = None, model: str = TRAINED) -> TestKey:
    """The key of one geometry test (``control="untrained"`` marks the twin's; the key sets ``model`` from it)."""
    return TestKey(test=test, dataset=dataset, method=method, site=site, position=position, detail=detail,
                   control=control, model=model)


def null_summary(null: np.ndarray) -> dict[str, float]:
    """Mean, SD and 95th percentile of a null distribution (what a reader needs to judge the observed value)."""
    null = np.asarray(null, dtype=np.float64)
    return {
        "null_mean": float(np.mean(null)),
        "null_sd": float(np.std(null, ddof=1)) if null.size > 1 else 0.0,
        "null_q95": float(np.quantile(null, 0.95)),
    }
