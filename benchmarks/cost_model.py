"""A cost model of the main job: time per phase (cold and warm), growth with texts / layers / placebos, NDIF bytes.

    python benchmarks/cost_model.py phases  [--suite probes/concept_space.toml] [--full]
    python benchmarks/cost_model.py growth  [--only texts|layers|placebos|budget] [--full] [--sizes 10,2000]
    python benchmarks/cost_model.py remote  [--suite probes/concept_space.toml]
    python benchmarks/cost_model.py table   (Markdown tables from the JSON files written by the three above)

Why a tracer of its own and not cProfile's cumulative times: the phases nest (a sequential placebo null calls a
model forward for every draw; an extraction runs forwards; a refit bootstrap calls the closed-form fits), so
summing cumulative times double counts, and cProfile's overhead on torch's many small module calls distorts the
very forwards being timed. Here each phase has entry points (functions, patched in place with a wrapper for this
process only), a stack records which phase is open, and the time between two events goes to ONE phase:

* the innermost open phase wins (a model forward inside a placebo draw is a forward, the statistic computed on
  the draws is a permutation cost), except that
* ``load``, ``extraction`` and ``report`` absorb everything under them (a forward under ``extract`` is
  extraction; building a twin's weights is load; figures are report);
* time under no phase is ``analysis code`` (tokenising, sklearn fits, numpy glue in the analyses, the runner).

Entry points: ``load`` = the runner's ``load_model``, ``build_twins``, ``build_spectrum_twin``; ``extraction``
= :func:`conceptspace.activations.extract`; ``forwards`` = ``torch.nn.Module._call_impl`` (any module forward
not under extract: steering, erasure, k-shot prompts, logit lens, attention edits, remote traces);
``permutations`` = every function of ``conceptspace.stats._permutation``, ``._sequential``, ``._exact`` and
``conceptspace.analyses.geometry._nulls``; ``bootstrap`` = ``conceptspace.stats._bootstrap`` and
``._refit_bootstrap``; ``other statistics`` = the other statistics modules (fits, folds, scoring, effects,
paired differences) and ``conceptspace.theory`` (correction, verdicts); ``report`` =
:func:`conceptspace.report.write_report`. Each phase gets wall seconds (``time.perf_counter``) and CPU seconds of
the process (``time.process_time``, every thread): on a shared machine the CPU seconds are the stable figure,
the wall seconds include waiting for a core.

Only calls on the main thread are timed; a wrapper on a nested call of the same phase costs no clock read.
The wrappers replace the functions wherever a ``conceptspace`` module holds a reference to them, so a closure
or a container captured before the patch would escape (none is known; the per-phase sums are checked against
the run's total in the JSON: ``unattributed`` is the difference and should be ~0).

Counts: model traces per analysis (every ``trace``/``generate`` of nnsight's model wrapper, remote ones apart)
and, in ``remote``, the downloaded bytes classified by the shape of each tensor that came back (whole
vocab x d matrices, vocabulary-wide rows, d-wide activations, the rest), so the 70B projection can scale each
class by its own rule. Results go to ``benchmarks/results/cost_model_<command>.json``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_SUITE = "probes/concept_space.toml"
DEFAULT_MODEL_CACHE = "/root/.cache/conceptspace/models"

PHASES = ("load", "extraction", "forwards", "permutations", "bootstrap", "other statistics", "report",
          "analysis code")
ABSORBING = frozenset({"load", "extraction", "report"})
REST = "analysis code"
MODULE_PHASES = {
    "conceptspace.stats._permutation": "permutations",
    "conceptspace.stats._sequential": "permutations",
    "conceptspace.stats._exact": "permutations",
    "conceptspace.analyses.geometry._nulls": "permutations",
    "conceptspace.stats._bootstrap": "bootstrap",
    "conceptspace.stats._refit_bootstrap": "bootstrap",
    "conceptspace.stats._linear": "other statistics",
    "conceptspace.stats._folds": "other statistics",
    "conceptspace.stats._scoring": "other statistics",
    "conceptspace.stats._effects": "other statistics",
    "conceptspace.stats._paired": "other statistics",
    "conceptspace.theory._family": "other statistics",
    "conceptspace.theory._verdicts": "other statistics",
}
#: Llama-3.1-70B as NDIF serves it: the projection's target
LLAMA_70B = {"name": "Llama-3.1-70B", "d_model": 8192, "vocab": 128256, "n_layers": 80, "bytes_per_value": 2}


# ------------------------------------------------------------------------------------------ the phase clock
class PhaseClock:
    """Wall and CPU seconds per (analysis, phase); the innermost open phase is charged, absorbing ones excepted."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.analysis = "(runner)"
        self.wall: dict[tuple[str, str], float] = defaultdict(float)
        self.cpu: dict[tuple[str, str], float] = defaultdict(float)
        self.main = threading.get_ident()
        self.last_wall, self.last_cpu = time.perf_counter(), time.process_time()
        self.start_wall, self.start_cpu = self.last_wall, self.last_cpu

    def _charge(self) -> None:
        now_wall, now_cpu = time.perf_counter(), time.process_time()
        key = (self.analysis, self.stack[-1] if self.stack else REST)
        self.wall[key] += now_wall - self.last_wall
        self.cpu[key] += now_cpu - self.last_cpu
        self.last_wall, self.last_cpu = now_wall, now_cpu

    def phase(self) -> str:
        """The phase open now (whose caller opened a trace or received a download)."""
        return self.stack[-1] if self.stack else REST

    def set_analysis(self, name: str) -> None:
        self._charge()
        self.analysis = name

    def wrap(self, function: Callable[..., Any], phase: str) -> Callable[..., Any]:
        """``function`` timed as ``phase`` (on the main thread; other threads pass straight through)."""
        stack = self.stack

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self.main:
                return function(*args, **kwargs)
            top = stack[-1] if stack else None
            effective = top if top in ABSORBING else phase
            switch = effective != top
            if switch:
                self._charge()
            stack.append(effective)
            try:
                return function(*args, **kwargs)
            finally:
                if switch:
                    self._charge()
                stack.pop()

        timed.__wrapped_phase__ = phase  # type: ignore[attr-defined]
        return timed

    def totals(self) -> dict[str, Any]:
        self._charge()
        by_phase = {p: {"wall_s": 0.0, "cpu_s": 0.0} for p in PHASES}
        by_analysis: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
        for (analysis, phase), wall in self.wall.items():
            by_phase[phase]["wall_s"] += wall
            by_phase[phase]["cpu_s"] += self.cpu[(analysis, phase)]
            by_analysis[analysis][phase] = {"wall_s": round(wall, 3), "cpu_s": round(self.cpu[(analysis, phase)], 3)}
        total_wall, total_cpu = self.last_wall - self.start_wall, self.last_cpu - self.start_cpu
        return {"total": {"wall_s": round(total_wall, 3), "cpu_s": round(total_cpu, 3)},
                "phases": {p: {k: round(v, 3) for k, v in t.items()} for p, t in by_phase.items()},
                "unattributed_wall_s": round(total_wall - sum(t["wall_s"] for t in by_phase.values()), 6),
                "by_analysis": by_analysis}


def _module_functions(name: str) -> list[Callable[..., Any]]:
    module = importlib.import_module(name)
    return [obj for obj in vars(module).values()
            if inspect.isfunction(obj) and obj.__module__ == name and not inspect.isgeneratorfunction(obj)]


def install(clock: PhaseClock) -> dict[Callable[..., Any], Callable[..., Any]]:
    """Patch every entry point with its timed wrapper, wherever a conceptspace module refers to it."""
    import torch

    import conceptspace.report
    import conceptspace.suite._runner as runner
    from conceptspace.activations import _extract

    targets: dict[Callable[..., Any], str] = {
        _extract.extract: "extraction", conceptspace.report.write_report: "report", runner.load_model: "load",
        runner.build_twins: "load", runner.build_spectrum_twin: "load"}
    for name, phase in MODULE_PHASES.items():
        for function in _module_functions(name):
            targets.setdefault(function, phase)
    wrappers = {function: clock.wrap(function, phase) for function, phase in targets.items()}
    for module in [m for n, m in list(sys.modules.items()) if n.startswith("conceptspace") and m is not None]:
        for attribute, value in list(vars(module).items()):
            if inspect.isfunction(value) and value in wrappers:
                setattr(module, attribute, wrappers[value])
    torch.nn.Module._call_impl = clock.wrap(torch.nn.Module._call_impl, "forwards")  # type: ignore[method-assign]
    original_log = runner._log

    def log(message: str, progress: bool) -> None:  # the runner's progress lines say which analysis runs
        if message.startswith("[") and "] " in message:
            clock.set_analysis(message.split("] ", 1)[1].split(":", 1)[0].split(" ", 1)[-1])
        elif message.startswith("    "):
            clock.set_analysis("(runner)")
        original_log(message, progress)

    runner._log = log  # type: ignore[assignment]
    return wrappers


class TraceCounter:
    """Model traces per analysis (nnsight ``trace`` / ``generate``), remote (NDIF or the dry run) apart."""

    def __init__(self, clock: PhaseClock) -> None:
        self.clock = clock
        self.depth = 0
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: {"traces": 0, "remote_traces": 0})
        self.by_phase: dict[str, dict[str, int]] = defaultdict(lambda: {"traces": 0, "remote_traces": 0})

    def install(self) -> None:
        from conceptspace.models._nnsight import import_nnsight

        for klass in import_nnsight().TransformersModel.__mro__:
            for name in ("trace", "generate"):
                if name in vars(klass) and callable(vars(klass)[name]):
                    setattr(klass, name, self._wrap(vars(klass)[name]))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.depth == 0:  # generate may open a trace itself: count the outer call once
                for row in (self.counts[self.clock.analysis], self.by_phase[self.clock.phase()]):
                    row["traces"] += 1
                    row["remote_traces"] += bool(kwargs.get("remote"))
            self.depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                self.depth -= 1

        return counted


class DownloadClasses:
    """Downloaded bytes per analysis by what the tensor is, read from its shape: the key to scaling to 70B."""

    def __init__(self, clock: PhaseClock) -> None:
        self.clock = clock
        self.bytes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.by_phase: dict[str, int] = defaultdict(int)
        self.dims: dict[str, int] = {}
        self.whole_matrix = 0  # > 0 while a whole weight matrix is being fetched (in row chunks)

    def install(self) -> None:
        import torch

        from conceptspace.models import _weights
        from conceptspace.models._model import ConceptModel

        original = ConceptModel.record_download
        classes = self

        def record(model: Any, *values: Any) -> None:
            if model.remote:  # the original recurses into containers through this method: count tensors only
                vocab, d_model = (int(n) for n in model.embedding_matrix().shape)
                classes.dims = {"d_model": d_model, "vocab": vocab}
                for tensor in (v for v in values if isinstance(v, torch.Tensor)):
                    kind = "matrix" if classes.whole_matrix else _tensor_class(tuple(tensor.shape), d_model, vocab)
                    size = tensor.element_size() * tensor.numel()
                    classes.bytes[classes.clock.analysis][kind] += size
                    classes.by_phase[classes.clock.phase()] += size
            original(model, *values)

        ConceptModel.record_download = record  # type: ignore[method-assign,assignment]
        fetch = _weights._cached_matrix

        @functools.wraps(fetch)
        def whole(*args: Any, **kwargs: Any) -> Any:
            classes.whole_matrix += 1
            try:
                return fetch(*args, **kwargs)
            finally:
                classes.whole_matrix -= 1

        for module in [m for n, m in list(sys.modules.items()) if n.startswith("conceptspace") and m is not None]:
            for attribute, value in list(vars(module).items()):
                if value is fetch:
                    setattr(module, attribute, whole)


def _tensor_class(shape: tuple[int, ...], d_model: int, vocab: int) -> str:
    """``matrix`` (vocab x d: a whole embedding/unembedding), ``vocab`` (a last axis over the vocabulary: logits),
    ``d`` (a last axis of width d: activations, weight rows), ``other`` (scalars per prompt: log-probs, slopes)."""
    if len(shape) == 2 and shape[0] == vocab and shape[1] == d_model:
        return "matrix"
    if shape and shape[-1] == vocab:
        return "vocab"
    if shape and shape[-1] == d_model:
        return "d"
    return "other"


# ------------------------------------------------------------------------------------------- one timed run
def _quiet() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("CONCEPTSPACE_MODEL_CACHE", DEFAULT_MODEL_CACHE)


def timed_run(suite: Any, *, quick: bool, cache: Path, remote: Any = False, report: bool = True) -> dict[str, Any]:
    """One ``run_suite`` (and ``write_report``) under a fresh clock, into ``cache``: phases, traces, counters."""
    import conceptspace.report
    import conceptspace.suite._runner

    os.environ["CONCEPTSPACE_CACHE"] = str(cache)
    if not getattr(timed_run, "installed", None):
        clock = PhaseClock()
        install(clock)
        traces = TraceCounter(clock)
        traces.install()
        downloads = DownloadClasses(clock)
        downloads.install()
        timed_run.installed = (clock, traces, downloads)  # type: ignore[attr-defined]
    clock, traces, downloads = timed_run.installed  # type: ignore[attr-defined]
    _reset(clock, traces, downloads)
    outcome = conceptspace.suite._runner.run_suite(suite, quick=quick, remote=remote, progress=False)  # type: ignore[attr-defined]
    if report:
        with tempfile.TemporaryDirectory() as folder:
            clock.set_analysis("(report)")
            conceptspace.report.write_report(outcome, folder)
    totals = clock.totals()
    return {**totals, "timings": outcome.timings,
            "status": {r.spec.id: r.status + (f": {r.reason}" if r.reason else "") for r in outcome.records},
            "traces": {k: dict(v) for k, v in traces.counts.items()},
            "traces_by_phase": {k: dict(v) for k, v in traces.by_phase.items()},
            "download_bytes": {k: dict(v) for k, v in downloads.bytes.items()},
            "download_bytes_by_phase": dict(downloads.by_phase),
            "model": {**{k: outcome.model.get(k) for k in ("name", "d_model", "n_layers")}, **downloads.dims}}


def _reset(clock: PhaseClock, traces: TraceCounter, downloads: DownloadClasses) -> None:
    """One clock for the process (the wrappers hold it); zero it between runs."""
    clock.wall.clear()
    clock.cpu.clear()
    clock.stack.clear()
    clock.analysis = "(runner)"
    clock.last_wall, clock.last_cpu = time.perf_counter(), time.process_time()
    clock.start_wall, clock.start_cpu = clock.last_wall, clock.last_cpu
    traces.counts.clear()
    traces.by_phase.clear()
    downloads.bytes.clear()
    downloads.by_phase.clear()
    downloads.dims = {}


def _machine() -> dict[str, Any]:
    import torch

    return {"node": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


@contextmanager
def _load_record() -> Iterator[dict[str, Any]]:
    record: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "uptime_before": _uptime()}
    yield record
    record["uptime_after"] = _uptime()
    record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _save(name: str, record: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"cost_model_{name}.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {path}", file=sys.stderr)
    return path


# --------------------------------------------------------------------------------------------- commands
def cmd_child(args: argparse.Namespace) -> None:
    """One run in this process (the parent starts a fresh process for cold and for warm)."""
    from conceptspace.suite._spec import load_suite

    _quiet()
    suite = load_suite(args.suite).for_run(quick=not args.full)
    with _load_record() as record:
        record.update(timed_run(suite, quick=not args.full, cache=Path(args.cache)))
        record["machine"] = _machine()
    Path(args.json).write_text(json.dumps(record, default=str))


def cmd_phases(args: argparse.Namespace) -> None:
    """Cold (empty activation cache) then warm (the cache the cold run filled), each its own process."""
    record: dict[str, Any] = {"command": " ".join(sys.argv), "battery": "full" if args.full else "--quick",
                              "suite": args.suite, "model_cache": "warm", "runs": {}}
    work = Path(tempfile.mkdtemp(prefix="conceptspace-cost-"))
    try:
        for label in ("cold", "warm"):
            out = work / f"{label}.json"
            command = [sys.executable, __file__, "_child", "--suite", args.suite, "--cache", str(work / "cache"),
                       "--json", str(out), *(["--full"] if args.full else [])]
            print(f"{label}: {_uptime()}", file=sys.stderr)
            subprocess.run(command, cwd=ROOT, check=True)
            record["runs"][label] = json.loads(out.read_text())
            print(f"{label}: {record['runs'][label]['total']}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _save("phases_full" if args.full else "phases", record)
    print(phase_table(record))


def _one_analysis(suite: Any, analysis: str, quick: dict[str, Any], max_items: int | None = None,
                  max_permutations: int | None = None) -> Any:
    spec = next(a for a in suite.analyses if a.id == analysis)
    spec = replace(spec, quick={**spec.quick, **quick},
                   **({"max_permutations": max_permutations} if max_permutations else {}))
    settings = dict(suite.quick_settings)
    if max_items is not None:
        settings["max_items"] = max_items
    return replace(suite, analyses=(spec,), quick_settings=settings)


#: the growth experiments: (name, analysis, what grows, [(size, quick overrides, max_items, max_permutations)])
GROWTH: dict[str, tuple[str, str, list[tuple[int, dict[str, Any], int | None, int | None]]]] = {
    "texts_c4_sentiment": ("c4_sentiment", "texts (max_items)",
                           [(n, {}, n, None) for n in (24, 48, 96)]),
    "texts_p5_logit_lens": ("p5_logit_lens", "texts (max_items)",
                            [(n, {}, n, None) for n in (24, 48, 96)]),
    "layers_c4_sentiment": ("c4_sentiment", "layers",
                            [(1, {"layers": [0.5]}, None, None), (3, {"layers": [0.3, 0.5, 0.7]}, None, None),
                             (5, {"layers": [0.1, 0.3, 0.5, 0.7, 0.9]}, None, None)]),
    "layers_p5_logit_lens": ("p5_logit_lens", "layers",
                             [(1, {"layers": [0.5]}, None, None), (3, {"layers": [0.1, 0.5, 0.9]}, None, None),
                              (5, {"layers": [0.1, 0.3, 0.5, 0.7, 0.9]}, None, None)]),
    "placebos_c5": ("c5_sentiment_steering", "placebo draws (max_permutations, every draw forced)",
                    [(n, {}, None, n) for n in (250, 500, 1000)]),
    # issue 18's budget: C5 with >= 2,000 placebo draws at most 3x the time of C5 with 10, in the same run
    "budget_placebos_c5": ("c5_sentiment_steering", "placebo draws (max_permutations, every draw forced)",
                           [(n, {}, None, n) for n in (10, 2000)]),
}


@contextmanager
def _forced_draws(enabled: bool) -> Iterator[None]:
    """Make every sequential null draw up to its cap (its decision never 'settled'), so the cap is the count."""
    import conceptspace.stats._sequential as sequential

    original = sequential.is_settled
    if enabled:
        sequential.is_settled = lambda low, high, thresholds: False  # type: ignore[assignment]
    try:
        yield
    finally:
        sequential.is_settled = original  # type: ignore[assignment]


def cmd_growth(args: argparse.Namespace) -> None:
    """Each experiment: one untimed warm-up at the smallest size, then each size once, cold activation cache."""
    from conceptspace.suite._spec import load_suite

    _quiet()
    quick_battery = not args.full
    suite = load_suite(args.suite).for_run(quick=quick_battery)
    names = [n for n in GROWTH if args.only is None or n.startswith(args.only)]
    record: dict[str, Any] = {"command": " ".join(sys.argv), "battery": "--quick" if quick_battery else "full",
                              "machine": _machine(), "experiments": {}}
    work = Path(tempfile.mkdtemp(prefix="conceptspace-growth-"))
    try:
        with _load_record() as load:
            for name in names:
                analysis, grows, sizes = GROWTH[name]
                if args.sizes:  # the same overrides at other sizes (a full-battery point can take most of an hour)
                    sizes = [(int(n), sizes[0][1], int(n) if sizes[0][2] else None, int(n) if sizes[0][3] else None)
                             for n in args.sizes.split(",")]
                forced = "placebos" in name
                points = []
                with _forced_draws(forced):
                    warm_up = sizes[0]
                    if forced:
                        warm_up = (sizes[0][0], sizes[0][1], sizes[0][2], 32)
                    timed_run(_one_analysis(suite, analysis, warm_up[1], warm_up[2], warm_up[3]), quick=quick_battery,
                              cache=work / f"{name}-warm-up", report=False)
                    for size, quick, max_items, max_permutations in sizes:
                        sub = _one_analysis(suite, analysis, quick, max_items, max_permutations)
                        before = _uptime()
                        run = timed_run(sub, quick=quick_battery, cache=work / f"{name}-{size}", report=False)
                        run.pop("by_analysis")
                        points.append({"size": size, "uptime_before": before, **run})
                        print(f"{name} {size}: {run['total']} {run['status']}", file=sys.stderr)
                record["experiments"][name] = {"analysis": analysis, "grows": grows, "points": points,
                                               "fit": fit_exponents(points)}
        record.update(load)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _save(f"growth{'_' + args.only if args.only else ''}{'' if quick_battery else '_full'}", record)
    print(growth_table(record))


def fit_exponents(points: list[dict[str, Any]], floor_s: float = 0.2) -> dict[str, dict[str, float | None]]:
    """b of time ~ a * size^b per phase (least squares on logs, CPU and wall seconds); None below ``floor_s``."""
    fits: dict[str, dict[str, float | None]] = {}
    for phase in (*PHASES, "total"):
        row: dict[str, float | None] = {}
        for measure in ("cpu_s", "wall_s"):
            ys = [(p["total"] if phase == "total" else p["phases"][phase])[measure] for p in points]
            xs = [p["size"] for p in points]
            row[measure] = _slope(xs, ys) if min(ys) >= floor_s else None
        fits[phase] = row
    return fits


def _slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return round(sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
                 / sum((a - mx) ** 2 for a in lx), 2)


def cmd_remote(args: argparse.Namespace) -> None:
    """The quick battery through the remote dry run, cold activation cache: traces, bytes by class, projection."""
    from conceptspace.suite._spec import load_suite

    _quiet()
    suite = load_suite(args.suite).for_run(quick=True)
    work = Path(tempfile.mkdtemp(prefix="conceptspace-remote-"))
    try:
        with _load_record() as record:
            run = timed_run(suite, quick=True, cache=work / "cache", remote="local", report=False)
        record.update({"command": " ".join(sys.argv), "machine": _machine(), "run": run})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["projection"] = project(run)
    _save("remote", record)
    print(remote_table(record))


def project(run: dict[str, Any], target: dict[str, Any] = LLAMA_70B) -> dict[str, Any]:
    """Bytes per analysis on ``target``: ``d`` tensors x d'/d, ``vocab`` x V'/V, ``matrix`` x V'd'/Vd, ``other``
    unchanged in count; every value at ``bytes_per_value`` on the wire (float32 here). Traces: the same number
    (layer scans are fractions of depth, so their count does not grow with 80 layers)."""
    model = run["model"]
    d, vocab = model["d_model"], model.get("vocab", 1)
    wire = target["bytes_per_value"] / 4
    scale = {"d": target["d_model"] / d, "vocab": target["vocab"] / vocab,
             "matrix": target["vocab"] * target["d_model"] / (vocab * d), "other": 1.0}
    rows = {}
    for analysis, classes in run["download_bytes"].items():
        rows[analysis] = {"measured_mb": round(sum(classes.values()) / 2**20, 3),
                          "projected_mb": round(sum(b * scale[k] * wire for k, b in classes.items()) / 2**20, 1),
                          "classes_mb": {k: round(b / 2**20, 3) for k, b in classes.items()},
                          "remote_traces": run["traces"].get(analysis, {}).get("remote_traces", 0)}
    return {"target": target, "scale": scale, "wire_factor": wire, "per_analysis": rows,
            "measured_mb": round(sum(r["measured_mb"] for r in rows.values()), 2),
            "projected_mb": round(sum(r["projected_mb"] for r in rows.values()), 1),
            "remote_traces": sum(v.get("remote_traces", 0) for v in run["traces"].values())}


# --------------------------------------------------------------------------------------------- tables
def phase_table(record: dict[str, Any]) -> str:
    runs = record["runs"]
    lines = ["| phase | " + " | ".join(f"{label} CPU s | {label} wall s" for label in runs) + " |",
             "|---|" + "---|---|" * len(runs)]
    for phase in (*PHASES, "total"):
        cells = []
        for run in runs.values():
            t = run["total"] if phase == "total" else run["phases"][phase]
            cells.append(f"{t['cpu_s']:.1f} | {t['wall_s']:.1f}")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    for label, run in runs.items():
        lines.append(f"\n{label}: {run['uptime_before']} -> {run['uptime_after']}; peak RSS {run['peak_rss_mb']} MB; "
                     f"traces {sum(v['traces'] for v in run['traces'].values())}; "
                     f"forward_passes {run['timings'].get('forward_passes')}")
    return "\n".join(lines)


def analysis_table(record: dict[str, Any]) -> str:
    """CPU seconds per analysis, cold and warm, with the phase that took most of each."""
    runs = record["runs"]
    names = list(dict.fromkeys(name for run in runs.values() for name in run["by_analysis"]))
    lines = ["| analysis | " + " | ".join(f"{label} CPU s (largest phase)" for label in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for name in names:
        cells = []
        for run in runs.values():
            phases = run["by_analysis"].get(name, {})
            total = sum(t["cpu_s"] for t in phases.values())
            top = max(phases, key=lambda p: phases[p]["cpu_s"]) if phases else "-"
            cells.append(f"{total:.1f} ({top} {phases[top]['cpu_s']:.1f})" if phases else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def growth_table(record: dict[str, Any]) -> str:
    lines = ["| experiment | sizes | total CPU s | CPU s per unit (first to last) | "
             + " | ".join(f"b {p}" for p in (*PHASES, "total")) + " |",
             "|---|---|---|---|" + "---|" * (len(PHASES) + 1)]
    for name, e in record["experiments"].items():
        points = e["points"]
        sizes = "/".join(str(p["size"]) for p in points)
        totals = "/".join(f"{p['total']['cpu_s']:.1f}" for p in points)
        marginal = ((points[-1]["total"]["cpu_s"] - points[0]["total"]["cpu_s"])
                    / (points[-1]["size"] - points[0]["size"]))
        exps = " | ".join("-" if e["fit"][p]["cpu_s"] is None else f"{e['fit'][p]['cpu_s']:.2f}"
                          for p in (*PHASES, "total"))
        lines.append(f"| {name} | {sizes} | {totals} | {marginal:.3f} | {exps} |")
    return "\n".join(lines)


def remote_table(record: dict[str, Any]) -> str:
    projection = record["projection"]
    lines = ["| analysis | remote traces | measured MB (SmolLM2, float32) | by class (d / vocab / matrix / other) | "
             "projected MB (70B, bf16) |", "|---|---|---|---|---|"]
    for analysis, row in projection["per_analysis"].items():
        c = row["classes_mb"]
        classes = " / ".join(f"{c.get(k, 0):.2f}" for k in ("d", "vocab", "matrix", "other"))
        lines.append(f"| {analysis} | {row['remote_traces']} | {row['measured_mb']:.2f} | {classes} | "
                     f"{row['projected_mb']:.1f} |")
    lines.append(f"| **total** | {projection['remote_traces']} | {projection['measured_mb']:.1f} | | "
                 f"{projection['projected_mb']:.1f} |")
    return "\n".join(lines)


def cmd_table(args: argparse.Namespace) -> None:
    renders = (("phases", phase_table), ("phases", analysis_table), ("growth", growth_table),
               ("remote", remote_table))
    for name, render in renders:
        for path in sorted(RESULTS.glob(f"cost_model_{name}*.json")):
            print(f"\n## {path.name}\n")
            print(render(json.loads(path.read_text())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("phases", "growth", "remote", "_child"):
        sub = commands.add_parser(name)
        sub.add_argument("--suite", default=DEFAULT_SUITE)
        if name in ("phases", "_child", "growth"):
            sub.add_argument("--full", action="store_true", help="the full battery (default: --quick)")
        if name == "growth":
            sub.add_argument("--only", choices=("texts", "layers", "placebos", "budget"), default=None)
            sub.add_argument("--sizes", default=None, help="comma list replacing the experiments' sizes")
        if name == "_child":
            sub.add_argument("--cache", required=True)
            sub.add_argument("--json", required=True)
    commands.add_parser("table")
    args = parser.parse_args()
    {"phases": cmd_phases, "growth": cmd_growth, "remote": cmd_remote, "_child": cmd_child,
     "table": cmd_table}[args.command](args)


if __name__ == "__main__":
    main()
