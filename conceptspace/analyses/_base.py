"""What an analysis kind is: its name, the claims it serves, one frozen parameter class, ``run`` and its figures.

Why one class per kind, found in a registry: before, a kind lived in four places (a schema in the suite, a
``run_X`` in the runner, an id grammar in the theory, an ``if kind in (...)`` in the report). Now a kind is one
module in ``conceptspace/analyses/kinds/``; the suite validates a ``[[analysis]]`` table against the kind's
parameter dataclass (the single home of every default and type), the runner calls ``run``, and the report
asks the kind for its figures. Nothing outside the module names the kind.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from conceptspace.activations import extract
from conceptspace.analyses._figures import Figure, NothingToDraw, layer_curves, paired_bars, to_png
from conceptspace.analyses.probes import MassMeanProbe
from conceptspace.concepts import ConceptSet, load_concepts
from conceptspace.depth import is_layer as is_layer  # re-exported for the kinds; the rule's home is depth
from conceptspace.depth import is_layers as is_layers
from conceptspace.depth import is_site_spec, resolve_layers
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.stats import ResultSet, SequentialPlan, TestKey, TestResult


# ------------------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ParamSpec:
    """How a suite may set one parameter: a type check and its human name (the default lives on the field)."""

    check: Callable[[Any], bool]
    type_name: str
    doc: str = ""


def param(default: Any = dataclasses.MISSING, *, check: Callable[[Any], bool], type_name: str, doc: str = "") -> Any:
    """A parameter field: its default, and what the suite accepts for it (``default`` omitted = required)."""
    metadata = {"spec": ParamSpec(check, type_name, doc)}
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: list(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


#: suite type names of the depth-relative layer parameters (the rule: :mod:`conceptspace.depth`)
LAYER_TYPE = "block index (int, negative from the end) or fraction of depth (float in [0, 1])"
LAYERS_TYPE = "'all' or a list of block indices (int) and fractions of depth (float in [0, 1])"
SITES_TYPE = "list of sites (embed, unembed, final_norm, layer.<i>, layer@<fraction of depth>)"


def is_sites(v: Any) -> bool:
    """A list of site names; ``layer@<f>`` names a block by its fraction of depth."""
    return isinstance(v, list) and all(is_site_spec(x) for x in v)


def param_fields(params_class: type) -> dict[str, dataclasses.Field[Any]]:
    """The suite-settable fields of a parameter class, in declaration order."""
    return {f.name: f for f in dataclasses.fields(params_class) if "spec" in f.metadata}


def param_default(f: dataclasses.Field[Any]) -> Any:
    """A field's default (``...`` when the parameter is required)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


# ---------------------------------------------------------------------------------------------- running
#: the roles a test can play in a run (``extra["role"]``); only "primary" tests enter the correction and verdicts
ROLES = ("primary", "exploratory", "control", "baseline", "sanity")


@dataclass(frozen=True)
class ControlModel:
    """A model a control test runs on: the untrained twin of one seed, or the spectrum-matched twin."""

    name: str  # "untrained" or "spectrum_matched": the TestKey control (and model) of its tests
    seed: int
    model: ConceptModel


@dataclass(frozen=True)
class RunContext:
    """What every analysis of a run shares: the model, its controls, and the run's numbers.

    ``twins``: untrained twins of several seeds (``twin`` is the first, kept for code that needs one);
    ``spectrum_twin``: every weight matrix with its singular values kept and its singular vectors randomised (a
    control that is not a near-identity network). ``primary_site``: the pre-declared site of the analysis's one
    primary test (a site name, None = the kind's default). ``thresholds``: the raw-p decision thresholds the
    run's correction will use for that test (sequential p-values draw until these are settled).
    ``null_seed``: set in a ``--null`` run; the kind then replaces its signal by its null (labels permuted...).
    """

    model: ConceptModel
    twin: ConceptModel | None
    claim: str
    seed: int = 0
    n_permutations: int = 999
    n_bootstrap: int = 500
    progress: bool = False
    twins: tuple[ConceptModel, ...] = ()
    twin_seeds: tuple[int, ...] = ()
    spectrum_twin: ConceptModel | None = None
    primary_site: str | None = None
    thresholds: tuple[float, ...] = (0.05,)
    max_permutations: int | None = None
    null_seed: int | None = None

    def __post_init__(self) -> None:
        if not self.twins and self.twin is not None:
            object.__setattr__(self, "twins", (self.twin,))
        if len(self.twin_seeds) != len(self.twins):
            object.__setattr__(self, "twin_seeds", tuple(range(len(self.twins))))

    def sequential_plan(self, start: int | None = None) -> SequentialPlan:
        """The plan of this analysis's Monte Carlo draws: ``n_permutations`` first, up to ``max_permutations``
        (default 20x the start), until the primary test's decision against ``thresholds`` is settled."""
        first = start if start is not None else self.n_permutations
        maximum = self.max_permutations if self.max_permutations is not None else 20 * first
        return SequentialPlan(start=first, maximum=max(first, maximum), thresholds=self.thresholds)

    def control_models(self) -> list[ControlModel]:
        """Every control model of the run: the untrained twins (one per seed), then the spectrum-matched twin."""
        out = [ControlModel("untrained", s, m) for s, m in zip(self.twin_seeds, self.twins, strict=True)]
        if self.spectrum_twin is not None:
            out.append(ControlModel("spectrum_matched", 0, self.spectrum_twin))
        return out


@dataclass
class AnalysisOutput:
    """The tests an analysis produced, data its figures need beyond the tests (e.g. dose-response), and the
    bootstrap replicates of effects drawn on shared resamples (``TestKey`` -> (B,) or (seeds, B)), from which the
    runner forms the paired differences "test minus control" that the verdict judges."""

    results: ResultSet
    figure_data: dict[str, Any] = field(default_factory=dict)
    replicates: dict[TestKey, np.ndarray] = field(default_factory=dict)


def mark_roles(results: ResultSet, is_primary_test: Callable[[TestResult], bool]) -> ResultSet:
    """Set ``extra["role"]`` on every result that has none: the one test ``is_primary_test`` picks among the
    trained, control-free tests is "primary", the others "exploratory"; controls are "control" (or "baseline"
    where ``extra["baseline"]``), identities "sanity". More than one primary is an error of the kind."""
    out = []
    for r in results:
        if "role" in r.extra:
            out.append(r)
            continue
        if r.extra.get("sanity_check") or r.control == "identity":
            role = "sanity"
        elif r.control is not None:
            role = "baseline" if r.extra.get("baseline") else "control"
        else:
            role = "primary" if is_primary_test(r) else "exploratory"
        out.append(r.replace(extra={**dict(r.extra), "role": role}))
    primaries = [r.test_id for r in out if r.extra.get("role") == "primary"]
    if len(primaries) > 1:
        raise InvalidInputError(f"an analysis has exactly one primary test; got {len(primaries)}: {primaries[:4]}")
    return ResultSet(out)


class Analysis(ABC):
    """Base class of an analysis kind. Subclasses set the class attributes and implement :meth:`run`.

    ``kind`` is the name a suite uses; ``claims`` the claims it can serve; ``Params`` a frozen dataclass whose
    fields (declared with :func:`param`) are the kind's parameters; ``description`` one line for listings;
    ``smoke_params`` a few-seconds configuration on a tiny model, run by the contract test.
    """

    kind: ClassVar[str]
    claims: ClassVar[tuple[str, ...]]
    Params: ClassVar[type]
    description: ClassVar[str]
    #: parameters for a seconds-long run on a tiny random model (the registry's contract test runs every kind so)
    smoke_params: ClassVar[dict[str, Any]]
    #: old suite key -> new one: still read for one release, with a DeprecationWarning naming the new key
    renamed_params: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def run(self, context: RunContext, params: Any) -> AnalysisOutput:
        """Run the analysis on ``context.model`` (and ``context.twin`` where it has one); return keyed tests."""

    def figures(self, name: str, title: str, results: Sequence[TestResult],
                figure_data: Mapping[str, Any]) -> list[Figure]:
        """The kind's pictures of one analysis (``name``: its id, for file names; ``title``: for the plots).

        Default: the effect with its CI per test, the model beside its untrained twin."""
        try:
            png = to_png(paired_bars(results, title=title, xlabel="effect size (95% CI)"))
        except NothingToDraw:
            return []
        return [Figure(f"{_slug(name)}.png", f"{name}: effect with 95% CI, model beside its untrained twin", png)]

    def make_params(self, values: Mapping[str, Any]) -> Any:
        """The parameter object from validated suite values (unknown names are the suite's error to report)."""
        return self.Params(**values)


class LayerCurveFigures:
    """Mixin for kinds measured across layers: one effect-per-layer curve per method, controls overlaid."""

    def figures(self, name: str, title: str, results: Sequence[TestResult],
                figure_data: Mapping[str, Any]) -> list[Figure]:
        out = []
        by_method: dict[str, list[TestResult]] = {}
        for r in results:
            by_method.setdefault(r.method, []).append(r)
        for method, group in by_method.items():
            try:
                png = to_png(layer_curves(group, title=f"{title}: {method} ({group[0].dataset})"))
            except NothingToDraw:
                continue
            out.append(Figure(f"{_slug(name)}-{_slug(method)}.png",
                                  f"{name}, {method}: effect per layer with 95% CI band; untrained twin and controls "
                                  "overlaid; stars: significant after correction", png))
        return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


# --------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Analysis] = {}


def register(cls: type[Analysis]) -> type[Analysis]:
    """Class decorator: make a kind known under ``cls.kind`` (a second class with the same kind is an error)."""
    for attribute in ("kind", "claims", "Params", "description", "smoke_params"):
        if not hasattr(cls, attribute):
            raise TypeError(f"{cls.__name__} must define {attribute!r} to be an analysis kind")
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a frozen dataclass")
    existing = _REGISTRY.get(cls.kind)
    if existing is not None and type(existing) is not cls:
        raise TypeError(f"analysis kind {cls.kind!r} is defined twice ({type(existing).__name__}, {cls.__name__})")
    _REGISTRY[cls.kind] = cls()
    return cls


def registry() -> dict[str, Analysis]:
    """Every analysis kind, by name: each module of ``conceptspace.analyses.kinds`` registers its own."""
    package = importlib.import_module("conceptspace.analyses.kinds")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def get_kind(kind: str) -> Analysis:
    kinds = registry()
    if kind not in kinds:
        raise InvalidInputError(f"unknown analysis kind {kind!r}; kinds are {', '.join(kinds)}")
    return kinds[kind]


# ------------------------------------------------------------------------------------------ shared steps
def subsample_rows(concept_set: ConceptSet, max_items: int | None, seed: int) -> np.ndarray:
    """Seeded subset of whole groups, up to ``max_items`` rows (groups are never split: folds respect them)."""
    n = len(concept_set)
    if max_items is None or n <= max_items:
        return np.arange(n)
    groups = np.asarray(concept_set.groups)
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for g in rng.permutation(unique):
        members = np.flatnonzero(groups == g).tolist()
        if len(chosen) + len(members) > max_items and chosen:
            continue
        chosen.extend(members)
        if len(chosen) >= max_items:
            break
    return np.array(sorted(chosen), dtype=np.int64)


def subset(concept_set: ConceptSet, rows: np.ndarray) -> ConceptSet:
    """The concept set restricted to ``rows`` (itself when every row is kept)."""
    if rows.size == len(concept_set):
        return concept_set
    return concept_set.replace(data=concept_set.data.select(rows.tolist()))


def block_indices(model: ConceptModel, layers: Any) -> list[int]:
    """Block indices of a suite's layers on this model: ints are indices (negative from the end), floats in
    [0, 1] fractions of depth (:mod:`conceptspace.depth`), ``"all"`` every block; each block once."""
    return resolve_layers(layers, model.n_layers, model=model.name)


def last_token_ids(model: ConceptModel, texts: list[str]) -> np.ndarray:
    """The id of each text's last token (as the model tokenizes it): the lexical baseline and control types."""
    encoded = model.tokenizer(texts, add_special_tokens=True)["input_ids"]
    return np.array([ids[-1] for ids in encoded], dtype=np.int64)


# ------------------------------------------------------------------------------------- the causal kinds
@dataclass(frozen=True)
class ConceptPromptParams:
    """What every causal kind needs: a binary concept set whose direction is edited at one layer, the prompts
    the edit is measured on, and the target words whose next-token scores it should move. Kinds extend it."""

    dataset: str = param(check=is_str, type_name="string", doc="a binary concept set (its mass-mean direction)")
    layer: int | float = param(check=is_layer, type_name=LAYER_TYPE)
    positive: list[str] = param(check=list_of(is_str), type_name="list of strings")
    negative: list[str] = param(check=list_of(is_str), type_name="list of strings")
    prompts: list[str] = param(check=list_of(is_str), type_name="list of strings")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer")


#: a seconds-long causal run on the tiny random models (single-character targets: their tokenizer splits words)
CAUSAL_SMOKE_PARAMS: dict[str, Any] = {
    "dataset": "vader_lexicon/polarity",
    "layer": 1,
    "max_items": 24,
    "positive": ["a", "e"],
    "negative": ["o", "u"],
    "prompts": ["The movie was", "Today I feel", "The food is", "My day was"],
    "n_random": 4,
}


@dataclass(frozen=True)
class ConceptAtLayer:
    """A binary concept set read at one layer of the model or its twin: what a causal kind edits along."""

    model: ConceptModel
    label: str  # "model" or "untrained twin"
    concept_set: ConceptSet
    site: str
    X: np.ndarray  # (n, d) float64

    def mass_mean_direction(self) -> np.ndarray:
        """The class-mean difference direction (class 0 -> class 1), the concept direction the kinds test."""
        return MassMeanProbe().fit(self.X, self.concept_set.labels).direction_


def concept_at_layer(context: RunContext, params: ConceptPromptParams) -> list[ConceptAtLayer]:
    """The concept set (seeded subset of whole groups), read at ``params.layer`` on the model and on its twin,
    at the words' spans (the last token for sentence sets); one extraction each, through the cache."""
    full = load_concepts(params.dataset)
    cs = subset(full, subsample_rows(full, params.max_items, context.seed))
    site = f"layer.{block_indices(context.model, [params.layer])[0]}"
    position = "span:mean" if cs.spans is not None else "last"
    out = []
    for model, label in ((context.model, "model"), (context.twin, "untrained twin")):
        if model is None:
            continue
        X = np.asarray(extract(model, cs.texts, sites=[site], position=position, spans=cs.spans,
                               progress=context.progress)[site], dtype=np.float64)
        out.append(ConceptAtLayer(model, label, cs, site, X))
    return out
