"""C4: grouped-CV linear probe per layer, beside the control task, the untrained twin and the lexical baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.activations import extract
from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
    LayerCurveFigures,
    RunContext,
    block_indices,
    is_int,
    is_layers,
    is_number,
    is_str,
    last_token_ids,
    list_of,
    optional,
    param,
    register,
    subsample_rows,
    subset,
)
from conceptspace.analyses.probes import (
    LDAProbe,
    LogisticProbe,
    MassMeanProbe,
    RidgeProbe,
    RidgeRegressionProbe,
    control_task_labels,
    probe_with_controls,
)
from conceptspace.concepts import load_concepts
from conceptspace.models import embedding_rows

PROBES = ("ridge", "lda", "mass_mean", "logistic")
CONTROLS = ("control_task", "untrained", "lexical")


@dataclass(frozen=True)
class ProbeParams:
    dataset: str = param(check=is_str, type_name="string", doc="a bundled concept set")
    layers: Any = param("all", check=is_layers, type_name=LAYERS_TYPE)
    position: str = param("last", check=is_str, type_name="string")
    probe: str = param("ridge", check=lambda v: v in PROBES, type_name=f"one of {PROBES}")
    controls: list[str] = param(list(CONTROLS), check=lambda v: list_of(is_str)(v) and all(c in CONTROLS for c in v),
                                type_name=f"list drawn from {CONTROLS}")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")
    n_splits: int = param(5, check=is_int, type_name="integer")
    penalty: float = param(1.0, check=is_number, type_name="number", doc="ridge strength")


def make_probe(name: str, continuous: bool, penalty: float) -> Any:
    """The estimator a suite names (continuous targets always take the ridge regression probe)."""
    if continuous:
        return RidgeRegressionProbe(penalty=penalty)
    return {"ridge": lambda: RidgeProbe(penalty=penalty), "lda": LDAProbe, "mass_mean": MassMeanProbe,
            "logistic": LogisticProbe}[name]()


@register
class ProbeAnalysis(LayerCurveFigures, Analysis):
    kind = "probe"
    claims = ("C4",)
    Params = ProbeParams
    description = ("grouped-CV linear probe per layer with control task, untrained twin and last-token embedding "
                   "baseline")
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "truth_is_universal/animal_class_polarity",
        "layers": [0, -1],
        "max_items": 40,
        "n_splits": 3,
    }

    def run(self, context: RunContext, params: ProbeParams) -> AnalysisOutput:
        model, twin = context.model, context.twin
        full = load_concepts(params.dataset)
        cs = subset(full, subsample_rows(full, params.max_items, context.seed))
        continuous = cs.kind == "continuous"
        y = np.asarray(cs.column("value"), dtype=np.float64) if continuous else cs.labels
        groups = np.asarray(cs.groups)
        layers = block_indices(model, params.layers)
        sites = [f"layer.{i}" for i in layers]
        spans = cs.spans if params.position.startswith("span") else None
        X = extract(model, cs.texts, sites=sites, position=params.position, spans=spans, progress=context.progress)
        controls = set(params.controls)
        kwargs: dict[str, Any] = {}
        # Control-task types: the word for word sets; the source group for sentence sets (their last token is
        # nearly always ".", which would give every item the same random label).
        types = cs.words if cs.words is not None else cs.groups
        if "control_task" in controls:
            kwargs["control_y"] = control_task_labels(types, y, seed=context.seed)
        if "untrained" in controls and twin is not None:
            kwargs["X_untrained"] = extract(twin, cs.texts, sites=sites, position=params.position, spans=spans,
                                            progress=context.progress)
        if "lexical" in controls:
            kwargs["X_lexical"] = embedding_rows(model, last_token_ids(model, cs.texts))
        results = probe_with_controls(
            make_probe(params.probe, continuous, params.penalty), X, y, groups, dataset=cs.name, layers=sites,
            claim=context.claim, position=params.position, n_splits=params.n_splits,
            scoring="r2" if continuous else None, n_permutations=context.n_permutations,
            n_bootstrap=context.n_bootstrap, seed=context.seed, **kwargs,
        )
        return AnalysisOutput(results, {"n_items": len(cs)})
