"""The geometry kinds' shared null machinery: numbered permutation draws, sequential p-values, matched intervals.

Why one module: clustering, relations, analogies and RSA all test a statistic against a permutation null and
report ``effect = statistic - null mean`` with a CI. Three things must hold for all of them alike:

* **Numbered draws.** Permutation ``i`` depends only on ``(seed, i)`` (:func:`batch_rng`), so
  :func:`~conceptspace.stats.sequential_null` can extend a run in doubling batches and a longer run extends a
  shorter one. Every site, metric and inner product of one model shares the same permutations (rows of one
  :class:`NullRows`), so one stopping decision (the primary row's) serves them all.
* **Intervals that match the p-value.** The statistics here are degenerate U-statistics under the null (mean
  pairwise cosine, the pair-counting ARI, a Mantel correlation): their first-order term vanishes when there is
  no signal, and the plain bootstrap then over-estimates their variance about threefold (measured: a 95% grouped
  bootstrap CI of ``statistic - null mean`` covered 0 in 100 of 100 pure-noise data sets). The bootstrap's
  excess is the same whether or not there is signal (it comes from resampling the noise), so it is measured
  where the truth is known, on the same resamples of a *permuted* data set, and taken off:
  ``var = var_boot(real) - (var_boot(permuted) - var_null)``. The replicates are the bootstrap's deviations
  rescaled to that variance and reflected around the effect (the basic bootstrap; :func:`matched_replicates`),
  ordered by the resamples' ranks so that they stay paired across models that share the resamples, which is
  what the runner's paired differences need. Where that variance is below the null's own (no signal, or a
  bootstrap that cannot see rare events), the deviations are the null's: the CI is then the permutation test
  inverted and excludes 0 exactly when the observed value leaves the null's central 95% (an interval narrower
  than the null's spread would contradict the permutation p-value).
* **One record of the null**: :func:`~conceptspace.stats.null_extra` (draws, Monte Carlo interval of p,
  whether the decision is settled, null mean and SD) on every test that has a null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conceptspace.errors import InvalidInputError
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, null_extra, sequential_null

Draw = Callable[[int, int], np.ndarray]


def batch_rng(seed: int, offset: int, *stream: int) -> np.random.Generator:
    """The generator of the permutations numbered from ``offset`` (``stream`` separates independent uses)."""
    return np.random.default_rng([int(seed), *(int(s) for s in stream), int(offset)])


def numbered(one: Callable[[np.random.Generator], np.ndarray], seed: int, *stream: int) -> Draw:
    """A ``draw(offset, count)`` whose draw ``i`` depends only on ``(seed, stream, i)``: ``one(rng)`` returns the
    (rows,) null statistics of one permutation drawn from ``rng``. Batch sizes then never change the numbers."""

    def draw(offset: int, count: int) -> np.ndarray:
        return np.stack([np.asarray(one(batch_rng(seed, offset + i, *stream)), dtype=np.float64)
                         for i in range(count)], axis=1)

    return draw


@dataclass
class NullRows:
    """Statistics that share one permutation stream: one row per (site, method, metric, ...).

    ``labels``: what each row is (the kind builds its keys from them); ``observed`` (rows,); ``draw(offset,
    count) -> (rows, count)``; ``boot`` (rows, R) replicates of the statistic on grouped bootstrap resamples;
    ``boot_null`` (rows, R) the same resamples of a permuted data set (None: no excess correction).
    """

    labels: list[dict[str, Any]]
    observed: np.ndarray
    draw: Draw
    boot: np.ndarray
    boot_null: np.ndarray | None = None
    extra: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.observed = np.asarray(self.observed, dtype=np.float64).reshape(-1)
        rows = self.observed.shape[0]
        if len(self.labels) != rows or np.shape(self.boot)[0] != rows:
            raise InvalidInputError(f"NullRows: {len(self.labels)} labels, {rows} statistics, "
                                    f"{np.shape(self.boot)[0]} bootstrap rows must agree")
        if not self.extra:
            self.extra = [{} for _ in range(rows)]


def stack_rows(parts: Sequence[NullRows]) -> NullRows:
    """One stream from several (e.g. the sites of one model): rows concatenated, draws taken together."""
    if len(parts) == 1:
        return parts[0]

    def draw(offset: int, count: int) -> np.ndarray:
        return np.concatenate([np.asarray(p.draw(offset, count)).reshape(p.observed.size, count) for p in parts])

    nulls = [p.boot_null for p in parts]
    return NullRows(
        labels=[lab for p in parts for lab in p.labels],
        observed=np.concatenate([p.observed for p in parts]),
        draw=draw,
        boot=np.concatenate([p.boot for p in parts]),
        boot_null=None if any(b is None for b in nulls) else np.concatenate([b for b in nulls if b is not None]),
        extra=[e for p in parts for e in p.extra],
    )


def fixed_or_sequential(rows: NullRows, n_permutations: int, plan: SequentialPlan | None,
                        decide: Sequence[int] | None) -> SequentialNull:
    """The null of every row: ``plan`` (sequential, stopping when the ``decide`` rows are settled) or, without a
    plan, exactly ``n_permutations`` draws (the classical fixed-B test)."""
    if plan is None:
        if n_permutations < 1:
            raise InvalidInputError(f"n_permutations must be >= 1; got {n_permutations}")
        plan = SequentialPlan.fixed(n_permutations)
    return sequential_null(rows.draw, rows.observed, plan, decide=list(decide) if decide is not None else [])


def matched_replicates(effect: float, boot: np.ndarray, boot_null: np.ndarray | None, null: np.ndarray) -> np.ndarray:
    """(R,) replicates of ``effect`` with the bootstrap's spread corrected by its excess on permuted data (see
    the module docstring) and never narrower than the null; centred on the effect (the bias correction)."""
    boot = np.asarray(boot, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    ok = np.isfinite(boot)
    var_null = float(np.var(null, ddof=1)) if null.size > 1 else 0.0
    if ok.sum() < 2:
        return np.full(boot.shape, np.nan)
    centre = float(np.mean(boot[ok]))
    var_boot = max(float(np.var(boot[ok], ddof=1)), 1e-300)
    excess = 0.0
    if boot_null is not None:
        # (m, R) or (R,): m permuted data sets on the same R resamples; the excess is the mean within-set variance
        bn = np.atleast_2d(np.asarray(boot_null, dtype=np.float64))
        within = [float(np.var(r[np.isfinite(r)], ddof=1)) for r in bn if np.isfinite(r).sum() > 1]
        if within:
            excess = float(np.mean(within)) - var_null
    corrected = var_boot - max(excess, 0.0)
    if corrected <= var_null and var_null <= 0.0:
        return np.where(ok, effect, np.nan)
    # Deviations from the effect: the bootstrap's, rescaled to the corrected variance, or, where the null's spread
    # is the larger (no signal, or a bootstrap that cannot see rare events), the null's own, so that the CI then
    # is the permutation test inverted. Either is reflected (the basic bootstrap: a statistic biased or skewed
    # one way on resamples is so the other way as an estimate) and reached through the replicates' ranks, so
    # replicates stay paired, in the same direction, across models that share the resamples.
    deviations = (np.sqrt(corrected / var_boot) * (boot[ok] - centre) if corrected > var_null
                  else null - null.mean())
    u = (_ranks(boot[ok], centre, var_boot) + 0.5) / ok.sum()
    out = np.full(boot.shape, np.nan)
    out[ok] = effect - np.quantile(deviations, 1.0 - u)
    return out


def _ranks(values: np.ndarray, centre: float, variance: float) -> np.ndarray:
    """0-based ranks of ``values``, ties in replicate order, after rounding to a billionth of their SD.

    Why round: resamples that draw the same items give the same statistic in exact arithmetic, but the float sums
    behind it differ in the last bits with the order of the terms (or the thread count, or a faster formula), and
    which of the tied replicates ranks first decides which deviation it gets, and so, once the replicates of
    several twin seeds are averaged replicate by replicate, the control's interval. Measured on C2's untrained
    rows of multi-token words (3-5 pairs per relation, so many resamples repeat): a 1e-15 change in the
    statistic moved CI bounds by up to 0.04. Rounded, ties are exact and broken by replicate order only."""
    grid = np.sqrt(variance) * 1e-9 if variance > 0 else 1.0
    key = np.round((values - centre) / grid)
    return np.argsort(np.argsort(key, kind="stable"), kind="stable")


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the replicates (NaN ignored; NaN when fewer than two are usable)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class RowOutcome:
    """What a row's test reports: effect against the null mean, its matched CI and replicates, and the null."""

    statistic: float
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    replicates: np.ndarray
    extra: dict[str, Any]


def outcomes(rows: NullRows, out: SequentialNull) -> list[RowOutcome]:
    """Per row: ``effect = observed - null mean``, its matched interval, p, and the null record for ``extra``."""
    results = []
    for i in range(rows.observed.size):
        record = null_extra(out, i)
        null_q95 = float(np.nanquantile(out.null[i], 0.95)) if np.isfinite(out.null[i]).any() else None
        effect = float(rows.observed[i] - out.null_mean[i])
        reps = matched_replicates(effect, rows.boot[i], None if rows.boot_null is None else rows.boot_null[i],
                                  out.null[i])
        lo, hi = interval(reps)
        results.append(RowOutcome(float(rows.observed[i]), effect, lo, hi, float(out.p_value[i]), reps,
                                  {**record, "null_q95": null_q95, **rows.extra[i]}))
    return results


def primary_row(labels: Sequence[dict[str, Any]], **match: Any) -> int:
    """Index of the one row whose labels carry every ``match`` value (the primary test's row)."""
    hits = [i for i, lab in enumerate(labels) if all(lab.get(k) == v for k, v in match.items())]
    if len(hits) != 1:
        raise InvalidInputError(f"expected one row matching {match}; found {len(hits)}")
    return hits[0]
