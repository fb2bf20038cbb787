"""P5: logit-lens rank correlation of proximity and log-probability across layers, frequency-controlled."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
    ControlModel,
    LayerCurveFigures,
    RunContext,
    block_indices,
    is_int,
    is_layers,
    is_str,
    list_of,
    mark_roles,
    optional,
    param,
    register,
    subsample_rows,
    subset,
)
from conceptspace.analyses.geometry._context_shuffle import shuffled_pairing
from conceptspace.analyses.geometry._logit_lens import (
    METHODS,
    PRIMARY_METHOD,
    ContextMatrices,
    ModelPasses,
    context_matrices,
    proximity_results,
)
from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.concepts import load_concepts
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.stats import ResultSet


@dataclass(frozen=True)
class ProximityParams:
    dataset: str = param(check=is_str, type_name="string")
    layers: Any = param("all", check=is_layers, type_name=LAYERS_TYPE)
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")
    methods: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")


@register
class ProximityAnalysis(LayerCurveFigures, Analysis):
    kind = "proximity"
    claims = ("P5",)
    Params = ProximityParams
    description = "logit-lens rank correlation of proximity and log-probability across layers, frequency-controlled"
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "truth_is_universal/animal_class",
        "layers": [0, -1],
        "max_items": 12,
    }

    def run(self, context: RunContext, params: ProximityParams) -> AnalysisOutput:
        """The model, each control model and (``--null``) shuffled contexts, on one shared null and resamples.

        The primary test is ``cosine_vs_logp`` at ``context.primary_site`` (default: the middle requested block
        before the last); the last block is a sanity check, never evidence; other blocks and the partial
        (frequency) metric are exploratory, with a max-T adjusted p.
        """
        full = load_concepts(params.dataset)
        cs = subset(full, subsample_rows(full, params.max_items, context.seed))
        chosen = block_indices(context.model, params.layers)
        primary_layer = primary_block(context.model, chosen, context.primary_site)
        layers = sorted({*chosen, primary_layer})
        pairing = None if context.null_seed is None else shuffled_pairing(len(cs), context.null_seed)

        def passes(model: ConceptModel) -> ContextMatrices:
            return context_matrices(model, cs.texts, layers=layers, pairing=pairing)

        groups = [ModelPasses(None, (context.seed,), (passes(context.model),))]
        by_name: dict[str, list[ControlModel]] = {}
        for control in context.control_models():
            by_name.setdefault(control.name, []).append(control)
        for name, members in by_name.items():
            groups.append(ModelPasses(name, tuple(c.seed for c in members), tuple(passes(c.model) for c in members)))
        methods = list(METHODS) if params.methods is None else [m for m in METHODS if m in params.methods]
        if not methods:
            raise InvalidInputError(f"proximity methods must be among {list(METHODS)}; got {params.methods}")
        primary_method = PRIMARY_METHOD if PRIMARY_METHOD in methods else methods[0]
        groups = [ModelPasses(g.control, g.seeds, tuple(_only(p, methods) for p in g.passes)) for g in groups]
        results, replicates = proximity_results(
            groups, dataset=cs.name, plan=context.sequential_plan(), n_bootstrap=context.n_bootstrap,
            seed=context.seed, primary=(f"layer.{primary_layer}", primary_method),
        )
        if context.null_seed is not None:
            results = ResultSet(r.replace(extra={**dict(r.extra), "null_battery": "contexts shuffled against their "
                                                 f"target distributions (seed {context.null_seed})"})
                                for r in results)
        primary = geometry_key("proximity", cs.name, f"layer.{primary_layer}", "last", primary_method)
        return AnalysisOutput(mark_roles(results, lambda r: r.key == primary), replicates=replicates)


def primary_block(model: ConceptModel, layers: list[int], primary_site: str | None) -> int:
    """The block of the primary test: ``primary_site`` when given, else the middle requested block before the
    last (the upper middle of an even count). The last block is never primary: there the cosine is the logit up
    to the token norm, so the test would certify the architecture, not the claim."""
    last = model.n_layers - 1
    if primary_site is not None:
        if not primary_site.startswith("layer."):
            raise InvalidInputError(f"P5's primary site must be a block ('layer.<i>'); got {primary_site!r}")
        block = int(primary_site.removeprefix("layer."))
        if block == last:
            raise InvalidInputError(f"P5's primary site cannot be the last block ({primary_site}): there proximity "
                                    "is the logit up to the token norm (a sanity check); choose an earlier block")
        return block
    candidates = sorted(i for i in layers if i != last)
    if not candidates:
        raise InvalidInputError(f"P5 needs a block before the last one (the last, layer.{last}, is only a sanity "
                                "check); add an intermediate layer to 'layers'")
    return candidates[len(candidates) // 2]


def _only(passes: ContextMatrices, methods: list[str]) -> ContextMatrices:
    """The pass restricted to the requested methods (the shared null then covers only those)."""
    keep = {k: v for k, v in passes.matrices.items() if k[1] in methods}
    return dataclasses.replace(passes, matrices=keep,
                               describe={k: v for k, v in passes.describe.items() if k in keep})
