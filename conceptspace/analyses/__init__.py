"""Analyses: every kind of test the toolkit runs on a model, each one class in a registry.

Why a registry: a suite, the runner and the report must not know the kinds by name. Each kind (one module in
``conceptspace/analyses/kinds/``) declares its name, the claims it can serve, a frozen parameter dataclass that
is the single home of its defaults and types, ``run(context, params)``, and its figures; everything else looks
it up here. The statistics the kinds use live in :mod:`conceptspace.stats` (below this layer); the building
blocks are in ``probes/``, ``geometry/``, ``causal/`` and ``aggregation``.
"""

from __future__ import annotations

from conceptspace.analyses._base import (
    ROLES,
    Analysis,
    AnalysisOutput,
    ControlModel,
    LayerCurveFigures,
    RunContext,
    get_kind,
    mark_roles,
    param,
    param_default,
    param_fields,
    register,
    registry,
)
from conceptspace.analyses._figures import Figure

__all__ = [
    "ROLES",
    "Analysis",
    "AnalysisOutput",
    "ControlModel",
    "Figure",
    "LayerCurveFigures",
    "RunContext",
    "get_kind",
    "mark_roles",
    "param",
    "param_default",
    "param_fields",
    "register",
    "registry",
]
