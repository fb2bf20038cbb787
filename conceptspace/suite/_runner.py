"""Run a probe suite: model and untrained twin, every analysis, one corrected family, verdicts, timings.

Why one runner: the statistical promise of a report ("p-values corrected across every test in the run") can
only be kept where the whole run is visible. Each analysis returns :class:`~conceptspace.stats.TestResult`
rows; the runner prefixes their ids with the analysis id (unique in a run), corrects them all together (sanity
checks stay outside the family: they test the pipeline, not the theory) and hands them to the verdict rules of
:mod:`conceptspace.theory._verdicts`, whose thresholds were fixed in the suite before anything ran.

An analysis that cannot run (a module not importable yet, an error) is recorded with its reason and its claim is
reported as "not run"; nothing is ever filled in.
"""

from __future__ import annotations

import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

from conceptspace import __version__
from conceptspace.analyses import RunContext, registry
from conceptspace.depth import site_depth
from conceptspace.errors import NotApplicableError
from conceptspace.models import ConceptModel, RemoteMode, load_model
from conceptspace.stats._results import PValueFloorWarning, ResultSet, attainable_floor
from conceptspace.suite._spec import AnalysisSpec, Suite
from conceptspace.theory._verdicts import Verdict, is_sanity_check, judge_all

#: status of an analysis the model cannot take (next-token tests on an encoder): reported, not a failure
NOT_APPLICABLE = "not applicable"


@dataclass
class AnalysisRecord:
    """What happened to one analysis: status (ok / failed / not run / not applicable), reason, timing, tests,
    figure data."""

    spec: AnalysisSpec
    params: dict[str, Any]
    status: str = "pending"
    reason: str = ""
    seconds: float = 0.0
    downloaded_bytes: int = 0
    results: ResultSet = field(default_factory=ResultSet)
    figure_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """Everything a report needs."""

    suite: Suite
    quick: bool
    model: dict[str, Any]
    twin: dict[str, Any] | None
    records: list[AnalysisRecord]
    results: ResultSet
    verdicts: list[Verdict]
    timings: dict[str, Any]
    caveats: list[str]


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- the run
def _tag(results: ResultSet, spec: AnalysisSpec, n_layers: int | None = None) -> ResultSet:
    """Scope every key to the suite analysis that ran it, set the claim and record the kind in ``extra``, and,
    given the model's ``n_layers``, the relative depth of every test (``extra["depth"]``,
    :func:`conceptspace.depth.site_depth`: null off the blocks) where the analysis did not set it."""
    def depth(site: str | None) -> dict[str, float | None]:
        return {} if n_layers is None else {"depth": site_depth(site, n_layers)}

    return ResultSet(
        r.replace(analysis=spec.id, claim=spec.claim, extra={**depth(r.site), **dict(r.extra), "kind": spec.kind})
        for r in results
    )


def correct_family(results: ResultSet, method: str, alpha: float) -> ResultSet:
    """Correct every test of the run together; sanity checks are kept, flagged, and left out of the family."""
    family = ResultSet(r for r in results if not is_sanity_check(r))
    with warnings.catch_warnings():  # the run reports the same fact as a caveat per analysis (see _caveats)
        warnings.simplefilter("ignore", PValueFloorWarning)
        corrected = {r.test_id: r for r in family.correct(method, alpha)}  # type: ignore[arg-type]
    return ResultSet(corrected.get(r.test_id, r) for r in results)


def _caveats(outcome_records: list[AnalysisRecord], results: ResultSet) -> list[str]:
    notes = []
    for r in results:
        if is_sanity_check(r):
            notes.append(f"{r.test_id}: an identity of the architecture (statistic {r.statistic:.4f}); a sanity "
                         "check of the pipeline, excluded from the corrected family and from every verdict.")
    family = [r for r in results if not is_sanity_check(r)]
    if family:
        alpha = family[0].alpha or 0.05
        floor_needed = alpha / len(family)
        flagged: set[str] = set()
        for r in family:
            floor = attainable_floor(r)
            analysis = r.key.analysis
            if floor is not None and floor > floor_needed and analysis not in flagged:
                flagged.add(analysis)
                draws = round(1 / floor) - 1
                notes.append(f"{analysis}: its smallest attainable p-value is 1/({draws}+1) = {floor:.2g}, "
                             f"above alpha/m = {floor_needed:.2g} for the {len(family)} tests of this run, so none "
                             "of its tests can be significant after correction (more permutations or placebos "
                             "would be needed); its verdict cannot be 'supported' in this run.")
    seen: set[str] = set()
    for r in results:
        tok = r.extra.get("tokenization")
        key = r.key.analysis
        if tok and key not in seen:
            seen.add(key)
            notes.append(f"{key} ({r.dataset}): tokenization {dict(tok)}; multi-token words are read through "
                         "their span (mean of pieces), never dropped.")
    return notes


def run_suite(
    suite: Suite,
    *,
    quick: bool = False,
    device: str | None = None,
    remote: RemoteMode = False,
    twin: str = "config",
    progress: bool = True,
    debug: bool = False,
) -> RunOutcome:
    """Execute every analysis of ``suite`` (already adjusted with :meth:`Suite.for_run`) and judge the claims.

    ``remote=True`` runs the model's traces on NDIF (a Hub id; ``"local"`` is the in-process dry run): only
    the activation slices and weight rows an analysis needs are downloaded, whole matrices once (see
    docs/REMOTE.md). ``twin`` chooses the untrained control: ``"config"`` re-initialises the model's own
    architecture here (it needs only the config, so this works for a remote model that fits this machine's
    memory), ``"none"`` runs without it (claims whose rule beats the twin cannot then be supported), and any
    other value names a model whose untrained version stands in (a smaller model of the same family).
    An analysis that fails is recorded with its reason (one line in the progress log); ``debug=True`` also
    prints its traceback.
    """
    t0 = time.perf_counter()
    _log(f"conceptspace run: suite {suite.name} on {suite.model} (seed {suite.seed}{', quick' if quick else ''})",
         progress)
    model = load_model(suite.model, device=device, remote=remote)
    twin_model = build_twin(model, twin, suite.twin_seed, device)
    t_model = time.perf_counter() - t0
    quick_items = suite.quick_settings.get("max_items") if quick else None
    records = [AnalysisRecord(spec, spec.resolved(quick, quick_items)) for spec in suite.analyses]
    kinds = registry()
    for number, record in enumerate(records, start=1):
        spec = record.spec
        _log(f"[{number}/{len(records)}] {spec.claim} {spec.id}: {spec.kind}", progress)
        start = time.perf_counter()
        bytes_before = model.downloaded_bytes
        try:
            kind = kinds[spec.kind]
            context = RunContext(model=model, twin=twin_model, claim=spec.claim, seed=suite.seed,
                                 n_permutations=suite.n_permutations, n_bootstrap=suite.n_bootstrap,
                                 progress=progress)
            output = kind.run(context, kind.make_params(record.params))
            record.results = _tag(output.results, spec, model.n_layers)
            record.figure_data = output.figure_data
            record.status = "ok" if len(record.results) else "failed"
            if not len(record.results):
                record.reason = "the analysis returned no tests"
        except NotApplicableError as error:  # the model cannot take this test (an encoder has no LM head)
            record.status, record.reason = NOT_APPLICABLE, str(error)
        except ImportError as error:
            record.status, record.reason = "not run", f"analysis module not available: {error}"
        except Exception as error:
            record.status, record.reason = "failed", f"{type(error).__name__}: {error}"
            if debug:
                traceback.print_exc(file=sys.stderr)
        record.seconds = time.perf_counter() - start
        record.downloaded_bytes = model.downloaded_bytes - bytes_before
        _log(f"    {record.status} in {record.seconds:.1f}s ({len(record.results)} tests) {record.reason}", progress)
    everything = ResultSet()
    for record in records:
        everything = everything + record.results
    corrected = correct_family(everything, suite.correction, suite.alpha)
    not_run: dict[str, str] = {}
    for record in records:
        if record.status != "ok":
            not_run.setdefault(record.spec.claim, f"{record.spec.id}: {record.reason}")
    for claim in suite.claims:
        if not any(r.spec.claim == claim for r in records):
            not_run.setdefault(claim, "the suite has no analysis for this claim")
    verdicts = judge_all(corrected, suite.claims, alpha=suite.alpha, correction=suite.correction, not_run=not_run)
    total = time.perf_counter() - t0
    timings: dict[str, Any] = {"total_s": round(total, 2), "load_model_s": round(t_model, 2),
                               "analyses_s": {r.spec.id: round(r.seconds, 2) for r in records}}
    if model.remote:  # on NDIF the download is the cost: per analysis, before compression
        timings["download_mb"] = {r.spec.id: round(r.downloaded_bytes / 2**20, 3) for r in records}
        timings["download_mb_total"] = round(model.downloaded_bytes / 2**20, 3)
    _log(f"done in {total:.1f}s", progress)
    model_record = {**model.describe(), "package": f"conceptspace {__version__}"}
    return RunOutcome(
        suite=suite, quick=quick, model=model_record, twin=_twin_record(twin_model, twin),
        records=records, results=corrected, verdicts=verdicts, timings=timings,
        caveats=_twin_caveats(twin_model, twin, model) + _caveats(records, corrected),
    )


def build_twin(model: ConceptModel, choice: str, seed: int, device: str | None = None) -> ConceptModel | None:
    """The untrained control for ``model``: ``"config"`` (its own architecture), ``"none"``, or a model name."""
    if choice == "none":
        return None
    if choice == "config":
        return model.untrained(seed, device=device)
    return load_model(choice, untrained=True, seed=seed, device=device)


def _twin_record(twin: ConceptModel | None, choice: str) -> dict[str, Any] | None:
    if twin is None:
        return None
    return {**twin.describe(), "twin_source": "config" if choice == "config" else choice}


def _twin_caveats(twin: ConceptModel | None, choice: str, model: ConceptModel) -> list[str]:
    if twin is None:
        return ["No untrained twin in this run (--twin none): every claim whose rule must beat the untrained twin "
                "lacks that counterpart, so it cannot be 'supported' here."]
    if choice != "config":
        return [f"The untrained control is an untrained {twin.name} ({twin.n_layers} layers, d={twin.d_model}), not "
                f"a re-initialised {model.name} ({model.n_layers} layers, d={model.d_model}): it controls for the "
                "architecture family and the data, not for this model's exact shape."]
    return []
