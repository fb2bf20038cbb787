"""How geometry analyses name their results: test ids, the layer field, and the effect of a permutation null.

Why: every geometry analysis returns :class:`~conceptspace.stats.TestResult` objects so the report corrects
across probes, geometry and interventions together; the ids must be unique and readable in one family, and the
``layer`` field must mean the same thing as for probes (block index, None for layer-less sites such as the
static embedding or unembedding, whose name then sits in ``extra["site"]`` and in the id).
"""

from __future__ import annotations

import numpy as np

from conceptspace.models._sites import LAYER_PREFIX


def site_layer(site: str | None) -> int | None:
    """Block index of ``"layer.<i>"``; None for ``embed``, ``final_norm``, ``unembed`` or anything else."""
    if site is not None and site.startswith(LAYER_PREFIX):
        tail = site[len(LAYER_PREFIX) :]
        if tail.lstrip("-").isdigit():
            return int(tail)
    return None


def geometry_test_id(*parts: str | None, control: str | None = None) -> str:
    """``part/part/.../control`` with empty parts dropped; ``task`` stands for the real (uncontrolled) test."""
    return "/".join([*(p for p in parts if p), control or "task"])


def null_summary(null: np.ndarray) -> dict[str, float]:
    """Mean, SD and 95th percentile of a null distribution (what a reader needs to judge the observed value)."""
    null = np.asarray(null, dtype=np.float64)
    return {
        "null_mean": float(np.mean(null)),
        "null_sd": float(np.std(null, ddof=1)) if null.size > 1 else 0.0,
        "null_q95": float(np.quantile(null, 0.95)),
    }
