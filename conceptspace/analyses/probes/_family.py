"""One probe analysis as one statistical family: the task and every control share folds, draws and resamples.

Why a family. A probe result is read against its controls (control task, untrained twins, spectrum-matched
twin, lexical baseline) and across layers, so every row is computed the same way on the same randomness:

* **Folds**: the task's grouped folds, reused by every arm (the control task too when they hold its classes).
* **Null draws**: one sequential Monte Carlo test (:func:`conceptspace.stats.sequential_null`) whose rows are
  every arm's layers. Arms with the same labels get the same permutations (batch ``[seed, offset]``); the
  number drawn is decided on the primary row alone (the one pre-declared test), the others ride along.
  Every row reports ``effect = statistic - null mean`` (R^2's null mean is far below 0; balanced accuracy's
  sits a little under 1/K under grouped CV), the null's mean and SD, and its Monte Carlo interval.
* **Resamples**: the refit bootstrap (:mod:`conceptspace.stats._refit_bootstrap`) with one seed, so every
  arm's replicate b is drawn on the same group weights: differences of replicates are paired bootstraps of
  differences, which the runner turns into "model beats control" intervals where no better one is given.
* **Paired nested CV**: on the main arm's nested-CV rows, every control is fitted on the same repeated outer and
  inner folds as the task (:func:`~conceptspace.analyses.probes._ncv_interval.nested_cv_errors`), which gives
  the difference "task minus control" its nested-CV interval (``extra["paired"]``, ``method = "nested_cv"``), the
  difference of effects (each score minus its null mean, the null means held fixed). Twin seeds are one averaged
  contrast with the seeds' spread added (``seed_sd^2 / S``). The runner keeps it over the bootstrap's paired
  interval, which errs wide from about 100 groups (docs/STATISTICS.md).
* **Paired signal world**: on the main arm's R^2 rows that have a signal world, every control that scores the
  same targets on the task's folds gets its own world drawn with the task's permutations
  (:class:`~conceptspace.analyses.probes._signal_world.PairedWorld`), which gives "task minus control" its
  interval (``extra["paired"]``, ``method = "signal_world"``; the same difference of effects, twin seeds as
  above). The runner keeps it over the bootstrap's paired interval, which covered 0 in 1.000 of pure-noise data
  sets for R^2 (the world: 0.940-0.953).
* **The task's own interval**: where the score is a mean of per-item terms (accuracy, balanced accuracy), the
  main arm's reported CI is ``centre - null mean +/- z * SE``, with the nested-CV standard error and centre (the
  mean of its repeats' CV scores; :mod:`conceptspace.analyses.probes._ncv_interval`), which covers the expected
  CV score at the nominal rate where the refit bootstrap errs wide; the bootstrap's interval stays in
  ``extra["bootstrap_ci"]`` and its replicates still pair the task with its controls. For R^2 it is the signal
  world's basic interval (:mod:`conceptspace.analyses.probes._signal_world`: the task's CV re-run on targets that
  keep the estimated signal and exchange the rest as the null does), where the targets suit it (at least 100
  groups for a nested-penalty probe, 40 for a fixed penalty; no heavy tails); the controls' own rows, and R^2
  elsewhere, keep the bootstrap interval.
* **Max-T**: the task's layers are exploratory around the primary one; their Westfall-Young single-step
  max-T adjusted p (the null of the largest standardised score over layers, from the same draws) is in
  ``extra["p_maxt"]``, so scanning layers cannot manufacture a result.
* **Seeds**: untrained twins of several seeds are separate arms on the same draws; they are reported as one
  ``untrained`` row per site (statistic and effect = mean over seeds, the p-value of that mean against the
  mean of the seeds' nulls, which is a valid permutation null because the draws are shared, and (S, B)
  replicates for the two-level bootstrap).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import norm

from conceptspace.analyses.probes._cv import CVResult, _depth_extra, _folds_cover_classes, cross_validate_layers
from conceptspace.analyses.probes._ncv_interval import (
    DECOMPOSABLE_SCORES,
    DEFAULT_REPEATS,
    NestedCVError,
    nested_cv_errors,
)
from conceptspace.analyses.probes._nested import check_grid, is_nested, nested_cross_validate, nested_null_draws
from conceptspace.analyses.probes._signal_world import (
    DEFAULT_WORLD_DRAWS,
    PairedWorld,
    SignalWorld,
    signal_world,
    world_unsuited,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats import (
    TRAINED,
    SequentialNull,
    SequentialPlan,
    TestKey,
    TestResult,
    exceedances,
    mc_interval,
    null_extra,
    percentile_intervals,
    seed_mean_replicates,
    sequential_null,
)
from conceptspace.stats._bootstrap import bootstrap_cv_scores
from conceptspace.stats._folds import Fold
from conceptspace.stats._permutation import Scheme, null_draws
from conceptspace.stats._refit_bootstrap import RefitBootstrap, has_weighted_path, refit_bootstrap
from conceptspace.stats._scoring import chance_level
from conceptspace.utils.validation import check_features, check_groups

_BOOTSTRAP_NOTE = {True: "refit: grouped bootstrap, CV re-dealt and refitted per replicate",
                   False: "fixed: grouped bootstrap of the out-of-fold outputs (no refit variance)"}
#: controls reported on their own model (the TestKey model equals the control name)
MODEL_CONTROLS = ("untrained", "spectrum_matched")


@dataclass(frozen=True)
class Arm:
    """One block of rows of the family: features (L, n, d) and labels probed at ``sites``.

    ``control`` is None for the task, else the control's name; ``seed`` tells twin seeds apart (arms with the
    same control and different seeds are averaged into one reported row per site); ``baseline`` marks a
    reference baseline (lexical) rather than a control.
    """

    control: str | None
    X: np.ndarray
    y: np.ndarray
    sites: tuple[str, ...]
    seed: int = 0
    baseline: bool = False
    note: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArmResult:
    """An arm after CV, the shared null and the bootstrap: rows ``rows`` of the family's null matrix."""

    arm: Arm
    cv: CVResult
    rows: slice
    boot: RefitBootstrap
    scheme: str
    method: str
    #: per row: the nested-CV standard error, its inflation over the naive SE and the repeats (NaN / 0: not used)
    ncv_se: np.ndarray | None = None
    ncv_inflation: np.ndarray | None = None
    ncv_centre: np.ndarray | None = None
    ncv_repeats: int = 0
    ncv_skipped: str | None = None
    #: per control: the nested-CV error of the paired difference task - control on the main arm's rows (NaN where
    #: not estimated), and the controls whose paired estimate was left out, with the reason
    ncv_paired: dict[str, NestedCVError] = field(default_factory=dict)
    ncv_paired_skipped: dict[str, str] = field(default_factory=dict)
    #: per row: the signal world of an R^2 score (None where not drawn; see
    #: :mod:`~conceptspace.analyses.probes._signal_world`)
    worlds: tuple[SignalWorld | None, ...] = ()
    world_skipped: str | None = None
    #: per control: each row's worlds of the control's arms (twin seeds), drawn with the task's permutations (None
    #: where the task has no world), for the paired world of "task minus control"; and the controls left out, why
    paired_worlds: dict[str, tuple[tuple[SignalWorld, ...] | None, ...]] = field(default_factory=dict)
    paired_world_skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyOutput:
    """The family's results (one per reported row) and the effect replicates keyed by test."""

    results: list[TestResult]
    replicates: dict[TestKey, np.ndarray]
    null: SequentialNull
    arms: list[ArmResult]


def probe_family(
    probe: Any,
    arms: Sequence[Arm],
    groups: Sequence[Hashable] | np.ndarray | None,
    *,
    dataset: str,
    primary: str | None,
    plan: SequentialPlan,
    claim: str | None = None,
    position: str | None = None,
    n_layers: int | None = None,
    n_splits: int = 5,
    scoring: str | None = None,
    scheme: Scheme = "auto",
    n_bootstrap: int = 500,
    seed: int = 0,
    level: float = 0.95,
    test: str = "probe",
    folds: list[Fold] | None = None,
    interval: str = "refit",
    refit_sites: Sequence[str] | None = None,
    score_interval: str = "auto",
    ncv_repeats: int = DEFAULT_REPEATS,
    paired_interval: str = "auto",
    world_draws: int = DEFAULT_WORLD_DRAWS,
) -> FamilyOutput:
    """Probe every arm on shared folds, sequential null draws and bootstrap resamples (see module doc).

    ``arms[0]`` is the main arm (the task; its folds are every arm's, and with control None its rows get the
    max-T adjusted p). ``primary`` is the site of the primary test among its sites (the sequential test decides
    on that row; None decides on every row of the main arm). ``folds`` fixes the main arm's folds.
    ``interval``: ``"refit"`` (the refit bootstrap; any probe, fast for ridge), ``"fixed"`` (out-of-fold
    outputs held fixed: cheap, but without the refit variance it under-covers, see
    :mod:`conceptspace.stats._refit_bootstrap`) or ``"auto"`` (refit where the weighted ridge path makes it
    cheap, fixed otherwise). ``refit_sites``: refit only these sites' rows (and single-row arms such as the
    lexical baseline); the other rows take the fixed-output interval, flagged in ``extra["bootstrap"]``. The
    kind refits the primary site and its counterparts, which is what verdicts and paired differences read:
    a row-space refit costs B x folds x layers Cholesky factorisations of n x n.
    ``score_interval``: the main arm's reported CI: ``"auto"`` (the nested-CV standard error where the score is
    a mean of per-item terms, the signal world's basic interval for R^2 where its targets suit it, on the rows
    of ``refit_sites`` or every row; the bootstrap elsewhere), ``"nested_cv"`` or ``"signal_world"`` (required:
    an error for a score it does not serve; the signal world then at any number of groups) or ``"bootstrap"``;
    ``ncv_repeats`` nested CVs, ``world_draws`` draws of the signal world per row.
    ``paired_interval``: ``"auto"`` gives every main-arm row that has the nested-CV interval the nested-CV
    interval of its paired difference with each control too, and every R^2 row that has a signal world the paired
    world's (``extra["paired"]``, which the runner keeps over the bootstrap's paired replicates; the controls'
    arms are fitted on the same repeated folds, or drawn in their own worlds, so the cost grows with their
    number); ``"bootstrap"`` leaves "beats the control" to the bootstrap's paired replicates.
    """
    if interval not in ("refit", "fixed", "auto"):
        raise InvalidInputError(f"interval must be 'refit', 'fixed' or 'auto'; got {interval!r}")
    if paired_interval not in ("auto", "bootstrap"):
        raise InvalidInputError(f"paired_interval must be 'auto' or 'bootstrap'; got {paired_interval!r}")
    if score_interval not in ("auto", "nested_cv", "signal_world", "bootstrap"):
        raise InvalidInputError(f"score_interval must be 'auto', 'nested_cv', 'signal_world' or 'bootstrap'; got "
                                f"{score_interval!r}")
    if not arms:
        raise InvalidInputError("a probe family needs at least one arm (the task)")
    task = arms[0]
    if primary is not None and primary not in task.sites:
        raise InvalidInputError(f"primary site {primary!r} is not among the probed sites {list(task.sites)}")
    n = task.X.shape[1]
    codes = check_groups(groups, n)
    validate = nested_cross_validate if is_nested(probe) else cross_validate_layers
    task_cv = validate(probe, task.X, task.y, groups, n_splits=n_splits, scoring=scoring, seed=seed,
                                    layers=list(task.sites), n_layers=n_layers, folds=folds)
    folds = list(task_cv.folds)
    cvs, draws, rows, offset = [], [], [], 0
    kept: list[Any] = []
    schemes, methods = [], []
    for arm in arms:
        X = check_features(arm.X, ndim=3)
        if X.shape[1] != n:
            raise InvalidInputError(f"arm {arm.control!r} has {X.shape[1]} items; the task has {n}")
        arm_folds = folds if _folds_cover_classes(folds, arm.y) else None
        try:
            cv = task_cv if arm is task else validate(
                probe, X, arm.y, groups, n_splits=n_splits, scoring=task_cv.scoring, seed=seed, folds=arm_folds,
                layers=list(arm.sites), n_layers=n_layers)
        except InvalidInputError as error:  # a control whose labels admit no valid folds here: left out, and
            warnings.warn(f"{arm.control} control left out: {error}", UserWarning, stacklevel=2)  # said so
            continue
        kept.append(arm)
        draws_of = nested_null_draws if is_nested(probe) else null_draws
        draw, used, method = draws_of(probe, X, arm.y, groups, folds=list(cv.folds), scoring=cv.scoring,
                                      scheme=scheme, seed=seed)
        cvs.append(cv)
        draws.append(draw)
        schemes.append(used)
        methods.append(method)
        rows.append(slice(offset, offset + X.shape[0]))
        offset += X.shape[0]
    arms = kept  # a left-out control has no counterpart: a claim that must beat it cannot be supported
    observed = np.concatenate([cv.scores for cv in cvs])
    decide = [task.sites.index(primary)] if primary is not None else list(range(len(task.sites)))

    def draw_all(start: int, count: int) -> np.ndarray:
        return np.concatenate([d(start, count) for d in draws])

    null = sequential_null(draw_all, observed, plan, decide=decide)
    refit = interval == "refit" or (interval == "auto" and (is_nested(probe) or
                                                            has_weighted_path(probe, task_cv.n_classes)))
    done = [
        ArmResult(arm, cv, r, _bootstrap(probe, arm, cv, groups, refit=refit, n_bootstrap=n_bootstrap, seed=seed,
                                         sites=refit_sites), s, m)
        for arm, cv, r, s, m in zip(arms, cvs, rows, schemes, methods, strict=True)
    ]
    if done[0].arm is task and score_interval in ("auto", "nested_cv"):
        done[0] = _with_nested_cv(probe, done[0], groups, required=score_interval == "nested_cv",
                                  sites=refit_sites, n_splits=len(folds), repeats=ncv_repeats, seed=seed,
                                  controls=done[1:] if paired_interval == "auto" else ())
    if done[0].arm is task and score_interval in ("auto", "signal_world"):
        done[0] = _with_signal_world(probe, done[0], groups, required=score_interval == "signal_world",
                                     sites=refit_sites, seed=seed, n_draws=world_draws,
                                     controls=done[1:] if paired_interval == "auto" else ())
    common: dict[str, Any] = {"dataset": dataset, "claim": claim, "position": position, "n_layers": n_layers,
                              "level": level, "test": test, "n_groups": int(codes.max()) + 1, "seed": seed,
                              "method": type(probe).__name__}
    if is_nested(probe):
        common["penalty_grid"] = list(check_grid(probe.penalties, probe.inner_splits))
        common["inner_splits"] = int(probe.inner_splits)
    maxt = _max_t(null, done[0].rows)
    results: list[TestResult] = []
    replicates: dict[TestKey, np.ndarray] = {}
    by_control: dict[str | None, list[ArmResult]] = {}
    for a in done:
        by_control.setdefault(a.arm.control, []).append(a)
    for control, members in by_control.items():
        for i, site in enumerate(members[0].arm.sites):
            result, reps = _row(members, i, site, null, common)
            if control is None and control == task.control:
                paired = {**_paired_nested_cv(done[0], by_control, i, null, common["level"]),
                          **_paired_world(done[0], by_control, i, null, common["level"])}
                skipped = dict(done[0].ncv_paired_skipped) if done[0].ncv_se is not None and np.isfinite(
                    done[0].ncv_se[i]) else {}
                world_skipped = dict(done[0].paired_world_skipped) if done[0].worlds and \
                    done[0].worlds[i] is not None else {}
                result = result.replace(extra={**dict(result.extra), "p_maxt": float(maxt[i]),
                                               **({"paired": paired} if paired else {}),
                                               **({"paired_nested_cv_skipped": skipped} if skipped else {}),
                                               **({"paired_signal_world_skipped": world_skipped}
                                                  if world_skipped else {})})
            results.append(result)
            replicates[result.key] = reps
    return FamilyOutput(results, replicates, null, done)


def _bootstrap(probe: Any, arm: Arm, cv: CVResult, groups: Sequence[Hashable] | np.ndarray | None, *,
               refit: bool, n_bootstrap: int, seed: int, sites: Sequence[str] | None) -> RefitBootstrap:
    """The arm's bootstrap replicates (L, B): refitted (see module doc) on the rows of ``sites`` (all rows when
    None, and always for a single-row arm), from the fixed out-of-fold outputs elsewhere."""
    fixed = bootstrap_cv_scores(cv.scoring, cv.truth, cv.outputs, cv.fold_id, groups, n_classes=cv.n_classes,
                                n_bootstrap=n_bootstrap, seed=seed)
    rows = np.zeros(len(arm.sites), dtype=bool)
    if refit:
        rows[:] = sites is None or len(arm.sites) == 1
        if sites is not None:
            rows |= np.isin(np.asarray(arm.sites), list(sites))
    if not rows.any():
        return RefitBootstrap(raw=fixed, centred=fixed, refitted=rows)
    X = check_features(arm.X, ndim=3)[rows]
    selection: dict[str, Any] = {}
    if is_nested(probe):  # the weighted ridge path, re-selecting the penalty inside every replicate
        grid = check_grid(probe.penalties, probe.inner_splits)
        probe, selection = probe.base(grid[0]), {"penalties": grid, "inner_splits": probe.inner_splits}
    boot = refit_bootstrap(probe, X, arm.y, groups, observed=cv.scores[rows], scoring=cv.scoring, task=cv.task,
                           n_splits=len(cv.folds), n_bootstrap=n_bootstrap, seed=seed, **selection)
    raw, centred = fixed.copy(), fixed.copy()
    raw[rows], centred[rows] = boot.raw, boot.centred
    return RefitBootstrap(raw=raw, centred=centred, refitted=rows)


#: What is measured about the refit bootstrap's interval where a primary row reports it (docs/STATISTICS.md); the
#: run's caveats repeat it, so a reader knows how far to trust that interval's width.
R2_BOOTSTRAP_CALIBRATION = (
    "its interval is the refit bootstrap's ({why}), which errs wide for R^2 (conservative): over eleven simulated "
    "designs its 95% interval covered the truth in 0.93-1.00 of data sets with 1.1-2.3x the width needed (pure "
    "noise: 0 covered in 0.95-1.00; heavy-tailed targets: close to nominal; docs/STATISTICS.md)")
CLASSIFICATION_BOOTSTRAP_CALIBRATION = (
    "its interval is the refit bootstrap's, not the nested-CV one ({why}); the bootstrap covered the expected score "
    "in 0.947 of 300 planted data sets at 40 groups and in 0.990 at 100 (wide from about 100 groups; "
    "docs/STATISTICS.md)")


def _with_nested_cv(probe: Any, done: ArmResult, groups: Sequence[Hashable] | np.ndarray | None, *, required: bool,
                    sites: Sequence[str] | None, n_splits: int, repeats: int, seed: int,
                    controls: Sequence[ArmResult] = ()) -> ArmResult:
    """The main arm with the nested-CV standard error of its score on the rows of ``sites`` (every row when None),
    where the score is a mean of per-item terms, and of its paired difference with each of ``controls`` (grouped
    by control name: twin seeds form one averaged contrast); unchanged otherwise (an error when ``required``)."""
    cv = done.cv
    if cv.task != "classification" or cv.scoring not in DECOMPOSABLE_SCORES:
        if required:
            raise InvalidInputError(f"score_interval='nested_cv' needs a per-item score {DECOMPOSABLE_SCORES}; "
                                    f"this family scores {cv.scoring!r}")
        return done
    rows = np.ones(len(done.arm.sites), dtype=bool)
    if sites is not None and len(done.arm.sites) > 1:
        rows = np.isin(np.asarray(done.arm.sites), list(sites))
    if not rows.any():
        return done
    X = check_features(done.arm.X, ndim=3)[rows]
    arms, unmatched = _paired_arms(controls, [s for s, r in zip(done.arm.sites, rows, strict=True) if r])
    try:
        errors = nested_cv_errors(probe, X, done.arm.y, groups, scoring=cv.scoring, n_splits=n_splits,
                                  repeats=repeats, seed=seed, controls=arms)
    except InvalidInputError as why:  # too few groups of a class: the bootstrap interval, and the reason, stay
        if required:
            raise
        return replace(done, ncv_skipped=str(why))
    error = errors.task
    se, inflation, centre = (np.full(rows.size, np.nan) for _ in range(3))
    se[rows], inflation[rows], centre[rows] = error.se, error.inflation, error.centre
    return replace(done, ncv_se=se, ncv_inflation=inflation, ncv_centre=centre, ncv_repeats=repeats,
                   ncv_paired={name: _on_rows(e, rows) for name, e in errors.paired.items()},
                   ncv_paired_skipped={**unmatched, **errors.skipped})


def _with_signal_world(probe: Any, done: ArmResult, groups: Sequence[Hashable] | np.ndarray | None, *,
                       required: bool, sites: Sequence[str] | None, seed: int, n_draws: int,
                       controls: Sequence[ArmResult] = ()) -> ArmResult:
    """The main arm with the signal world of its R^2 score on the rows of ``sites`` (every row when None) where
    :func:`~conceptspace.analyses.probes._signal_world.world_unsuited` finds nothing against it (with the reason
    kept otherwise), or whatever it finds when ``required``; unchanged for another score (an error when
    ``required``). On those rows every control in ``controls`` that scores the same targets on the task's folds
    gets its own world, drawn with the task's permutations (the paired world of "task minus control",
    :class:`~conceptspace.analyses.probes._signal_world.PairedWorld`)."""
    cv = done.cv
    if cv.task != "regression" or cv.scoring != "r2" or cv.outputs.ndim != 2:
        if required:
            raise InvalidInputError(f"score_interval='signal_world' needs a single-target R^2 score; this family "
                                    f"scores {cv.scoring!r} on outputs of shape {cv.outputs.shape}")
        return done
    unsuited = world_unsuited(done.arm.y, groups, selects_penalty=is_nested(probe))
    if unsuited is not None and not required:
        return replace(done, world_skipped=unsuited)
    rows = np.ones(len(done.arm.sites), dtype=bool)
    if sites is not None and len(done.arm.sites) > 1:
        rows = np.isin(np.asarray(done.arm.sites), list(sites))
    if not rows.any():
        return done
    scheme: Scheme = "group" if done.scheme == "group" else "within" if done.scheme == "within" else "rows"
    drawn = iter(signal_world(probe, check_features(done.arm.X, ndim=3)[rows], done.arm.y, cv.outputs[rows],
                              groups, folds=list(cv.folds), scoring=cv.scoring, seed=seed, scheme=scheme,
                              n_draws=n_draws))
    worlds = tuple(next(drawn) if r else None for r in rows)
    paired, skipped = _control_worlds(probe, done, controls, rows, groups, seed=seed, scheme=scheme,
                                      n_draws=n_draws)
    return replace(done, worlds=worlds, paired_worlds=paired, paired_world_skipped=skipped)


def _control_worlds(probe: Any, done: ArmResult, controls: Sequence[ArmResult], rows: np.ndarray,
                    groups: Sequence[Hashable] | np.ndarray | None, *, seed: int, scheme: Scheme, n_draws: int
                    ) -> tuple[dict[str, tuple[tuple[SignalWorld, ...] | None, ...]], dict[str, str]]:
    """Per control name, each of the task's ``rows``' worlds of the control's arms (twin seeds), drawn with the
    task's seed, hence its permutations and bootstrap weights; a single-row arm (the lexical baseline) stands
    beside every row. A control is left out, with the reason, where it scores other targets or on other folds
    (a paired world needs the targets both sides share) or was not probed at the task's sites."""
    task_folds = [te.tolist() for _, te in done.cv.folds]
    wanted = [s for s, r in zip(done.arm.sites, rows, strict=True) if r]
    per_name: dict[str, list[list[SignalWorld] | None]] = {}
    skipped: dict[str, str] = {}
    for other in controls:
        name = other.arm.control
        if name is None or name in skipped:
            continue
        if not np.array_equal(np.asarray(other.arm.y), np.asarray(done.arm.y)):
            skipped[name] = f"{name} scores other targets than the task, so the two sides share no targets"
        elif [te.tolist() for _, te in other.cv.folds] != task_folds:
            skipped[name] = f"{name} was cross-validated on other folds than the task"
        elif len(other.arm.sites) > 1 and not all(s in other.arm.sites for s in wanted):
            skipped[name] = f"{name} was not probed at the task's sites"
        if name in skipped:
            per_name.pop(name, None)
            continue
        index = [_row_beside(other.arm, s) for s in wanted]
        X = check_features(other.arm.X, ndim=3)
        unique = sorted(set(index))
        drawn = dict(zip(unique, signal_world(probe, X[unique], other.arm.y, other.cv.outputs[unique], groups,
                                              folds=list(other.cv.folds), scoring=other.cv.scoring, seed=seed,
                                              scheme=scheme, n_draws=n_draws), strict=True))
        mine = iter(drawn[k] for k in index)
        arms = per_name.setdefault(name, [[] if r else None for r in rows])
        for slot in arms:
            if slot is not None:
                slot.append(next(mine))
    return {name: tuple(None if slot is None else tuple(slot) for slot in arms)
            for name, arms in per_name.items()}, skipped


def _paired_world(task: ArmResult, by_control: dict[str | None, list[ArmResult]], i: int, null: SequentialNull,
                  level: float) -> dict[str, dict[str, Any]]:
    """Row ``i`` of the main arm: per control with worlds there, the paired world's basic interval of the
    difference of effects (task score - its null mean) - (control score - its null mean), the null means held
    fixed; twin seeds are one contrast (their mean), with their spread added."""
    if not task.worlds or task.worlds[i] is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    site = task.arm.sites[i]
    task_effect = float(task.cv.scores[i] - null.null[task.rows][i].mean())
    for name, per_row in task.paired_worlds.items():
        worlds = per_row[i]
        if worlds is None:
            continue
        members = by_control.get(name, [])
        at = [_row_beside(m.arm, site) for m in members]
        effects = np.array([m.cv.scores[k] - null.null[m.rows][k].mean() for m, k in zip(members, at, strict=True)])
        scores = np.array([m.cv.scores[k] for m, k in zip(members, at, strict=True)])
        seed_sd = float(np.std(scores, ddof=1)) if scores.size > 1 else 0.0
        paired = PairedWorld(task=task.worlds[i], controls=worlds, seed_sd=seed_sd)  # type: ignore[arg-type]
        difference = task_effect - float(effects.mean())
        low, high = paired.interval(difference, level)
        out[name] = {"difference": difference, "ci_low": low, "ci_high": high, "level": level,
                     "method": "signal_world", "world_draws": int(task.worlds[i].scores.size),  # type: ignore[union-attr]
                     "n_seeds": paired.n_seeds, "seed_sd": seed_sd if scores.size > 1 else None}
    return out


def _row_beside(arm: Arm, site: str) -> int:
    """The row of ``arm`` that stands beside the task's ``site``: its own row there, or its only row (a single-row
    arm such as the lexical baseline stands beside every site)."""
    return 0 if len(arm.sites) == 1 else arm.sites.index(site)


def _paired_arms(controls: Sequence[ArmResult], sites: list[str]) -> tuple[dict[str, list[tuple[np.ndarray,
                                                                                                  np.ndarray]]],
                                                                        dict[str, str]]:
    """Each control's arms (twin seeds together) as (X rows matching ``sites``, labels): a single-row arm (the
    lexical baseline) stands beside every site, a multi-row arm needs the same sites; the unmatched, with why."""
    arms: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    unmatched: dict[str, str] = {}
    for other in controls:
        arm = other.arm
        if arm.control is None:
            continue
        if len(arm.sites) == 1:
            index = [0] * len(sites)
        elif all(s in arm.sites for s in sites):
            index = [arm.sites.index(s) for s in sites]
        else:
            unmatched[arm.control] = f"{arm.control} was not probed at {sites}"
            continue
        arms.setdefault(arm.control, []).append((check_features(arm.X, ndim=3)[index], arm.y))
    return {name: a for name, a in arms.items() if name not in unmatched}, unmatched


def _on_rows(error: NestedCVError, rows: np.ndarray) -> NestedCVError:
    """``error`` (estimated on the rows ``rows`` of the arm) spread over every row, NaN elsewhere."""
    def spread(values: np.ndarray) -> np.ndarray:
        out = np.full((*values.shape[:-1], rows.size), np.nan)
        out[..., rows] = values
        return out
    return NestedCVError(se=spread(error.se), inflation=spread(error.inflation),
                         inflation_raw=spread(error.inflation_raw), centre=spread(error.centre),
                         repeats=error.repeats,
                         control_centres=None if error.control_centres is None else spread(error.control_centres))


def _paired_nested_cv(task: ArmResult, by_control: dict[str | None, list[ArmResult]], i: int,
                      null: SequentialNull, level: float) -> dict[str, dict[str, Any]]:
    """Row ``i`` of the main arm: per control, the nested-CV interval of the paired difference of effects
    (task score - its null mean) - (control score - its null mean), the null means held fixed.

    The controls' seeds (untrained twins) are fixed arms inside the nested CV; the spread between seeds is added
    as the variance of their mean (``seed_sd^2 / S``), as the two-level bootstrap resamples them."""
    out: dict[str, dict[str, Any]] = {}
    z = float(norm.ppf(0.5 + level / 2))
    task_null = float(null.null[task.rows][i].mean())
    for name, error in task.ncv_paired.items():
        if not np.isfinite(error.se[i]):
            continue
        members = by_control.get(name, [])
        site = task.arm.sites[i]
        control_null = float(np.mean([null.null[m.rows][_row_beside(m.arm, site)]
                                      .mean() for m in members]))
        centres = error.control_centres[:, i] if error.control_centres is not None else np.zeros(1)
        seeds = centres.size
        seed_sd = float(np.std(centres, ddof=1)) if seeds > 1 else 0.0
        se = float(np.sqrt(error.se[i] ** 2 + seed_sd**2 / seeds))
        difference = float(error.centre[i]) - (task_null - control_null)
        out[name] = {"difference": difference, "ci_low": difference - z * se, "ci_high": difference + z * se,
                     "level": level, "method": "nested_cv", "se": se, "ncv_se": float(error.se[i]),
                     "ncv_inflation": float(error.inflation[i]), "repeats": error.repeats, "n_seeds": seeds,
                     "seed_sd": seed_sd if seeds > 1 else None}
    return out


def _row(members: list[ArmResult], i: int, site: str, null: SequentialNull,
         common: dict[str, Any]) -> tuple[TestResult, np.ndarray]:
    """The reported result of site ``i`` of one control (several arms = twin seeds, averaged)."""
    first = members[0]
    arm, cv = first.arm, first.cv
    row_nulls = np.stack([null.null[m.rows][i] for m in members])  # (S, B)
    observed_each = np.array([m.cv.scores[i] for m in members])
    mean_null = row_nulls.mean(axis=0)
    observed = float(observed_each.mean())
    null_mean = float(mean_null.mean())
    null_sd = float(mean_null.std(ddof=1)) if mean_null.size > 1 else float("nan")
    exceed = int(exceedances(np.array([observed]), mean_null[None])[0])
    low, high = mc_interval(np.array([exceed]), null.n_drawn, null.plan.confidence)
    effect_reps = np.stack([m.boot.centred[i] - null.null[m.rows][i].mean() for m in members])  # (S, B)
    lo, hi = percentile_intervals(effect_reps.mean(axis=0) if len(members) == 1 else seed_mean_replicates(effect_reps),
                                  common["level"])
    interval_extra: dict[str, Any] = {"ci_method": "bootstrap"}
    if arm.control is None and cv.scoring == "r2":
        why = first.world_skipped if len(members) == 1 and first.world_skipped else "not drawn for this row"
        interval_extra["ci_calibration"] = R2_BOOTSTRAP_CALIBRATION.format(why=f"no signal-world interval: {why}")
        if len(members) == 1 and first.world_skipped is not None:
            interval_extra["signal_world_skipped"] = first.world_skipped
    if len(members) == 1 and first.ncv_skipped is not None:
        interval_extra["nested_cv_skipped"] = first.ncv_skipped
        interval_extra["ci_calibration"] = CLASSIFICATION_BOOTSTRAP_CALIBRATION.format(why=first.ncv_skipped)
    world = first.worlds[i] if len(members) == 1 and first.worlds else None
    if world is not None:
        interval_extra = {"ci_method": "signal_world", "world_draws": int(world.scores.size),
                          "world_slope": world.slope, "bootstrap_ci": [float(lo), float(hi)]}
        lo, hi = (np.asarray(end) for end in world.interval(observed - null_mean, common["level"]))
    if len(members) == 1 and first.ncv_se is not None and np.isfinite(first.ncv_se[i]):
        z = float(norm.ppf(0.5 + common["level"] / 2))
        centre = float(first.ncv_centre[i]) - null_mean  # type: ignore[index]
        interval_extra = {"ci_method": "nested_cv", "ncv_se": float(first.ncv_se[i]),
                          "ncv_inflation": float(first.ncv_inflation[i]),  # type: ignore[index]
                          "ncv_repeats": first.ncv_repeats, "ncv_centre": centre + null_mean,
                          "bootstrap_ci": [float(lo), float(hi)]}
        lo, hi = centre - z * first.ncv_se[i], centre + z * first.ncv_se[i]
    control = arm.control
    model = control if control in MODEL_CONTROLS else TRAINED
    key = TestKey(test=common["test"], dataset=common["dataset"], method=common["method"], site=site,
                  position=common["position"], control=control, model=model)
    extra: dict[str, Any] = {
        **null_extra(null, first.rows.start + i),
        "null_mean": null_mean,
        "null_sd": null_sd if np.isfinite(null_sd) else None,
        "p_mc_low": float(low[0]),
        "p_mc_high": float(high[0]),
        "chance": chance_level(cv.scoring, cv.n_classes),
        "n_splits": len(cv.folds),
        "permutation_scheme": first.scheme,
        "permutation_method": first.method,
        "n_bootstrap": int(first.boot.centred.shape[1]),
        "bootstrap": _BOOTSTRAP_NOTE[first.boot.refitted is not None and bool(first.boot.refitted[i])],
        "ci_level": common["level"],
        **interval_extra,
        "fold_scores": cv.fold_scores[i].tolist(),
        "seed": common["seed"],
        **_depth_extra(site, common["n_layers"]),
        **arm.note,
    }
    if cv.test_folds_missing_class:
        extra["test_folds_missing_a_class"] = cv.test_folds_missing_class
    if cv.penalties is not None:  # nested CV: the penalty each outer fold chose (each twin seed's, for twins)
        extra["penalties_chosen"] = [m.cv.penalties[i].tolist() for m in members if m.cv.penalties is not None] \
            if len(members) > 1 else cv.penalties[i].tolist()
        extra["penalty_grid"], extra["inner_splits"] = common["penalty_grid"], common["inner_splits"]
    if arm.baseline:
        extra["baseline"] = True
    if len(members) > 1:
        extra["per_seed"] = [{"seed": m.arm.seed, "statistic": float(m.cv.scores[i]),
                              "effect": float(m.cv.scores[i] - null.null[m.rows][i].mean())} for m in members]
    result = TestResult(
        key=key,
        claim=common["claim"],
        statistic_name=cv.scoring,
        statistic=observed,
        effect_size_name=f"{cv.scoring} - permutation null mean",
        effect_size=observed - null_mean,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float((1 + exceed) / (null.n_drawn + 1)),
        n=arm.X.shape[1],
        n_groups=common["n_groups"],
        extra=extra,
    )
    return result, effect_reps[0] if len(members) == 1 else effect_reps


def _max_t(null: SequentialNull, rows: slice) -> np.ndarray:
    """Westfall-Young single-step max-T adjusted p of each task row: how often the largest standardised null
    score over the task's layers reaches the row's standardised observed score (shared draws keep the layers'
    dependence)."""
    draws = null.null[rows]
    mean = draws.mean(axis=1, keepdims=True)
    sd = draws.std(axis=1, ddof=1, keepdims=True) if draws.shape[1] > 1 else np.ones_like(mean)
    sd = np.where(sd > 0, sd, 1.0)
    z_obs = (null.observed[rows][:, None] - mean) / sd
    z_max = ((draws - mean) / sd).max(axis=0)
    exceed = exceedances(z_obs[:, 0], np.broadcast_to(z_max, draws.shape))
    return (1.0 + exceed) / (draws.shape[1] + 1.0)
