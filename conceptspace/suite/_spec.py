"""Probe suites: parse and validate the declarative TOML experiment specs in ``probes/``.

Why a strict parser: a suite is the pre-registration of a run (which datasets, layers, controls, how many
permutations, which correction, which verdict thresholds). A misspelt key that is silently ignored would change
the experiment without anyone noticing, so every unknown key, wrong type, unknown dataset, analysis kind or claim
is an error that names the key and its line in the file (with a close-match suggestion where one exists).

Layout (see ``probes/README.md``)::

    [suite]          name, description, model, seed, twin_seed(s), spectrum_twin, alpha, correction,
                     n_permutations (the first batch of draws), max_permutations (the sequential cap), n_bootstrap
    [quick]          overrides of [suite] numbers for ``--quick`` (and max_items for every analysis)
    [claims.C4]      verdict thresholds of one claim (min_effect, margin, beat, must_fail)
    [[analysis]]     one analysis: id, claim, kind, primary (site of its one primary test), role, dataset(s) and
                     the kind's own parameters; ``quick = {...}``

``role`` (default ``"primary"``): ``"secondary"`` makes an analysis wholly secondary evidence for its claim. Its
main test is reported beside the claim's verdict with its own effect, interval, controls and *uncorrected* p, but
it is never in the multiple-testing family (it adds nothing to m_c and no threshold), never decides the verdict,
and a failure of it does not make the claim "not run". Why: a design added after its numbers were seen (or one
whose statistic is on another scale than the claim's ``min_effect``) can be shown without being chosen as evidence
after the fact. A secondary analysis takes no ``primary`` site (it has no primary test; its kind's
default test is the one shown), and its sequential Monte Carlo draws are settled against the suite's ``alpha``
alone, the level its uncorrected p is read at (a kind may fix them instead, e.g. erasure's ``n_placebos``).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from conceptspace.analyses import get_kind, param_default, param_fields, registry
from conceptspace.analyses._base import is_int, is_number, is_str, list_of
from conceptspace.concepts import list_concepts
from conceptspace.depth import is_layers, is_site_spec
from conceptspace.errors import ConceptspaceError
from conceptspace.resources import probes_dir
from conceptspace.theory._claims import CLAIMS, ClaimRule

CLAIM_IDS = tuple(CLAIMS)
CORRECTIONS = ("holm", "fdr_bh")
SECONDARY_ROLE = "secondary"
ANALYSIS_ROLES = ("primary", SECONDARY_ROLE)


class SuiteError(ConceptspaceError, ValueError):
    """A suite file that cannot be run as written; the message names the file, the key and its line."""


# ------------------------------------------------------------------------------------------- key locations
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Line number (1-based) of each table header and ``key =`` line, keyed by its path in the document.

    ``tomllib`` gives no positions, so a light scan of the text finds them: enough for error messages (keys
    of inline tables map to the line of the key that holds the inline table).
    """
    lines: dict[tuple[str | int, ...], int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    prefix: tuple[str | int, ...] = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            parts = tuple(p.strip().strip("\"'") for p in header.group(2).split("."))
            if header.group(1) == "[[":
                index = array_counts.get(parts, 0)
                array_counts[parts] = index + 1
                prefix = (*parts, index)
            else:
                prefix = parts
            lines.setdefault(prefix, number)
            continue
        key = _KEY.match(raw)
        if key:
            parts = tuple(p.strip().strip("\"'") for p in key.group(1).split("."))
            lines.setdefault((*prefix, *parts), number)
    return lines


class _Where:
    """Formats ``file:line: key`` for error messages."""

    def __init__(self, source: str, lines: dict[tuple[str | int, ...], int]) -> None:
        self.source = source
        self.lines = lines

    def __call__(self, path: tuple[str | int, ...]) -> str:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        label = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        return f"{self.source}:{line}: {label}" if line else f"{self.source}: {label}"

    def error(self, path: tuple[str | int, ...], message: str) -> SuiteError:
        return SuiteError(f"{self(path)}: {message}")


# ------------------------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class AnalysisSpec:
    """One analysis of a suite. ``params`` holds the kind's own parameters (validated, defaults filled)."""

    id: str
    claim: str
    kind: str
    params: Mapping[str, Any]
    quick: Mapping[str, Any] = field(default_factory=dict)
    #: the site of the analysis's one primary test (``layer@0.5``, ``unembed``...; None = the kind's default),
    #: declared before the run so that scanning layers or metrics cannot pick the evidence after the fact
    primary: str | None = None
    #: this analysis's cap on sequential Monte Carlo draws (None = the suite's): causal placebos cost forward
    #: passes each, so a battery may cap them lower than cheap permutations
    max_permutations: int | None = None
    #: "primary" (one primary test in its claim's family) or "secondary" (reported beside the verdict, never
    #: corrected or judged; see the module docstring)
    role: str = "primary"

    @property
    def secondary(self) -> bool:
        return self.role == SECONDARY_ROLE

    def resolved(self, quick: bool, quick_max_items: int | None) -> dict[str, Any]:
        """The parameters for this run: ``--quick`` overrides applied, ``max_items`` capped for quick runs."""
        params = dict(self.params)
        if quick:
            params.update(self.quick)
            if quick_max_items is not None and "max_items" in param_fields(get_kind(self.kind).Params):
                current = params.get("max_items")
                params["max_items"] = quick_max_items if current is None else min(int(current), quick_max_items)
        return params


@dataclass(frozen=True)
class Suite:
    """A validated suite: run settings, verdict rules per claim and the analyses in file order."""

    name: str
    description: str
    model: str
    seed: int
    twin_seed: int
    alpha: float
    correction: str
    n_permutations: int
    n_bootstrap: int
    claims: Mapping[str, ClaimRule]
    analyses: tuple[AnalysisSpec, ...]
    quick_settings: Mapping[str, Any]
    source: str = ""
    #: seeds of the untrained twins (the control is judged against every one); () = (twin_seed,)
    twin_seeds: tuple[int, ...] = ()
    #: cap of the sequential Monte Carlo draws per test (None = 20 x n_permutations)
    max_permutations: int | None = None
    #: run the spectrum-matched twin (singular values kept, singular vectors random) as a second control
    spectrum_twin: bool = True
    #: the command line's ``--layers`` ("all" or a list of block indices / fractions), None when not given
    layers: Any = None

    def for_run(self, *, quick: bool = False, seed: int | None = None, model: str | None = None,
                layers: Any = None) -> Suite:
        """A copy with the command line's choices applied (``--quick`` numbers, ``--seed``, ``--model``,
        ``--layers``: see :func:`override_layers`)."""
        changes: dict[str, Any] = {}
        if layers is not None:
            changes["layers"] = layers
            changes["analyses"] = tuple(override_layers(a, layers) for a in self.analyses)
        if quick:
            for key in ("n_permutations", "n_bootstrap", "alpha", "max_permutations", "spectrum_twin"):
                if key in self.quick_settings:
                    changes[key] = self.quick_settings[key]
            if "twin_seeds" in self.quick_settings:
                changes["twin_seeds"] = tuple(self.quick_settings["twin_seeds"])
        if seed is not None:
            changes["seed"] = seed
        if model is not None:
            changes["model"] = model
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the suite as run (for results.json)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "model": self.model,
            "seed": self.seed,
            "twin_seed": self.twin_seed,
            "twin_seeds": list(self.seeds_of_twins()),
            "spectrum_twin": self.spectrum_twin,
            "alpha": self.alpha,
            "correction": self.correction,
            "n_permutations": self.n_permutations,
            "n_bootstrap": self.n_bootstrap,
            "max_permutations": self.max_permutations,
            "layers": self.layers,
            "claims": {k: {"min_effect": r.min_effect, "margin": r.margin, "beat": list(r.beat),
                           "must_fail": list(r.must_fail)} for k, r in self.claims.items()},
            "analyses": [{"id": a.id, "claim": a.claim, "kind": a.kind, "primary": a.primary,
                          "max_permutations": a.max_permutations, "role": a.role, "params": dict(a.params)}
                         for a in self.analyses],
        }

    def seeds_of_twins(self) -> tuple[int, ...]:
        """The untrained twins' seeds: ``twin_seeds``, or the single ``twin_seed``."""
        return self.twin_seeds or (self.twin_seed,)


def single_layer(layers: Any) -> Any:
    """The one layer a single-layer kind (steering, erasure, derivatives) takes from a ``--layers`` list: the
    middle entry as written (the earlier of the two middle ones for an even count); 0.5 (mid-depth) for "all"."""
    if layers == "all":
        return 0.5
    return layers[(len(layers) - 1) // 2]


def override_layers(spec: AnalysisSpec, layers: Any) -> AnalysisSpec:
    """``spec`` with ``--layers`` in place of its own: ``layers`` for kinds that sweep layers, the middle value
    (:func:`single_layer`) for kinds that read one ``layer``; its ``--quick`` layer choice is dropped too, so
    the command line wins in quick runs. Kinds with neither (and ``sites`` lists) are left as written."""
    if not is_layers(layers):
        raise SuiteError(f"--layers must be 'all' or a list of block indices (int) and fractions of depth (float in "
                         f"[0, 1]); got {layers!r}")
    fields = param_fields(get_kind(spec.kind).Params)
    value = {"layers": layers, "layer": single_layer(layers)}
    names = [name for name in ("layers", "layer") if name in fields]
    if not names:
        return spec
    return replace(spec, params={**spec.params, **{n: value[n] for n in names}},
                   quick={k: v for k, v in spec.quick.items() if k not in names})


# --------------------------------------------------------------------------------------------- key schemas
@dataclass(frozen=True)
class Key:
    """One allowed key: its type check, a human name of the type, and its default (``...`` = required)."""

    check: Callable[[Any], bool]
    type_name: str
    default: Any = ...


def kind_keys(kind: str) -> dict[str, Key]:
    """The suite keys of an analysis kind, read from its parameter dataclass (the one home of its defaults)."""
    out = {}
    for name, f in param_fields(get_kind(kind).Params).items():
        spec = f.metadata["spec"]
        out[name] = Key(spec.check, spec.type_name, param_default(f))
    return out


_INT = (is_int, "integer")
_NUM = (is_number, "number")
_STR = (is_str, "string")

COMMON_KEYS: dict[str, Key] = {
    "id": Key(*_STR),
    "claim": Key(*_STR),
    "kind": Key(*_STR),
    "quick": Key(lambda v: isinstance(v, dict), "table"),
    "primary": Key(is_site_spec, "a site (unembed, embed, layer.<i>, layer@<fraction of depth>)", None),
    "max_permutations": Key(lambda v: v is None or (is_int(v) and v >= 1), "positive integer", None),
    "role": Key(lambda v: v in ANALYSIS_ROLES, f"one of {ANALYSIS_ROLES}", "primary"),
}

SUITE_KEYS: dict[str, Key] = {
    "name": Key(*_STR),
    "description": Key(*_STR, ""),
    "model": Key(*_STR, "smollm2-135m"),
    "seed": Key(*_INT, 0),
    "twin_seed": Key(*_INT, 0),
    "alpha": Key(lambda v: is_number(v) and 0 < v < 1, "number in (0, 1)", 0.05),
    "correction": Key(lambda v: v in CORRECTIONS, f"one of {CORRECTIONS}", "holm"),
    "n_permutations": Key(lambda v: is_int(v) and v >= 1, "positive integer", 999),
    "n_bootstrap": Key(lambda v: is_int(v) and v >= 1, "positive integer", 500),
    "max_permutations": Key(lambda v: v is None or (is_int(v) and v >= 1), "positive integer", None),
    "twin_seeds": Key(lambda v: list_of(is_int)(v) and len(v) >= 1 and len(set(v)) == len(v),
                      "non-empty list of distinct integers", None),
    "spectrum_twin": Key(lambda v: isinstance(v, bool), "true or false", True),
}
QUICK_KEYS: dict[str, Key] = {
    "n_permutations": SUITE_KEYS["n_permutations"],
    "n_bootstrap": SUITE_KEYS["n_bootstrap"],
    "alpha": SUITE_KEYS["alpha"],
    "max_permutations": SUITE_KEYS["max_permutations"],
    "twin_seeds": SUITE_KEYS["twin_seeds"],
    "spectrum_twin": SUITE_KEYS["spectrum_twin"],
    "max_items": Key(lambda v: is_int(v) and v >= 8, "integer >= 8", None),
}
CLAIM_KEYS: dict[str, Key] = {
    "min_effect": Key(*_NUM, ...),
    "margin": Key(*_NUM, 0.0),
    "beat": Key(list_of(is_str), "list of control names", ["untrained"]),
    "must_fail": Key(list_of(is_str), "list of control names", []),
}
TOP_KEYS = ("suite", "quick", "claims", "analysis")


# ------------------------------------------------------------------------------------------------ checking
def _unknown(where: _Where, path: tuple[str | int, ...], key: str, allowed: Sequence[str]) -> SuiteError:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(allowed))}"
    return where.error((*path, key), f"unknown key {key!r}{hint}")


def _check_table(
    where: _Where, path: tuple[str | int, ...], table: Any, keys: Mapping[str, Key], *, fill: bool = True
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise where.error(path, f"must be a table, got {type(table).__name__}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            raise _unknown(where, path, key, list(keys))
        spec = keys[key]
        if not spec.check(value):
            raise where.error((*path, key), f"must be {spec.type_name}, got {value!r} ({type(value).__name__})")
        out[key] = value
    if fill:
        for key, spec in keys.items():
            if key in out:
                continue
            if spec.default is ...:
                raise where.error(path, f"missing required key {key!r}")
            out[key] = spec.default
    return out


def _renamed(where: _Where, path: tuple[str | int, ...], table: dict[str, Any], renamed: Mapping[str, str]) -> (
    dict[str, Any]
):
    """Read an old key under its new name for one release, warning with the file and line to edit."""
    out = dict(table)
    for old, new in renamed.items():
        if old in out:
            if new in out:
                raise where.error((*path, old), f"{old!r} is the old name of {new!r}; give only {new!r}")
            warnings.warn(f"{where((*path, old))}: {old!r} is renamed {new!r}; the old name goes away in the next "
                          "release", DeprecationWarning, stacklevel=2)
            out[new] = out.pop(old)
    return out


def _dataset_names() -> set[str]:
    return {info.name for info in list_concepts()}


def _check_dataset(where: _Where, path: tuple[str | int, ...], name: str, known: set[str]) -> None:
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; `conceptspace datasets` lists them"
    raise where.error(path, f"unknown dataset {name!r}{hint}")


def _check_analysis(where: _Where, index: int, table: Any, known: set[str], claims: Mapping[str, ClaimRule]) -> (
    AnalysisSpec
):
    path: tuple[str | int, ...] = ("analysis", index)
    if not isinstance(table, dict):
        raise where.error(path, "each [[analysis]] must be a table")
    kinds = registry()
    kind_name = table.get("kind")
    if not isinstance(kind_name, str):
        raise where.error(path, f"missing or non-string key 'kind' (one of {', '.join(kinds)})")
    if kind_name not in kinds:
        close = difflib.get_close_matches(kind_name, list(kinds), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; kinds are {', '.join(kinds)}"
        raise where.error((*path, "kind"), f"unknown analysis kind {kind_name!r}{hint}")
    kind = kinds[kind_name]
    keys = kind_keys(kind_name)
    table = _renamed(where, path, table, kind.renamed_params)
    if isinstance(table.get("quick"), dict):
        table = {**table, "quick": _renamed(where, (*path, "quick"), table["quick"], kind.renamed_params)}
    allowed = {**COMMON_KEYS, **keys}
    checked = _check_table(where, path, {k: v for k, v in table.items() if k != "quick"},
                           {k: v for k, v in allowed.items() if k != "quick"})
    claim = checked.pop("claim")
    if claim not in CLAIM_IDS:
        raise where.error((*path, "claim"), f"unknown claim {claim!r}; claims are {', '.join(CLAIM_IDS)}")
    if claim not in kind.claims:
        raise where.error((*path, "claim"), f"a {kind_name!r} analysis tests {'/'.join(kind.claims)}, not {claim}")
    if claim not in claims:
        raise where.error((*path, "claim"), f"claim {claim} has no verdict rule: add a [claims.{claim}] table")
    quick = _check_table(where, (*path, "quick"), table.get("quick", {}), keys, fill=False)
    for name_key in ("dataset",):
        if name_key in checked:
            _check_dataset(where, (*path, name_key), checked[name_key], known)
    for i, name in enumerate(checked.get("datasets", [])):
        _check_dataset(where, (*path, "datasets"), name, known)
        del i
    primary = checked.pop("primary")
    cap = checked.pop("max_permutations")
    analysis_role = checked.pop("role")
    if analysis_role == SECONDARY_ROLE and primary is not None:
        raise where.error((*path, "primary"), "a secondary analysis has no primary test: drop 'primary' or drop "
                          "role = \"secondary\"")
    return AnalysisSpec(id=checked.pop("id"), claim=claim, kind=checked.pop("kind"), params=checked, quick=quick,
                        primary=primary, max_permutations=cap, role=analysis_role)


def _check_name(where: _Where, name: str) -> None:
    """Refuse a suite name that could act as a path: it names the default output folder ``reports/<name>-...``.

    Why here and not only in the CLI: a name like ``../../elsewhere/x`` is a mistake (or an attack) in the
    file itself, and the file's line is where to fix it; ``--out`` is the one way to choose a folder.
    """
    if not name.strip():
        raise where.error(("suite", "name"), "must not be empty")
    bad = next((c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise where.error(("suite", "name"), f"{name!r} holds {bad!r}; a name is a label, not a path (no '/', '\\' "
                          "or control characters); choose the output folder with --out")
    if ".." in name or name.startswith("."):
        raise where.error(("suite", "name"), f"{name!r} must not start with '.' or contain '..'; a name is a label, "
                          "not a path; choose the output folder with --out")


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Parse and validate suite TOML text; errors name ``source:line: key``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{source}: not valid TOML: {error}") from None
    where = _Where(source, _key_lines(text))
    for key in raw:
        if key not in TOP_KEYS:
            raise _unknown(where, (), key, TOP_KEYS)
    if "suite" not in raw:
        raise SuiteError(f"{source}: missing the [suite] table (name, model, seed, alpha, correction, ...)")
    settings = _check_table(where, ("suite",), raw["suite"], SUITE_KEYS)
    _check_name(where, settings["name"])
    quick = _check_table(where, ("quick",), raw.get("quick", {}), QUICK_KEYS, fill=False)
    claims_raw = raw.get("claims", {})
    if not isinstance(claims_raw, dict):
        raise where.error(("claims",), "must be a table of [claims.<ID>] tables")
    claims: dict[str, ClaimRule] = {}
    for claim_id, table in claims_raw.items():
        if claim_id not in CLAIM_IDS:
            raise _unknown(where, ("claims",), claim_id, CLAIM_IDS)
        rule = _check_table(where, ("claims", claim_id), table, CLAIM_KEYS)
        allowed_controls = ("untrained", "spectrum_matched", "lexical", "control_task", "frequency")
        for rule_key in ("beat", "must_fail"):
            for control in rule[rule_key]:
                if control not in allowed_controls:
                    raise where.error(("claims", claim_id, rule_key),
                                      f"unknown control {control!r}; use {allowed_controls}")
        claims[claim_id] = ClaimRule(float(rule["min_effect"]), float(rule["margin"]), tuple(rule["beat"]),
                                     tuple(rule["must_fail"]))
    analyses_raw = raw.get("analysis", [])
    if not isinstance(analyses_raw, list) or not analyses_raw:
        raise SuiteError(f"{source}: a suite needs at least one [[analysis]] table")
    known = _dataset_names()
    analyses = tuple(_check_analysis(where, i, t, known, claims) for i, t in enumerate(analyses_raw))
    ids = [a.id for a in analyses]
    for i, analysis_id in enumerate(ids):
        if ids.index(analysis_id) != i:
            raise where.error(("analysis", i, "id"), f"duplicate analysis id {analysis_id!r}")
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", analysis_id):
            raise where.error(("analysis", i, "id"), "ids may hold letters, digits, '_' and '-' only")
    return Suite(
        name=settings["name"],
        description=settings["description"],
        model=settings["model"],
        seed=settings["seed"],
        twin_seed=settings["twin_seed"],
        alpha=float(settings["alpha"]),
        correction=settings["correction"],
        n_permutations=settings["n_permutations"],
        n_bootstrap=settings["n_bootstrap"],
        claims=claims,
        analyses=analyses,
        quick_settings=quick,
        source=source,
        twin_seeds=tuple(settings["twin_seeds"] or ()),
        max_permutations=settings["max_permutations"],
        spectrum_twin=settings["spectrum_twin"],
    )


def load_suite(path: str | Path) -> Suite:
    """Read a suite file: a path, or the name of a bundled suite (``concept_space`` or ``truth.toml``)."""
    candidate = Path(path)
    if not candidate.exists():
        bundled = probes_dir() / (candidate.name if candidate.suffix == ".toml" else f"{candidate.name}.toml")
        if not bundled.exists():
            raise SuiteError(f"suite {path} does not exist (bundled suites live in {probes_dir()})")
        candidate = bundled
    return parse_suite(candidate.read_text(encoding="utf-8"), source=str(path))
