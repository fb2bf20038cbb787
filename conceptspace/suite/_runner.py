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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conceptspace.concepts._schema import ConceptSet
from conceptspace.errors import InvalidInputError
from conceptspace.models._load import ConceptModel, RemoteMode
from conceptspace.models._weights import embedding_rows
from conceptspace.stats._results import ResultSet, TestResult
from conceptspace.suite._spec import AnalysisSpec, Suite
from conceptspace.theory._verdicts import Verdict, is_sanity_check, judge_all

RESULTS_SCHEMA_VERSION = 1


@dataclass
class AnalysisRecord:
    """What happened to one analysis: status (ok / failed), reason, timing, tests and figure data."""

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


def _subset(concept_set: ConceptSet, rows: np.ndarray) -> ConceptSet:
    if rows.size == len(concept_set):
        return concept_set
    return concept_set.replace(data=concept_set.data.select(rows.tolist()))


def _layers(model: ConceptModel, layers: Any) -> list[int]:
    """Block indices of a suite's layer list; negative ones count from the end, out-of-range ones are refused."""
    if layers == "all":
        return list(range(model.n_layers))
    out = []
    for x in layers:
        index = int(x)
        if not -model.n_layers <= index < model.n_layers:
            raise InvalidInputError(
                f"layer {index} does not exist in {model.name} (blocks 0..{model.n_layers - 1}, or -1 for the last); "
                "the suite's layer lists are written for one model: adapt them to this one"
            )
        out.append(index % model.n_layers)
    return out


# ------------------------------------------------------------------------------------------------ analyses
def _make_probe(name: str, continuous: bool, penalty: float) -> Any:
    from conceptspace.analyses.probes._estimators import (
        LDAProbe,
        LogisticProbe,
        MassMeanProbe,
        RidgeProbe,
        RidgeRegressionProbe,
    )

    if continuous:
        return RidgeRegressionProbe(alpha=penalty)
    return {"ridge": lambda: RidgeProbe(alpha=penalty), "lda": LDAProbe, "mass_mean": MassMeanProbe,
            "logistic": LogisticProbe}[name]()


def last_token_ids(model: ConceptModel, texts: list[str]) -> np.ndarray:
    """The id of each text's last token (as the model tokenizes it): the lexical baseline and control types."""
    encoded = model.tokenizer(texts, add_special_tokens=True)["input_ids"]
    return np.array([ids[-1] for ids in encoded], dtype=np.int64)


def run_probe(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
              progress: bool) -> None:
    """C4: grouped-CV probe per layer with control task, twin and the last-token embedding (lexical)."""
    from conceptspace.activations._extract import extract
    from conceptspace.analyses.probes._evaluation import control_task_labels, probe_with_controls
    from conceptspace.concepts import load_concepts

    p = record.params
    full = load_concepts(p["dataset"])
    cs = _subset(full, subsample_rows(full, p["max_items"], suite.seed))
    continuous = cs.kind == "continuous"
    y = np.asarray(cs.column("value"), dtype=np.float64) if continuous else cs.labels
    groups = np.asarray(cs.groups)
    layers = _layers(model, p["layers"])
    sites = [f"layer.{i}" for i in layers]
    spans = cs.spans if p["position"].startswith("span") else None
    X = extract(model, cs.texts, sites=sites, position=p["position"], spans=spans, progress=progress).stack(sites)
    controls = set(p["controls"])
    kwargs: dict[str, Any] = {}
    # Control-task types: the word for word sets; the source group for sentence sets (their last token is
    # nearly always ".", which would give every item the same random label).
    types = cs.words if cs.words is not None else cs.groups
    if "control_task" in controls:
        kwargs["control_y"] = control_task_labels(types, y, seed=suite.seed)
    if "untrained" in controls and twin is not None:
        kwargs["X_untrained"] = extract(twin, cs.texts, sites=sites, position=p["position"], spans=spans,
                                        progress=progress).stack(sites)
    if "lexical" in controls:
        kwargs["X_lexical"] = embedding_rows(model, last_token_ids(model, cs.texts))
    results = probe_with_controls(
        _make_probe(p["probe"], continuous, p["penalty"]), X, y, groups, dataset=cs.name, layers=layers,
        claim=record.spec.claim, position=p["position"], n_splits=p["n_splits"],
        scoring="r2" if continuous else None, n_permutations=suite.n_permutations,
        n_bootstrap=suite.n_bootstrap, seed=suite.seed, **kwargs,
    )
    record.results = results
    record.figure_data["n_items"] = len(cs)


def run_clustering(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
                   progress: bool) -> None:
    """C1: clustering against category labels on the model and its twin."""
    from conceptspace.analyses import geometry
    from conceptspace.concepts import load_concepts

    p = record.params
    cs = load_concepts(p["dataset"])
    rows = geometry.select_rows(cs, classes=p["classes"], max_per_class=p["max_per_class"], seed=suite.seed)
    record.results = geometry.run_clustering(
        model, cs, p["sites"], rows=rows.tolist(), methods=p["methods"], twin=twin,
        n_permutations=suite.n_permutations, n_boot=suite.n_bootstrap, seed=suite.seed,
    )


def run_relations(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
                  progress: bool) -> None:
    """C2: relation consistency (Euclidean and causal inner product) on the model and its twin."""
    from conceptspace.analyses import geometry
    from conceptspace.concepts import load_concepts

    p = record.params
    cs = load_concepts(p["dataset"])
    record.results = geometry.run_relations(
        model, cs, p["sites"], twin=twin, n_permutations=suite.n_permutations, n_boot=suite.n_bootstrap,
        seed=suite.seed,
    )


def run_analogies(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
                  progress: bool) -> None:
    """C3: 3CosAdd vs only-b on the model and its twin."""
    from conceptspace.analyses import geometry
    from conceptspace.concepts import load_concepts

    p = record.params
    cs = load_concepts(p["dataset"])
    record.results = geometry.run_analogies(
        model, cs, p["sites"], max_per_relation=p["max_per_relation"], methods=p["methods"], twin=twin,
        n_permutations=suite.n_permutations, n_boot=suite.n_bootstrap, seed=suite.seed,
    )


def run_proximity(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
                  progress: bool) -> None:
    """P5: logit-lens proximity vs log-probability per layer (identity flagged), on the model and its twin."""
    from conceptspace.analyses import geometry
    from conceptspace.concepts import load_concepts

    p = record.params
    full = load_concepts(p["dataset"])
    cs = _subset(full, subsample_rows(full, p["max_items"], suite.seed))
    results = geometry.run_proximity_probability(
        model, cs.texts, layers=_layers(model, p["layers"]), dataset=cs.name, twin=twin,
        n_permutations=suite.n_permutations, n_boot=suite.n_bootstrap, seed=suite.seed,
    )
    if p["methods"] is not None:
        results = ResultSet(r for r in results if r.method in p["methods"] or is_sanity_check(r))
    record.results = results


def run_aggregation(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
                    progress: bool) -> None:
    """A6: order vs content and the bag-of-embeddings model, on the model and its twin."""
    from conceptspace.analyses._aggregation import aggregation_tests
    from conceptspace.concepts import load_concepts

    p = record.params
    texts: list[str] = []
    groups: list[str] = []
    for name in p["datasets"]:
        cs = load_concepts(name)
        texts.extend(cs.texts)
        groups.extend(f"{name}:{g}" for g in cs.groups)
    order = np.random.default_rng(suite.seed).permutation(len(texts))
    if p["max_items"] is not None:
        order = order[: p["max_items"]]
    order = np.sort(order)
    label = "+".join(n.split("/")[-1] for n in p["datasets"])
    results, details = aggregation_tests(
        model, [texts[i] for i in order], twin=twin, dataset=label, groups=[groups[i] for i in order],
        decay=p["decay"], penalty=p["penalty"], n_permutations=suite.n_permutations,
        n_bootstrap=suite.n_bootstrap, seed=suite.seed, claim=record.spec.claim,
    )
    record.results = results
    record.figure_data["aggregation"] = details


def run_steering(record: AnalysisRecord, model: ConceptModel, twin: ConceptModel | None, suite: Suite,
                 progress: bool) -> None:
    """C5: steer along the mass-mean direction of a binary concept set vs placebo directions (model and twin)."""
    from conceptspace.activations._extract import extract
    from conceptspace.analyses.causal import steering_test
    from conceptspace.analyses.probes._estimators import MassMeanProbe
    from conceptspace.concepts import load_concepts

    p = record.params
    full = load_concepts(p["dataset"])
    cs = _subset(full, subsample_rows(full, p["max_items"], suite.seed))
    site = f"layer.{_layers(model, [p['layer']])[0]}"
    spans = cs.spans
    position = "span:mean" if spans is not None else "last"
    results = ResultSet()
    curves: dict[str, Any] = {}
    for m, control in ((model, None), (twin, "untrained")):
        if m is None:
            continue
        X = np.asarray(extract(m, cs.texts, sites=[site], position=position, spans=spans,
                               progress=progress)[site], dtype=np.float64)
        direction = MassMeanProbe().fit(X, cs.labels).direction_
        steer = steering_test(
            m, direction, p["prompts"], (p["positive"], p["negative"]), site=site,
            off_target_prompts=p["off_target_prompts"], alphas=p["alphas"], n_random=p["n_random"],
            n_orthogonal=p["n_random"],
            n_bootstrap=suite.n_bootstrap, seed=suite.seed, name=cs.name, claim=record.spec.claim,
            p_method=p["p_method"],
        )
        label = control or "task"
        rows = []
        for r in steer.results:
            base = r.test_id[: -len("/task")] if r.test_id.endswith("/task") else r.test_id
            if r.control is None:
                rows.append(r.replace(test_id=f"{base}/{label}", control=control))
            elif control is None:
                rows.append(r)
            else:
                rows.append(r.replace(test_id=f"{r.test_id}/{label}"))
        results = results + ResultSet(rows)
        frame = steer.dose_response()
        curves[label] = {col: [float(v) for v in frame[col]] for col in frame.columns
                         if np.issubdtype(frame[col].dtype, np.number)}
    record.results = results
    record.figure_data["dose_response"] = curves


RUNNERS: dict[str, Callable[[AnalysisRecord, ConceptModel, ConceptModel | None, Suite, bool], None]] = {
    "probe": run_probe,
    "clustering": run_clustering,
    "relations": run_relations,
    "analogies": run_analogies,
    "proximity": run_proximity,
    "aggregation": run_aggregation,
    "steering": run_steering,
}


# ----------------------------------------------------------------------------------------------- the run
def _tag(results: ResultSet, spec: AnalysisSpec) -> ResultSet:
    """Prefix ids with the analysis id, set the claim and record the analysis in ``extra``."""
    return ResultSet(
        r.replace(test_id=f"{spec.id}/{r.test_id}", claim=spec.claim,
                  extra={**dict(r.extra), "analysis": spec.id, "kind": spec.kind})
        for r in results
    )


def correct_family(results: ResultSet, method: str, alpha: float) -> ResultSet:
    """Correct every test of the run together; sanity checks are kept, flagged, and left out of the family."""
    family = ResultSet(r for r in results if not is_sanity_check(r))
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
            draws = r.extra.get("n_permutations") or r.extra.get("n_placebo")
            analysis = str(r.extra.get("analysis"))
            if isinstance(draws, int) and 1.0 / (draws + 1) > floor_needed and analysis not in flagged:
                flagged.add(analysis)
                notes.append(f"{analysis}: its smallest attainable p-value is 1/({draws}+1) = {1 / (draws + 1):.2g}, "
                             f"above alpha/m = {floor_needed:.2g} for the {len(family)} tests of this run, so none "
                             "of its tests can be significant after correction (more permutations or placebos "
                             "would be needed); its verdict cannot be 'supported' in this run.")
    seen: set[str] = set()
    for r in results:
        tok = r.extra.get("tokenization")
        key = f"{r.extra.get('analysis')}"
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
) -> RunOutcome:
    """Execute every analysis of ``suite`` (already adjusted with :meth:`Suite.for_run`) and judge the claims.

    ``remote=True`` runs the model's traces on NDIF (a Hub id; ``"local"`` is the in-process dry run): only
    the activation slices and weight rows an analysis needs are downloaded, whole matrices once (see
    docs/REMOTE.md). ``twin`` chooses the untrained control: ``"config"`` re-initialises the model's own
    architecture here (it needs only the config, so this works for a remote model that fits this machine's
    memory), ``"none"`` runs without it (claims whose rule beats the twin cannot then be supported), and any
    other value names a model whose untrained version stands in (a smaller model of the same family).
    """
    import conceptspace
    from conceptspace.models._load import load_model

    t0 = time.perf_counter()
    _log(f"conceptspace run: suite {suite.name} on {suite.model} (seed {suite.seed}{', quick' if quick else ''})",
         progress)
    model = load_model(suite.model, device=device, remote=remote)
    twin_model = build_twin(model, twin, suite.twin_seed, device)
    t_model = time.perf_counter() - t0
    quick_items = suite.quick_settings.get("max_items") if quick else None
    records = [AnalysisRecord(spec, spec.resolved(quick, quick_items)) for spec in suite.analyses]
    for number, record in enumerate(records, start=1):
        spec = record.spec
        _log(f"[{number}/{len(records)}] {spec.claim} {spec.id}: {spec.kind}", progress)
        start = time.perf_counter()
        bytes_before = model.downloaded_bytes
        try:
            RUNNERS[spec.kind](record, model, twin_model, suite, progress)
            record.results = _tag(record.results, spec)
            record.status = "ok" if len(record.results) else "failed"
            if not len(record.results):
                record.reason = "the analysis returned no tests"
        except ImportError as error:
            record.status, record.reason = "not run", f"analysis module not available: {error}"
        except Exception as error:
            record.status, record.reason = "failed", f"{type(error).__name__}: {error}"
            if progress:
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
    model_record = {**model.describe(), "package": f"conceptspace {conceptspace.__version__}"}
    return RunOutcome(
        suite=suite, quick=quick, model=model_record, twin=_twin_record(twin_model, twin),
        records=records, results=corrected, verdicts=verdicts, timings=timings,
        caveats=_twin_caveats(twin_model, twin, model) + _caveats(records, corrected),
    )


def build_twin(model: ConceptModel, choice: str, seed: int, device: str | None = None) -> ConceptModel | None:
    """The untrained control for ``model``: ``"config"`` (its own architecture), ``"none"``, or a model name."""
    from conceptspace.models._load import load_model

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


def package_versions() -> dict[str, str]:
    """Versions of the packages that produce the numbers (for results.json)."""
    from importlib import metadata

    out = {}
    for name in ("conceptspace", "torch", "transformers", "nnsight", "numpy", "scipy", "scikit-learn",
                 "statsmodels", "pandas", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "conceptspace":
                import conceptspace

                out[name] = conceptspace.__version__
    import platform

    out["python"] = platform.python_version()
    return out


def results_document(outcome: RunOutcome) -> dict[str, Any]:
    """The results.json document (schema in docs/RESULTS_SCHEMA.md)."""
    return {
        "schema": "conceptspace.stats._results",
        "schema_version": RESULTS_SCHEMA_VERSION,
        "model": outcome.model,
        "twin": outcome.twin,
        "suite": outcome.suite.to_dict(),
        "quick": outcome.quick,
        "seed": outcome.suite.seed,
        "packages": package_versions(),
        "timings": outcome.timings,
        "analyses": [
            {"id": r.spec.id, "claim": r.spec.claim, "kind": r.spec.kind, "status": r.status, "reason": r.reason,
             "params": r.params, "n_tests": len(r.results)}
            for r in outcome.records
        ],
        "tests": [_test_record(r) for r in outcome.results],
        "verdicts": [v.to_dict() for v in outcome.verdicts],
        "caveats": outcome.caveats,
    }


def _test_record(r: TestResult) -> dict[str, Any]:
    d = r.to_dict()
    return {
        "id": d["test_id"], "claim": d["claim"], "dataset": d["dataset"], "layer": d["layer"],
        "position": d["position"], "method": d["method"], "control": d["control"],
        "statistic_name": d["statistic_name"], "statistic": d["statistic"],
        "effect_size_name": d["effect_size_name"], "effect_size": d["effect_size"], "ci_low": d["ci_low"],
        "ci_high": d["ci_high"], "p": d["p_value"], "p_adjusted": d["p_adjusted"], "significant": d["significant"],
        "n": d["n"], "n_groups": d["n_groups"], "correction": d["correction"], "alpha": d["alpha"],
        "sanity_check": is_sanity_check(r), "extra": d["extra"],
    }
