"""How a geometry kind runs one statistic on the model and on its controls, and reports each control once.

Why here: the four geometry kinds (clustering, relations, analogies, RSA) share the shape of a run. On the
trained model every site's rows share one null stream, drawn sequentially until the primary row's decision is
settled (the other rows ride along and are exploratory). Each control model (untrained twins of several seeds,
the spectrum-matched twin) gets the same tests on the same numbered permutations and bootstrap resamples, with
a fixed number of draws (controls never enter the correction, so there is nothing to settle). The twins of
several seeds are reported as ONE ``untrained`` test per row: its statistic and effect are the means over
seeds, its p-value compares that mean with the mean of the seeds' nulls permutation by permutation (the same
permutation for every seed, so this is itself an exact permutation test of the mean), and its CI is the
two-level bootstrap (seeds, then items) of :func:`~conceptspace.stats.seed_mean_replicates`; the per-seed
effects are listed in ``extra["per_seed"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from conceptspace.analyses.geometry._nulls import NullRows, interval, stack_rows
from conceptspace.models import ConceptModel
from conceptspace.stats._paired import seed_mean_replicates
from conceptspace.stats._results import SPECTRUM_MATCHED, TRAINED, UNTRAINED, ResultSet, TestKey, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, mc_interval, null_extra, sequential_null

#: (results, replicates in the same order) of one site's rows
SiteTests = tuple[list[TestResult], list[np.ndarray]]
#: per site: its rows, and how rows and their draws become tests
SiteBuild = dict[str, tuple[NullRows, Callable[[NullRows, SequentialNull], SiteTests]]]


@dataclass
class GeometryOutput:
    """A geometry run: its tests and the effect replicates (by key) of the tests that have counterparts."""

    results: ResultSet
    replicates: dict[TestKey, np.ndarray] = field(default_factory=dict)


def slice_null(out: SequentialNull, rows: slice) -> SequentialNull:
    """The draws of some rows of a shared stream (the decision, draws and plan stay the stream's)."""
    return dataclasses.replace(out, observed=out.observed[rows], null=out.null[rows], exceed=out.exceed[rows],
                               p_value=out.p_value[rows], mc_low=out.mc_low[rows], mc_high=out.mc_high[rows])


def shared_draws(per_site: dict[str, NullRows], plan: SequentialPlan,
                 decide: tuple[str, int] | None) -> dict[str, SequentialNull]:
    """Draw every site's rows together (one stream); ``decide``: (site, row) of the primary test, or None (a
    control: exactly ``plan.start`` draws)."""
    sites = list(per_site)
    stacked = stack_rows([per_site[s] for s in sites])
    bounds, start = {}, 0
    for s in sites:
        bounds[s] = slice(start, start + per_site[s].observed.size)
        start += per_site[s].observed.size
    if decide is None:
        plan, chosen = SequentialPlan.fixed(plan.start), []
    else:
        chosen = [bounds[decide[0]].start + decide[1]]
    out = sequential_null(stacked.draw, stacked.observed, plan, decide=chosen)
    return {s: slice_null(out, bounds[s]) for s in sites}


def mean_over_seeds(per_seed: Sequence[SiteTests], nulls: Sequence[SequentialNull], twin_seeds: Sequence[int],
                    seed: int) -> SiteTests:
    """ONE untrained test per row from the twins of several seeds (see the module docstring)."""
    first_results = per_seed[0][0]
    if len(per_seed) == 1:
        results = [r.replace(extra={**dict(r.extra), "per_seed": [r.effect_size], "twin_seeds": list(twin_seeds)})
                   for r in first_results]
        return results, [np.asarray(reps)[None, :] for reps in per_seed[0][1]]
    mean_null = np.mean([n.null for n in nulls], axis=0)  # (rows, B): permutation b of every seed, averaged
    out_results, out_reps = [], []
    for i, first in enumerate(first_results):
        statistic = float(np.mean([tests[0][i].statistic for tests in per_seed]))
        effects = [tests[0][i].effect_size for tests in per_seed]
        reps = np.stack([np.asarray(tests[1][i], dtype=np.float64) for tests in per_seed])  # (S, R)
        lo, hi = interval(seed_mean_replicates(reps, seed))
        null_i = mean_null[i]
        finite = null_i[np.isfinite(null_i)]
        exceed = int(np.sum(finite >= statistic - 1e-10 * max(1.0, abs(statistic))))
        low, high = mc_interval(exceed, finite.size, nulls[0].plan.confidence)
        record = {**null_extra(nulls[0], i), "null_mean": float(finite.mean()),
                  "null_sd": float(finite.std(ddof=1)) if finite.size > 1 else None,
                  "p_mc_low": float(low), "p_mc_high": float(high)}
        p = (1.0 + exceed) / (finite.size + 1.0) if np.isfinite(first.p_value) else float("nan")
        effect = float(np.mean(effects))
        out_results.append(first.replace(
            statistic=statistic, effect_size=effect, ci_low=lo, ci_high=hi, p_value=p,
            extra={**dict(first.extra), **(record if np.isfinite(first.p_value) else {}),
                   "per_seed": [float(e) for e in effects], "twin_seeds": list(twin_seeds),
                   "ci": "two-level bootstrap: twin seeds, then items"}))
        out_reps.append(reps)
    return out_results, out_reps


def run_models(
    models: Sequence[tuple[str | None, int, ConceptModel]],
    sites: Sequence[str],
    tests_of: Callable[[ConceptModel, str | None], SiteBuild],
    plan: SequentialPlan,
    decide: tuple[str, int],
    seed: int,
) -> GeometryOutput:
    """Run ``tests_of(model, control)`` (per site: its rows and how to turn rows and draws into tests) on the
    trained model (control None, sequential, deciding on ``decide``) and on each control model, and report one
    untrained counterpart over the twin seeds and one spectrum-matched counterpart."""
    results: list[TestResult] = []
    replicates: dict[TestKey, np.ndarray] = {}
    twins: list[tuple[SiteTests, SequentialNull]] = []
    twin_seeds: list[int] = []
    for control, model_seed, model in models:
        built = tests_of(model, control)
        draws = shared_draws({s: built[s][0] for s in sites}, plan, decide if control is None else None)
        for site in sites:
            rows, finish = built[site]
            tests, reps = finish(rows, draws[site])
            if control == UNTRAINED:
                twins.append(((tests, reps), draws[site]))
                continue
            results += tests
            replicates.update({t.key: r for t, r in zip(tests, reps, strict=True)
                               if control in (None, SPECTRUM_MATCHED)})
        if control == UNTRAINED:
            twin_seeds.append(model_seed)
    if twins:
        per_site = len(sites)
        for k in range(per_site):
            chunk = twins[k::per_site]
            tests, reps = mean_over_seeds([c[0] for c in chunk], [c[1] for c in chunk], twin_seeds, seed)
            results += tests
            replicates.update({t.key: r for t, r in zip(tests, reps, strict=True)})
    return GeometryOutput(ResultSet(results), replicates)


def primary_replicates(results: ResultSet, replicates: dict[TestKey, np.ndarray]) -> dict[TestKey, np.ndarray]:
    """The replicates the runner pairs: the primary test's and those of its counterparts (the same key with a
    control: untrained, spectrum_matched, a baseline), and no others."""
    primary = [r.key for r in results if r.extra.get("role") == "primary"]
    if not primary:
        return {}
    base = primary[0]
    return {k: v for k, v in replicates.items()
            if k.replace(control=None, model=TRAINED) == base and np.isfinite(np.asarray(v)).any()}
