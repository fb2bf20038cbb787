"""Run a probe suite: model and its controls, every analysis, one family of primary tests, verdicts, timings.

Why one runner: the statistical promise of a report (a family-wise error rate over the claims) can only be kept
where the whole run is visible. Before anything runs, the runner knows the family's shape (which claims, how many
primary tests each: one per analysis) and so the raw-p thresholds each primary test will face; the analyses draw
Monte Carlo nulls until their decision against those thresholds is settled. Each analysis returns keyed
:class:`~conceptspace.stats.TestResult` rows with a role (primary, exploratory, control, baseline, sanity) and
bootstrap replicates on shared resamples; the runner scopes keys to the analysis, corrects the primary tests
(:mod:`conceptspace.theory._family`: Bonferroni within a claim, Holm across claims), attaches paired differences
with the controls, and hands everything to the verdict rules of :mod:`conceptspace.theory._verdicts`, whose
thresholds were fixed in the suite before anything ran. An analysis the suite declares ``role = "secondary"`` is
outside all of this: its main test becomes ``secondary`` (reported with its raw p and paired controls), it adds
nothing to the family's shape, its draws settle against alpha alone, and its failure leaves its claim judged.

An analysis that cannot run (a module not importable yet, an error) is recorded with its reason and its claim is
reported as "not run"; nothing is ever filled in.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptspace import __version__
from conceptspace.activations import forward_counts, memo_counts, superset_extraction
from conceptspace.activations._counters import ForwardCounts, counts_summary
from conceptspace.activations._host_memory import release_free_heap
from conceptspace.analyses import RunContext, mark_roles, registry
from conceptspace.depth import depth_site, site_depth
from conceptspace.errors import NotApplicableError
from conceptspace.models import BUNDLED_MODELS, ConceptModel, RemoteMode, load_model
from conceptspace.models._lazy_control import ControlSlot, lazy_spectrum_matched, lazy_untrained
from conceptspace.paths import activation_cache_dir
from conceptspace.stats._results import PValueFloorWarning, ResultSet, TestKey
from conceptspace.suite._record_codec import UnencodableError, read_record, write_record
from conceptspace.suite._spec import AnalysisSpec, Suite
from conceptspace.suite._workers import run_forked, usable_jobs
from conceptspace.theory._family import (
    ClaimTest,
    analyses_per_claim,
    as_secondary,
    attach_paired,
    correct_by_claim,
    decision_thresholds,
    role,
)
from conceptspace.theory._verdicts import Verdict, is_sanity_check, judge_all
from conceptspace.utils.threads import one_thread

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
    memo: dict[str, Any] = field(default_factory=dict)  # forward-memo hits and misses (results.json timings)
    results: ResultSet = field(default_factory=ResultSet)
    figure_data: dict[str, Any] = field(default_factory=dict)
    replicates: dict[TestKey, np.ndarray] = field(default_factory=dict)
    primary_site: str | None = None


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
    family: dict[str, ClaimTest] = field(default_factory=dict)
    null_seed: int | None = None
    controls: list[dict[str, Any]] = field(default_factory=list)


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
    """Correct the run's primary tests (:func:`conceptspace.theory.correct_by_claim`); every other test keeps
    its raw p, unadjusted, and sanity checks never enter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PValueFloorWarning)
        corrected, _ = correct_by_claim(results, method, alpha)
    return corrected


def assign_roles(results: ResultSet, primary_site: str | None) -> ResultSet:
    """Roles for tests a kind left without one: the first trained, control-free test at ``primary_site`` (or the
    first such test when no site is declared) is primary, the rest exploratory (:func:`mark_roles`)."""
    if all("role" in r.extra for r in results):
        return results
    candidates = [r for r in results if r.control is None and not is_sanity_check(r) and "role" not in r.extra
                  and (primary_site is None or r.site == primary_site)]
    chosen = candidates[0].test_id if candidates else None
    if any(r.extra.get("role") == "primary" for r in results):
        chosen = None
    return mark_roles(results, lambda r: r.test_id == chosen)


def _caveats(records: list[AnalysisRecord], results: ResultSet) -> list[str]:
    notes = []
    for r in results:
        if is_sanity_check(r):
            notes.append(f"{r.test_id}: an identity of the architecture (statistic {r.statistic:.4f}); a sanity "
                         "check of the pipeline, excluded from the corrected family and from every verdict.")
    for record in records:
        if record.status != "ok" or record.spec.secondary:  # a secondary analysis has no primary test by design
            continue
        primaries = [r for r in record.results if role(r) == "primary"]
        if not primaries:
            where = f" at the declared primary site {record.primary_site}" if record.primary_site else ""
            notes.append(f"{record.spec.id}: no primary test{where}; the analysis is reported as exploratory and "
                         "gives no evidence to its claim's verdict.")
        for r in primaries:
            if r.extra.get("ci_calibration"):
                notes.append(f"{r.test_id}: {r.extra['ci_calibration']}.")
            if r.extra.get("settled") is False:
                level = 100 * float(r.extra.get("mc_confidence", 0.99))
                low, high = float(r.extra.get("p_mc_low", 0.0)), float(r.extra.get("p_mc_high", 1.0))
                notes.append(f"{r.test_id}: the Monte Carlo draws reached their cap ({r.extra.get('n_permutations')}) "
                             f"with the p-value's {level:g}% interval [{low:.2g}, {high:.2g}] still straddling a "
                             "decision threshold: its decision hinges on Monte Carlo error.")
    seen: set[str] = set()
    for r in results:
        tok = r.extra.get("tokenization")
        key = r.key.analysis
        if tok and key not in seen:
            seen.add(key)
            notes.append(f"{key} ({r.dataset}): tokenization {dict(tok)}; multi-token words are read through "
                         "their span (mean of pieces), never dropped.")
    return notes


@superset_extraction()  # one forward fills every site of a pooled request; later requests read the cache
def run_suite(
    suite: Suite,
    *,
    quick: bool = False,
    device: str | None = None,
    remote: RemoteMode = False,
    twin: str = "config",
    progress: bool = True,
    debug: bool = False,
    null_seed: int | None = None,
    jobs: int = 1,
) -> RunOutcome:
    """Execute every analysis of ``suite`` (already adjusted with :meth:`Suite.for_run`) and judge the claims.

    ``remote=True`` runs the model's traces on NDIF (a Hub id; ``"local"`` is the in-process dry run): only
    the activation slices and weight rows an analysis needs are downloaded, whole matrices once (see
    docs/REMOTE.md). ``twin`` chooses the untrained control: ``"config"`` re-initialises the model's own
    architecture here for each of the suite's twin seeds, plus the spectrum-matched twin (it needs only the
    config and the weights, so this works for a remote model that fits this machine's memory), ``"none"`` runs
    without them (claims whose rule beats the twin cannot then be supported), and any other value names a model
    whose untrained version stands in (a smaller model of the same family).
    ``null_seed``: the null battery (``--null``): every analysis replaces its signal by its null (labels
    permuted within groups, pairs re-paired, directions from permuted labels), so a claim that comes out
    "supported" is a false positive of the whole pipeline.
    An analysis that fails is recorded with its reason (one line in the progress log); ``debug=True`` also
    prints its traceback.
    ``jobs``: worker processes for the analyses (0 = one per usable CPU; 1 = this process alone). Each worker
    computes on one thread (more would hang a forked process: :mod:`conceptspace.utils.threads`), and each
    analysis draws from its own seeded streams, so every number equals a one-process run on one thread
    (``OMP_NUM_THREADS=1``); against a one-process run on more threads, forwards no cache holds differ in their
    last float bits (a matmul's partial sums are added in another order). Only the wall time and the memory
    change: each worker builds the controls its analyses need, so up to ``jobs`` controls are held at once. A
    remote model or a GPU always runs in this process.
    """
    t0, forwards = time.perf_counter(), forward_counts()
    null_note = f", NULL battery seed {null_seed}" if null_seed is not None else ""
    _log(f"conceptspace run: suite {suite.name} on {suite.model} (seed {suite.seed}{', quick' if quick else ''}"
         f"{null_note})", progress)
    model = load_model(suite.model, device=device, remote=remote)
    slot = ControlSlot(after_release=release_free_heap)  # at most one control built at a time (peak memory)
    twins = build_twins(model, twin, suite.seeds_of_twins(), device, slot)
    spectrum = build_spectrum_twin(model, twin, suite.twin_seed, device, slot) if suite.spectrum_twin else None
    t_model = time.perf_counter() - t0
    quick_items = suite.quick_settings.get("max_items") if quick else None
    records = [AnalysisRecord(spec, spec.resolved(quick, quick_items)) for spec in suite.analyses]
    # secondary analyses are outside the family: they add no m_c and face only the uncorrected alpha
    thresholds = decision_thresholds(analyses_per_claim(a.claim for a in suite.analyses if not a.secondary),
                                     suite.alpha)
    kinds = registry()

    def analyse(index: int) -> None:
        _run_record(index + 1, records, kinds, model=model, twins=twins, spectrum=spectrum, suite=suite,
                    thresholds=thresholds, null_seed=null_seed, progress=progress, debug=debug)

    workers = usable_jobs(jobs, len(records)) if _can_fork(model, device) else 1
    extra_counts = ForwardCounts()
    extra_builds: dict[str, float] = {"builds": 0, "seconds": 0.0}
    if workers == 1:
        for index in range(len(records)):
            analyse(index)
    else:
        extra_counts, extra_builds = _run_in_workers(records, analyse, workers, slot, suite, quick)
    _remember_timings(records, suite, quick)
    slot.release()
    everything = ResultSet()
    replicates: dict[TestKey, np.ndarray] = {}
    for record in records:
        everything = everything + record.results
        replicates.update(record.replicates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PValueFloorWarning)
        corrected, family = correct_by_claim(everything, suite.correction, suite.alpha)
    corrected = attach_paired(corrected, replicates, seed=suite.seed)
    not_run: dict[str, str] = {}
    for record in records:
        if record.status != "ok" and not record.spec.secondary:  # a failed secondary analysis is reported only
            not_run.setdefault(record.spec.claim, f"{record.spec.id}: {record.reason}")
    for claim in suite.claims:
        if not any(r.spec.claim == claim and not r.spec.secondary for r in records):
            not_run.setdefault(claim, "the suite has no analysis for this claim")
    verdicts = judge_all(corrected, suite.claims, alpha=suite.alpha, correction=suite.correction, not_run=not_run)
    total = time.perf_counter() - t0
    timings: dict[str, Any] = {"total_s": round(total, 2), "load_model_s": round(t_model, 2),
                               "analyses_s": {r.spec.id: round(r.seconds, 2) for r in records},
                               "forward_passes": counts_summary(forward_counts() - forwards + extra_counts),
                               "forward_memo": {r.spec.id: r.memo for r in records},
                               "controls_built": _add_builds(slot.summary(), extra_builds),  # on demand, one per worker
                               "workers": workers,  # float sums depend on the threads: record them
                               "threads_per_process": 1 if workers > 1 else torch.get_num_threads()}
    if model.remote:  # on NDIF the download is the cost: per analysis, before compression
        timings["download_mb"] = {r.spec.id: round(r.downloaded_bytes / 2**20, 3) for r in records}
        timings["download_mb_total"] = round(model.downloaded_bytes / 2**20, 3)
    _log(f"done in {total:.1f}s", progress)
    model_record = {**model.describe(), "package": f"conceptspace {__version__}", "variant": model_variant(suite.model)}
    controls = [{**m.describe(), "control": "untrained", "seed": seed}
                for seed, m in zip(suite.seeds_of_twins(), twins, strict=False)]
    if spectrum is not None:
        controls.append({**spectrum.describe(), "control": "spectrum_matched", "seed": suite.twin_seed})
    return RunOutcome(
        suite=suite, quick=quick, model=model_record, twin=_twin_record(twins[0] if twins else None, twin),
        records=records, results=corrected, verdicts=verdicts, timings=timings,
        caveats=_null_caveats(null_seed) + _twin_caveats(twins[0] if twins else None, twin, model)
        + _spectrum_caveats(suite, spectrum, twin)
        + _caveats(records, corrected),
        family=family, null_seed=null_seed, controls=controls,
    )


def _run_record(number: int, records: list[AnalysisRecord], kinds: Mapping[str, Any], *, model: ConceptModel,
                twins: tuple[ConceptModel, ...], spectrum: ConceptModel | None, suite: Suite,
                thresholds: Mapping[str, tuple[float, ...]], null_seed: int | None, progress: bool,
                debug: bool) -> None:
    """Run analysis ``number`` (1-based) of ``records`` and fill its record; an error is recorded, not raised."""
    record = records[number - 1]
    spec = record.spec
    _log(f"[{number}/{len(records)}] {spec.claim} {spec.id}: {spec.kind}", progress)
    start, memo_before = time.perf_counter(), memo_counts()
    bytes_before = model.downloaded_bytes
    try:
        kind = kinds[spec.kind]
        record.primary_site = depth_site(spec.primary, model.n_layers) if spec.primary else None
        context = RunContext(model=model, twin=twins[0] if twins else None, claim=spec.claim, seed=suite.seed,
                             n_permutations=suite.n_permutations, n_bootstrap=suite.n_bootstrap,
                             progress=progress, twins=twins, twin_seeds=suite.seeds_of_twins() if twins else (),
                             spectrum_twin=spectrum, primary_site=record.primary_site,
                             thresholds=(suite.alpha,) if spec.secondary
                             else thresholds.get(spec.claim, (suite.alpha,)),
                             max_permutations=_draw_cap(suite, spec), null_seed=null_seed)
        output = kind.run(context, kind.make_params(record.params))
        record.results = assign_roles(_tag(output.results, spec, model.n_layers), record.primary_site)
        if spec.secondary:
            record.results = as_secondary(record.results)
        record.replicates = {key.replace(analysis=spec.id): np.asarray(value)
                             for key, value in output.replicates.items()}
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
    record.memo = (memo_counts() - memo_before).as_dict()
    record.downloaded_bytes = model.downloaded_bytes - bytes_before
    _log(f"    {record.status} in {record.seconds:.1f}s ({len(record.results)} tests) {record.reason}", progress)


# ----------------------------------------------------------------------------------------- worker processes
def _can_fork(model: ConceptModel, device: str | None) -> bool:
    """Worker processes only for a local model on the CPU: a CUDA context does not survive fork, and an NDIF
    client's connections should not be shared by two processes."""
    return not model.remote and (device is None or device == "cpu")


def _run_in_workers(records: list[AnalysisRecord], analyse: Callable[[int], None], workers: int, slot: ControlSlot,
                    suite: Suite, quick: bool) -> tuple[ForwardCounts, dict[str, float]]:
    """Run every record's analysis in ``workers`` forked processes (:mod:`conceptspace.suite._workers`), longest
    first by the last run's timings (the cache's ``run-timings`` area), and read the records back
    (:mod:`conceptspace.suite._record_codec`).

    Returns what the workers counted (forward passes, control builds), for the run's timings. A record the codec
    cannot write is re-run here; one whose worker died is recorded as failed, with the worker's status."""
    at_fork, builds_at_fork, seconds_at_fork = forward_counts(), slot.builds, slot.build_seconds
    order = _longest_first(records, suite, quick)
    with tempfile.TemporaryDirectory(prefix="conceptspace-run-") as name:
        folder = Path(name)

        def work(index: int) -> None:
            analyse(index)
            record = records[index]
            try:
                write_record(folder, f"record-{index}", scalars=_record_scalars(record), results=record.results,
                             replicates=record.replicates, figure_data=record.figure_data)
            except UnencodableError as error:
                (folder / f"redo-{index}").write_text(str(error))

        def finish(worker: int) -> None:
            counts = (forward_counts() - at_fork).as_dict()
            builds = {"builds": slot.builds - builds_at_fork, "seconds": slot.build_seconds - seconds_at_fork}
            (folder / f"worker-{worker}.json").write_text(json.dumps({"counts": counts, "builds": builds}))

        # every worker computes on one thread (more would hang it: conceptspace/utils/threads.py)
        outcome = run_forked(order, work, finish, jobs=workers, folder=folder)
        counts, builds = ForwardCounts(), {"builds": 0.0, "seconds": 0.0}
        for worker in range(workers):
            path = folder / f"worker-{worker}.json"
            if path.is_file():
                summary = json.loads(path.read_text())
                counts = counts + ForwardCounts(**summary["counts"])
                builds = {k: builds[k] + float(summary["builds"][k]) for k in builds}
        for index in outcome.finished:
            if (folder / f"redo-{index}").exists():
                with one_thread():  # as the workers compute, so its numbers are what a worker's would have been
                    analyse(index)  # its output holds a value the codec cannot write: run it here instead
            else:
                _read_into(records[index], folder, f"record-{index}")
        for index, why in outcome.lost.items():
            records[index].status, records[index].reason = "failed", f"not completed: {why}"
    return counts, {"builds": int(builds["builds"]), "seconds": builds["seconds"]}


def _add_builds(own: dict[str, float], workers: dict[str, float]) -> dict[str, float]:
    return {"builds": int(own["builds"] + workers["builds"]), "seconds": round(own["seconds"] + workers["seconds"], 2)}


def _record_scalars(record: AnalysisRecord) -> dict[str, Any]:
    return {"status": record.status, "reason": record.reason, "seconds": record.seconds,
            "downloaded_bytes": record.downloaded_bytes, "memo": record.memo, "primary_site": record.primary_site}


def _read_into(record: AnalysisRecord, folder: Path, stem: str) -> None:
    scalars, results, replicates, figure_data = read_record(folder, stem)
    record.status, record.reason, record.seconds = scalars["status"], scalars["reason"], scalars["seconds"]
    record.downloaded_bytes, record.memo = scalars["downloaded_bytes"], scalars["memo"]
    record.primary_site = scalars["primary_site"]
    record.results, record.replicates, record.figure_data = results, replicates, figure_data


def _timings_file(suite: Suite, quick: bool) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in suite.name)
    return activation_cache_dir() / "run-timings" / f"{name}{'-quick' if quick else ''}.json"


def _longest_first(records: list[AnalysisRecord], suite: Suite, quick: bool) -> list[int]:
    """Record indices, the longest analyses first by the last run of this suite (suite order where unknown):
    a worker that takes a long analysis last would leave the other idle at the end."""
    try:
        last = json.loads(_timings_file(suite, quick).read_text())
    except (OSError, ValueError):
        last = {}
    def seconds_of(record: AnalysisRecord) -> float:  # a hint: anything unreadable counts as unknown
        value = last.get(record.spec.id) if isinstance(last, dict) else None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0

    seconds = [seconds_of(r) for r in records]
    return sorted(range(len(records)), key=lambda i: (-seconds[i], i))


def _remember_timings(records: list[AnalysisRecord], suite: Suite, quick: bool) -> None:
    """Keep this run's analysis times for the next run's queue order (a hint only: losing it costs nothing)."""
    path = _timings_file(suite, quick)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps({r.spec.id: round(r.seconds, 2) for r in records}))
        os.replace(partial, path)
    except OSError:
        pass


def _draw_cap(suite: Suite, spec: AnalysisSpec) -> int | None:
    """The cap on an analysis's sequential draws: its own where set, never above the run's (``--quick``'s)."""
    caps = [c for c in (suite.max_permutations, spec.max_permutations) if c is not None]
    return min(caps) if caps else None


def model_variant(name: str) -> str | None:
    """The exact variant of a bundled model (which checkpoint, which quantization, how it was loaded), for the
    report's header: "SmolLM2-135M" alone does not say the weights were a Q4_1 GGUF dequantized to float32."""
    bundled = BUNDLED_MODELS.get(name)
    return bundled.description if bundled is not None else None


def _null_caveats(null_seed: int | None) -> list[str]:
    if null_seed is None:
        return []
    return [f"NULL BATTERY (seed {null_seed}): every label set was permuted within its groups, every pair set "
            "re-paired and every concept direction drawn from permuted labels. Nothing here is evidence about the "
            "model; a claim 'supported' in this run is a false positive of the pipeline."]


def build_twin(model: ConceptModel, choice: str, seed: int, device: str | None = None,
               slot: ControlSlot | None = None) -> ConceptModel | None:
    """The untrained control for ``model``: ``"config"`` (its own architecture), ``"none"``, or a model name.

    With a ``slot`` the config twin is built on first use and shares the slot with the run's other controls
    (:mod:`conceptspace.models._lazy_control`: one built at a time); a named model is loaded now."""
    if choice == "none":
        return None
    if choice == "config":
        return model.untrained(seed, device=device) if slot is None else lazy_untrained(model, seed, device, slot)
    return load_model(choice, untrained=True, seed=seed, device=device)


def build_twins(model: ConceptModel, choice: str, seeds: tuple[int, ...], device: str | None = None,
                slot: ControlSlot | None = None) -> tuple[ConceptModel, ...]:
    """One untrained control per seed (none with ``--twin none``)."""
    built = [build_twin(model, choice, seed, device, slot) for seed in seeds]
    return tuple(m for m in built if m is not None)


def build_spectrum_twin(model: ConceptModel, choice: str, seed: int, device: str | None = None,
                        slot: ControlSlot | None = None) -> ConceptModel | None:
    """The spectrum-matched control (weights keep their singular values, lose their singular vectors); only
    for the model's own architecture (``--twin config``) and weights held on this machine (not over NDIF).
    With a ``slot``, built on first use (see :func:`build_twin`)."""
    if choice != "config" or not model.weights_are_local:
        return None  # a remote model's weights are not here; downloading all of them is not what a run should do
    if slot is None:
        return model.spectrum_matched(seed, device=device)
    return lazy_spectrum_matched(model, seed, device, slot)


def _twin_record(twin: ConceptModel | None, choice: str) -> dict[str, Any] | None:
    if twin is None:
        return None
    return {**twin.describe(), "twin_source": "config" if choice == "config" else choice}


def _spectrum_caveats(suite: Suite, spectrum: ConceptModel | None, choice: str) -> list[str]:
    if not suite.spectrum_twin or spectrum is not None:
        return []
    why = "--twin is not 'config'" if choice != "config" else "the model's weights are not on this machine (remote)"
    return [f"No spectrum-matched twin in this run ({why}): the untrained twins are the only architecture control, "
            "and claims whose rule must beat spectrum_matched lack that counterpart."]


def _twin_caveats(twin: ConceptModel | None, choice: str, model: ConceptModel) -> list[str]:
    if twin is None:
        return ["No untrained twin in this run (--twin none): every claim whose rule must beat the untrained twin "
                "lacks that counterpart, so it cannot be 'supported' here."]
    if choice != "config":
        return [f"The untrained control is an untrained {twin.name} ({twin.n_layers} layers, d={twin.d_model}), not "
                f"a re-initialised {model.name} ({model.n_layers} layers, d={model.d_model}): it controls for the "
                "architecture family and the data, not for this model's exact shape."]
    return []
