"""C4: grouped-CV linear probe per layer, beside the control task, the twins and the lexical baseline."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.activations import extract, tokenize
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
    list_of,
    mark_roles,
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
)
from conceptspace.analyses.probes._family import Arm, probe_family
from conceptspace.analyses.probes._nested import DEFAULT_PENALTIES, NestedRidgeProbe, NestedRidgeRegressionProbe
from conceptspace.concepts import ConceptSet, load_concepts, null_labels
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel, embedding_rows
from conceptspace.stats import ResultSet

PROBES = ("ridge", "lda", "mass_mean", "logistic")
#: "untrained" runs every architecture control of the run (the untrained twins and the spectrum-matched twin)
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
    penalty: float | str = param(1.0, check=lambda v: is_number(v) or v == "nested", type_name='number or "nested"',
                                 doc='ridge strength, or "nested": chosen from penalties by inner grouped CV in '
                                     "every outer training fold (and again in every permutation and replicate)")
    penalties: list[float] = param(list(DEFAULT_PENALTIES), check=list_of(is_number), type_name="list of numbers",
                                   doc='the grid penalty = "nested" chooses from')
    inner_splits: int = param(3, check=is_int, type_name="integer", doc='inner folds of penalty = "nested"')


def make_probe(name: str, continuous: bool, penalty: float | str, penalties: Sequence[float] = DEFAULT_PENALTIES,
               inner_splits: int = 3) -> Any:
    """The estimator a suite names (continuous targets always take the ridge regression probe); ``penalty =
    "nested"`` takes the nested-CV ridge probes (:mod:`conceptspace.analyses.probes._nested`)."""
    if penalty == "nested":
        if not continuous and name != "ridge":
            raise InvalidInputError(f'penalty = "nested" chooses a ridge penalty; probe {name!r} has none: use '
                                    'probe = "ridge" or a numeric penalty')
        nested = NestedRidgeRegressionProbe if continuous else NestedRidgeProbe
        return nested(penalties=list(penalties), inner_splits=inner_splits)
    if isinstance(penalty, str):
        raise InvalidInputError(f'penalty must be a number or "nested"; got {penalty!r}')
    if continuous:
        return RidgeRegressionProbe(penalty=penalty)
    return {"ridge": lambda: RidgeProbe(penalty=penalty), "lda": LDAProbe, "mass_mean": MassMeanProbe,
            "logistic": LogisticProbe}[name]()


@register
class ProbeAnalysis(LayerCurveFigures, Analysis):
    """C4: the primary test is the task score at ``context.primary_site`` (default: the middle requested layer);
    the other layers are exploratory (raw p and the max-T adjusted ``extra["p_maxt"]``); the control task, the
    untrained twins (one reported row, the mean over seeds) and the spectrum-matched twin are controls; the
    lexical baseline is a baseline. Every row shares folds, sequential null draws and bootstrap resamples
    (:func:`~conceptspace.analyses.probes._family.probe_family`)."""

    kind = "probe"
    claims = ("C4",)
    Params = ProbeParams
    description = ("grouped-CV linear probe per layer with control task, untrained and spectrum-matched twins and "
                   "a lexical (static embedding of the word's tokens) baseline")
    smoke_params: ClassVar[dict[str, Any]] = {
        "dataset": "truth_is_universal/animal_class_polarity",
        "layers": [0, -1],
        "max_items": 40,
        "n_splits": 3,
    }

    def run(self, context: RunContext, params: ProbeParams) -> AnalysisOutput:
        model = context.model
        full = load_concepts(params.dataset)
        cs = subset(full, subsample_rows(full, params.max_items, context.seed))
        if context.null_seed is not None:
            cs = null_labels(cs, context.null_seed)
        continuous = cs.kind == "continuous"
        y = np.asarray(cs.column("value"), dtype=np.float64) if continuous else np.asarray(cs.labels)
        groups = np.asarray(cs.groups)
        sites = [f"layer.{i}" for i in block_indices(model, params.layers)]
        primary = primary_site(sites, context.primary_site)
        if primary not in sites:
            sites = sorted([*sites, primary], key=lambda s: int(s.split(".")[1]))
        spans = cs.spans if params.position.startswith("span") else None

        def read(m: ConceptModel) -> np.ndarray:
            return extract(m, cs.texts, sites=sites, position=params.position, spans=spans,
                           progress=context.progress).stack(sites)

        X = read(model)
        controls = set(params.controls)
        arms = [Arm(None, X, y, tuple(sites))]
        if "control_task" in controls and not continuous:
            types, rule = control_types(model, cs)
            arms.append(Arm("control_task", X, control_task_labels(types, y, seed=context.seed), tuple(sites),
                            note={"control_types": rule, "n_control_types": int(np.unique(types).size)}))
        if "untrained" in controls:
            for control in context.control_models():
                arms.append(Arm(control.name, read(control.model), y,
                                tuple(sites), seed=control.seed))
        if "lexical" in controls:
            arms.append(Arm("lexical", lexical_features(model, cs)[None], y, ("embed",), baseline=True,
                            note={"lexical_features": "mean static embedding of the concept word's tokens"
                                  if cs.spans is not None else "mean static embedding of the text's tokens"}))
        probe = make_probe(params.probe, continuous, params.penalty, params.penalties, params.inner_splits)
        family = probe_family(
            probe, arms, groups, dataset=cs.name, primary=primary,
            plan=context.sequential_plan(), claim=context.claim, position=params.position, n_layers=model.n_layers,
            n_splits=params.n_splits, scoring="r2" if continuous else None, n_bootstrap=context.n_bootstrap,
            seed=context.seed, interval="refit", refit_sites=(primary,),
        )
        results = mark_roles(ResultSet(family.results), lambda r: r.site == primary)
        return AnalysisOutput(results, {"n_items": len(cs), "primary_site": primary},
                              replicates=family.replicates)


def primary_site(sites: list[str], declared: str | None) -> str:
    """The site of the primary test: the run's declared one, else the middle of the requested layers (the
    upper middle for an even count), fixed before any score is seen."""
    if declared is not None:
        if not declared.startswith("layer."):
            raise InvalidInputError(f"the probe's primary site must be a block (layer.<i>); got {declared!r}")
        return declared
    return sites[len(sites) // 2]


def control_types(model: ConceptModel, cs: ConceptSet) -> tuple[np.ndarray, str]:
    """Hewitt & Liang types that recur across the task's folds, and the rule that chose them.

    The folds are grouped by the set's groups (a word, or a source sentence), so types equal to the group
    never recur between training and test folds and the control task would sit at chance by construction.
    Word sets use the word's first token in context (sub-word pieces such as " un" or " over" are shared by
    many words, and a probe that can memorise an arbitrary label per first token shows lexical capacity);
    sentence sets use the last alphanumeric token of the text (the last content word, e.g. the class noun of
    "The salmon is a fish.", which recurs across sentences), not the final "." that every sentence shares.
    """
    tokens = tokenize(model, cs.texts, spans=cs.spans)
    if tokens.span_tokens is not None:
        return np.array([ids[first] for ids, (first, _) in zip(tokens.input_ids, tokens.span_tokens,
                                                                 strict=True)]), "first token of the word"
    special = set(model.tokenizer.all_special_ids)
    out = []
    for ids in tokens.input_ids:
        words = [t for t in ids if t not in special and any(c.isalnum() for c in model.tokenizer.decode([t]))]
        out.append(words[-1] if words else ids[-1])
    return np.array(out), "last alphanumeric token of the text"


def lexical_features(model: ConceptModel, cs: ConceptSet) -> np.ndarray:
    """(n, d) mean static embedding of each concept word's tokens (its span), or of every non-special token
    of the text for sentence sets: what the input embedding alone knows about the item, before any block."""
    tokens = tokenize(model, cs.texts, spans=cs.spans)
    special = set(model.tokenizer.all_special_ids)
    if tokens.span_tokens is not None:
        pieces = [ids[a:b] for ids, (a, b) in zip(tokens.input_ids, tokens.span_tokens, strict=True)]
    else:
        pieces = [[t for t in ids if t not in special] or ids for ids in tokens.input_ids]
    flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in pieces])
    unique, inverse = np.unique(flat, return_inverse=True)
    rows = np.asarray(embedding_rows(model, unique), dtype=np.float64)[inverse]
    bounds = np.cumsum([0, *(len(p) for p in pieces)])
    return np.stack([rows[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
