"""Steering dose-response: add alpha * v at a site and measure how the model's next-token preferences move.

Why it is built this way:

* alpha is in units of the site's activation scale (the median norm of the unedited activations at the edited
  positions over the prompts), so one grid means the same strength at every layer: residual norms grow by
  orders of magnitude with depth.
* The outcome is the change of a target score (log P(positive words) - log P(negative words) at the next
  token) relative to the unedited run, per prompt. The dose-response slope is the least-squares slope through
  the origin over the alpha grid, per prompt, averaged over prompts.
* A direction "working" is only evidence if it beats placebos of the same norm at the same site and positions.
  The primary placebos are drawn from the data when the caller gives a source (``placebos``: mass-mean
  directions of random relabellings of the concept words, :class:`~._placebo.RelabelledPlacebos`); isotropic
  random directions (``n_random``) and directions orthogonal to v (``n_orthogonal``) are references. Each
  placebo enters as a +/-u pair (free with a symmetric grid: slope(-u) = -slope(u)). p is the one-sided rank
  of the concept's slope among the placebo slopes, (1 + #placebo >= concept) / (B + 1), with B drawn
  sequentially (``plan``): batches of placebos until the decision at the run's thresholds is settled.
* One more data-drawn placebo is tested as if it were the concept (``control="random_direction"``), against
  the same null: it must not fire.
* CI: two-level bootstrap over prompts and placebo directions (:func:`~._placebo.placebo_interval`), so the
  interval carries the direction-level variance that the rank p tests.
* Off-target damage: KL(unedited || edited) of the next-token distribution on unrelated prompts, for the
  concept and the isotropic placebos, reported beside the slope, so a large slope bought by breaking the model
  shows.
* Speed: every direction x strength x prompt is one row of a forward; ``max_rows`` rows go through together,
  so many directions share one forward (stacked along the batch dimension).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptspace.analyses.causal._inputs import (
    PreparedPrompts,
    TargetTokens,
    Where,
    as_targets,
    check_count,
    check_level,
    check_site,
    model_kind,
    prepare_prompts,
    random_directions,
    relative_strengths,
    require_causal,
    unit_direction,
)
from conceptspace.analyses.causal._placebo import (
    IsotropicPlacebos,
    PlaceboEffect,
    PlaceboSource,
    placebo_interval,
    rank_p_value,
)
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.stats._bootstrap import group_counts
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, null_extra, sequential_null
from conceptspace.utils.deprecation import renamed_keywords

#: the placebo index of the data-drawn direction tested as if it were the concept: never one of the null's draws
HELD_OUT_PLACEBO = 2**40


@dataclass(frozen=True)
class SteeringResult:
    """Dose-response curves of the concept direction and its placebos, and the tests on them.

    ``delta`` (D, A, n_prompts): target-score change per direction, alpha and prompt; ``kl`` (D, A, n_off)
    off-target KL of the concept and the isotropic placebos, the first rows of ``delta`` (None without
    off-target prompts). Direction 0 is the concept; ``kinds`` names each row
    ("concept", "placebo" (the primary placebos, +u only), "random", "orthogonal"). ``alphas`` are relative to
    ``scale``. ``replicates``: the effect replicates of each test (two-level bootstrap), by key; ``null`` the primary
    placebo draws (mean slopes, in draw order: +u_0, -u_0, +u_1...).
    """

    name: str
    site: str
    where: str
    alphas: np.ndarray
    scale: float
    kinds: tuple[str, ...]
    delta: np.ndarray
    kl: np.ndarray | None
    slopes: np.ndarray
    results: ResultSet
    replicates: dict[TestKey, np.ndarray] = field(default_factory=dict)
    null: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) primary null draws (+/-u slopes)

    def dose_response(self, level: float = 0.95) -> pd.DataFrame:
        """One row per alpha: concept mean change with a bootstrap CI, the primary placebo band, off-target KL.

        The ``random_*`` band columns are the primary placebos (data-drawn when the test had them, else the
        isotropic ones); ``orthogonal_*`` the orthogonal reference."""
        kinds = np.array(self.kinds)
        band = "placebo" if (kinds == "placebo").any() else "random"
        concept = self.delta[0]
        counts = group_counts(None, concept.shape[1], 1000, 0)
        boot = (counts @ concept.T) / counts.sum(1, keepdims=True)  # (B, A)
        tail = (1 - level) / 2
        rows: list[dict[str, Any]] = []
        for a, alpha in enumerate(self.alphas):
            row: dict[str, Any] = {
                "alpha": float(alpha),
                "alpha_abs": float(alpha * self.scale),
                "concept": float(concept[a].mean()),
                "concept_ci_low": float(np.quantile(boot[:, a], tail)),
                "concept_ci_high": float(np.quantile(boot[:, a], 1 - tail)),
            }
            for kind, column in ((band, "random"), ("orthogonal", "orthogonal")):
                means = self.delta[kinds == kind, a].mean(axis=1)
                if means.size:
                    row[f"{column}_low"] = float(np.quantile(means, tail))
                    row[f"{column}_median"] = float(np.median(means))
                    row[f"{column}_high"] = float(np.quantile(means, 1 - tail))
            if self.kl is not None:
                row["kl_concept"] = float(self.kl[0, a].mean())
                random_kl = self.kl[kinds[: self.kl.shape[0]] == "random", a]  # KL rows: concept, isotropic
                if random_kl.size:
                    row["kl_random_median"] = float(np.median(random_kl.mean(axis=1)))
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        table = self.dose_response().to_string(index=False, float_format=lambda x: f"{x:.4g}")
        return f"Steering {self.name} at {self.site} ({self.where}), scale {self.scale:.4g}\n{table}\n\n{self.results}"


def _slopes(delta: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Least-squares slope through the origin per direction and prompt: (D, A, n) -> (D, n)."""
    return np.einsum("a,dan->dn", alphas, delta) / float(alphas @ alphas)


P_METHODS = ("rank", "parametric")


def parametric_p_value(observed: float, placebo_means: np.ndarray) -> float:
    """One-sided prediction-interval t test: is ``observed`` a new draw from the placebo slopes' normal?

    t = (observed - mean) / (sd * sqrt(1 + 1/B)), B - 1 degrees of freedom. Kept for users who want a p below
    the rank's 1/(B+1) floor with few placebos; it assumes normal placebo slopes, which the rank p does not.
    """
    from scipy.stats import t as student_t

    n = placebo_means.size
    spread = float(placebo_means.std(ddof=1))
    scale = spread * np.sqrt(1 + 1 / n)
    statistic = (observed - float(placebo_means.mean())) / scale if scale > 0 else float("inf")
    return float(student_t.sf(statistic, df=n - 1))


@dataclass
class _Steerer:
    """Edits prompts at one site along many unit directions at once and returns per-prompt slopes.

    Every direction is run on ``full_grid`` = grid U -grid, so the slope of -u is read from the same forward
    as u's (with a symmetric grid, full_grid is the grid and -u costs nothing)."""

    model: ConceptModel
    prepared: PreparedPrompts
    site: str
    target: TargetTokens
    grid: np.ndarray
    scale: float
    base_score: torch.Tensor
    max_rows: int
    full_grid: np.ndarray = field(init=False)
    directions_run: int = 0

    def __post_init__(self) -> None:
        self.full_grid = np.unique(np.concatenate([self.grid, -self.grid]))

    def deltas(self, units: torch.Tensor) -> np.ndarray:
        """(k, A_full, n) target-score change per direction, full-grid strength and prompt."""
        d = self.model.d_model
        steps = torch.as_tensor(self.full_grid, dtype=torch.float32)[None, :, None] * self.scale
        edits = (steps * units[:, None, :]).reshape(-1, d)
        out = run_edits(self.model, self.prepared, self.site, Edits.additive(edits), self.target.ids,
                        max_rows=self.max_rows)
        scores = torch.stack([self.target.score(lp) for lp in out.target_logp])
        self.directions_run += int(units.shape[0])
        return (scores - self.base_score[None]).reshape(units.shape[0], self.full_grid.size, -1).double().numpy()

    def on_grid(self, delta: np.ndarray, sign: int = 1) -> np.ndarray:
        """The (k, A, n) changes of ``sign * u`` at the grid's strengths, from full-grid changes of u."""
        columns = np.searchsorted(self.full_grid, sign * self.grid)
        return delta[:, columns]

    def slopes(self, delta: np.ndarray, sign: int = 1) -> np.ndarray:
        return _slopes(self.on_grid(delta, sign), self.grid)


@dataclass
class _PairedNull:
    """Sequential draws of +/-u placebo pairs: null draw 2j is +u_j, 2j + 1 is -u_j (per-prompt slopes kept)."""

    steerer: _Steerer
    source: PlaceboSource
    rows: int
    pairs: dict[int, np.ndarray] = field(default_factory=dict)  # j -> (2, n) slopes of +u_j, -u_j
    band: list[np.ndarray] = field(default_factory=list)  # grid changes of the first placebos, for the figure
    band_size: int = 200

    def draw(self, offset: int, count: int) -> np.ndarray:
        index = np.arange(offset, offset + count)
        missing = sorted(set((index // 2).tolist()) - self.pairs.keys())
        if missing:
            units = self.source.directions(np.array(missing, dtype=np.int64))
            delta = self.steerer.deltas(units)
            plus, minus = self.steerer.slopes(delta, 1), self.steerer.slopes(delta, -1)
            for row, j in enumerate(missing):
                self.pairs[j] = np.stack([plus[row], minus[row]])
            room = self.band_size - sum(b.shape[0] for b in self.band)
            if room > 0:
                self.band.append(self.steerer.on_grid(delta[:room]))
        values = np.array([self.pairs[int(i) // 2][int(i) % 2].mean() for i in index])
        return np.repeat(values[None], self.rows, axis=0)

    def per_prompt(self, n_drawn: int) -> np.ndarray:
        """(n_drawn, n) per-prompt slopes of the null draws, in draw order."""
        return np.stack([self.pairs[i // 2][i % 2] for i in range(n_drawn)])


def _check_inputs(n_random: int, n_orthogonal: int, n_bootstrap: int, level: float, p_method: str,
                  placebos: PlaceboSource | None) -> tuple[int, int, int, float]:
    n_random = check_count(n_random, "n_random", 0 if placebos is not None else 2)
    n_orthogonal = check_count(n_orthogonal, "n_orthogonal", 0)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    level = check_level(level)
    if p_method not in P_METHODS:
        raise InvalidInputError(f"p_method must be one of {', '.join(P_METHODS)}, not {p_method!r}")
    if p_method == "parametric" and placebos is None and n_random < 4:
        raise InvalidInputError(
            f"p_method='parametric' estimates the placebo spread, so it needs n_random >= 4 (the random-direction "
            f"control then still has 3 placebos); got {n_random}"
        )
    return n_random, n_orthogonal, n_bootstrap, level


def _default_plan(n_permutations: int, max_permutations: int | None, alpha: float) -> SequentialPlan:
    start = check_count(n_permutations, "n_permutations", 2)
    maximum = start if max_permutations is None else check_count(max_permutations, "max_permutations", start)
    return SequentialPlan(start=start, maximum=maximum, thresholds=(alpha,), confidence=0.99)


@renamed_keywords(alphas="strengths", name="dataset")
def steering_test(
    model: ConceptModel,
    direction: Any,
    prompts: Sequence[str],
    targets: TargetTokens | tuple[Sequence[str | int], Sequence[str | int]],
    *,
    site: str | int,
    off_target_prompts: Sequence[str] | None = None,
    strengths: Sequence[float] = (-1.0, -0.5, 0.5, 1.0),
    where: Where = "last",
    placebos: PlaceboSource | None = None,
    n_random: int = 20,
    n_orthogonal: int = 20,
    n_permutations: int = 200,
    max_permutations: int | None = None,
    plan: SequentialPlan | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
    dataset: str = "concept",
    claim: str | None = None,
    max_rows: int = 1024,
    p_method: str = "rank",
    resample_prompts: bool = True,
    scale: float | None = None,
) -> SteeringResult:
    """Dose-response of steering along ``direction`` at ``site`` vs placebo directions.

    ``targets``: :class:`TargetTokens` or ``(positive_words, negative_words)``; the direction should point
    towards the positive words' concept (a probe's ``direction_`` points from class 0 to class 1).
    ``where``: ``"last"`` token, ``"all"`` real tokens, or one character span per prompt (off-target prompts
    are then steered at their last token). ``strengths`` are multiples of the site's activation scale (the
    median norm) added along the unit direction.

    ``placebos``: the primary placebo source (e.g. :class:`~._placebo.RelabelledPlacebos` of the concept
    words); None uses isotropic random directions. Its +/-u draws are made sequentially: ``plan`` (or
    ``n_permutations`` to start, doubling up to ``max_permutations``, deciding at ``alpha``). ``n_random``
    isotropic and ``n_orthogonal`` orthogonal directions are references (fixed counts, +/-u pairs too).
    ``scale``: the activation scale the strengths multiply; None measures it on ``prompts`` (the median norm at
    the edited positions). A grid chosen elsewhere (:func:`~._strength_select.select_strengths`, on held-out
    prompts) passes its own scale, so the evaluation runs at the absolute strengths that were checked.
    Returns curves and :class:`TestResult` rows: the concept vs the primary placebos (``extra["role"]``
    "primary"), one more placebo tested as the concept (``control="random_direction"``), and the references.
    """
    require_causal(model, "steering")
    site_name = check_site(model, site)
    v = unit_direction(direction, model.d_model)
    grid = relative_strengths(strengths)
    target = as_targets(model, targets)
    n_random, n_orthogonal, n_bootstrap, level = _check_inputs(n_random, n_orthogonal, n_bootstrap, level,
                                                                p_method, placebos)
    plan = plan if plan is not None else _default_plan(n_permutations, max_permutations, alpha)
    prepared = prepare_prompts(model, prompts, where)
    off = None
    if off_target_prompts is not None:
        off = prepare_prompts(model, off_target_prompts, where if isinstance(where, str) else "last")

    zero = Edits.additive(torch.zeros(1, model.d_model))
    base = run_edits(model, prepared, site_name, zero, target.ids, max_rows=max_rows)
    if scale is None:
        scale = float(base.norms[prepared.edit_mask.cpu()].median())
    elif not np.isfinite(scale) or scale <= 0:
        raise InvalidInputError(f"scale must be a positive activation norm (or None to measure it); got {scale}")
    steerer = _Steerer(model, prepared, site_name, target, grid, scale, target.score(base.target_logp[0]), max_rows)

    source: PlaceboSource = placebos if placebos is not None else IsotropicPlacebos(model.d_model, seed)
    references = [v[None]]
    if n_random:
        references.append(IsotropicPlacebos(model.d_model, seed + 1).directions(np.arange(n_random)))
    if n_orthogonal:
        references.append(random_directions(model.d_model, n_orthogonal, seed + 2, orthogonal_to=v))
    held_out = source.directions(np.array([HELD_OUT_PLACEBO]))
    fixed = torch.cat([*references, held_out])
    fixed_delta = steerer.deltas(fixed)  # (1 + n_random + n_orthogonal + 1, A_full, n)
    concept = steerer.slopes(fixed_delta[:1])[0]
    held = steerer.slopes(fixed_delta[-1:])[0]

    null = _PairedNull(steerer, source, rows=2)
    out = sequential_null(null.draw, np.array([concept.mean(), held.mean()]), plan, decide=(0,))
    null_slopes = null.per_prompt(out.n_drawn)

    kinds = ["concept"] + ["random"] * n_random + ["orthogonal"] * n_orthogonal
    band = np.concatenate(null.band)[: null.band_size] if placebos is not None else np.zeros((0, grid.size, prepared.n))
    delta = np.concatenate([steerer.on_grid(fixed_delta[: len(kinds)]), band])
    kinds += ["placebo"] * band.shape[0]
    kl = _off_target_kl(steerer, off, fixed[: 1 + n_random], max_rows)

    rows, replicates = _tests(
        steerer, out, null_slopes, concept, held, fixed_delta, n_random=n_random, n_orthogonal=n_orthogonal,
        source=source, kl=kl, n_bootstrap=n_bootstrap, seed=seed, level=level, dataset=dataset, claim=claim,
        p_method=p_method, resample_prompts=resample_prompts, primary_is_data=placebos is not None,
    )
    return SteeringResult(
        name=dataset, site=site_name, where=prepared.where, alphas=grid, scale=scale, kinds=tuple(kinds),
        delta=delta, kl=kl,
        slopes=_slopes(delta, grid).mean(axis=1), results=ResultSet(rows), replicates=replicates,
        null=out.null[0],
    )


def _off_target_kl(steerer: _Steerer, off: PreparedPrompts | None, units: torch.Tensor,
                   max_rows: int) -> np.ndarray | None:
    """(k, A, n_off) KL(unedited || edited) on the off-target prompts for the concept and isotropic placebos."""
    if off is None:
        return None
    model, d = steerer.model, steerer.model.d_model
    zero = Edits.additive(torch.zeros(1, d))
    reference = run_edits(model, off, steerer.site, zero, steerer.target.ids, keep_full=True, max_rows=max_rows)
    assert reference.full_logp is not None
    steps = torch.as_tensor(steerer.grid, dtype=torch.float32)[None, :, None] * steerer.scale
    edits = Edits.additive((steps * units[:, None, :]).reshape(-1, d))
    out = run_edits(model, off, steerer.site, edits, steerer.target.ids, reference=reference.full_logp[0],
                    max_rows=max_rows)
    assert out.kl is not None
    return out.kl.reshape(units.shape[0], steerer.grid.size, off.n).double().clamp(min=0).numpy()


def _reference_null(steerer: _Steerer, fixed_delta: np.ndarray, rows: slice) -> np.ndarray:
    """(2k, n) per-prompt slopes of a fixed reference set as +/-u pairs."""
    part = fixed_delta[rows]
    both = np.empty((2 * part.shape[0], part.shape[-1]))
    both[0::2] = steerer.slopes(part, 1)
    both[1::2] = steerer.slopes(part, -1)
    return both


def _tests(
    steerer: _Steerer,
    out: SequentialNull,
    null_slopes: np.ndarray,
    concept: np.ndarray,
    held: np.ndarray,
    fixed_delta: np.ndarray,
    *,
    n_random: int,
    n_orthogonal: int,
    source: PlaceboSource,
    kl: np.ndarray | None,
    n_bootstrap: int,
    seed: int,
    level: float,
    dataset: str,
    claim: str | None,
    p_method: str,
    resample_prompts: bool,
    primary_is_data: bool,
) -> tuple[list[TestResult], dict[TestKey, np.ndarray]]:
    """The test rows: concept vs primary placebos (sequential), held-out placebo vs them, and the references."""
    prepared, grid = steerer.prepared, steerer.grid
    model = steerer.model
    extra_base: dict[str, Any] = {
        "site": steerer.site,
        "alphas_relative": grid.tolist(),
        "activation_scale": steerer.scale,
        "targets": steerer.target.describe(),
        "n_bootstrap": n_bootstrap,
        "ci_level": level,
        "seed": seed,
        "concept_mean_change": steerer.on_grid(fixed_delta[:1])[0].mean(axis=1).tolist(),
        "placebo_pairs": "each placebo u enters as +u and -u",
        "ci_method": "two-level bootstrap: prompts and placebo directions (a resampled placebo stands in for the "
                     "concept direction's estimation noise)" if resample_prompts else
                     "bootstrap over placebo directions (a resampled placebo stands in for the concept direction's "
                     "estimation noise)",
    }
    if kl is not None:
        top = int(np.argmax(np.abs(grid)))
        extra_base["off_target_kl_concept"] = kl[0].mean(axis=1).tolist()
        if n_random:
            extra_base["off_target_kl_random_median"] = np.median(kl[1:].mean(axis=2), axis=0).tolist()
        extra_base["off_target_kl_at_max_alpha"] = {
            "concept": float(kl[0, top].mean()),
            "random_median": float(np.median(kl[1:, top].mean(axis=1))) if n_random else float("nan"),
        }
    primary_method = f"steering_vs_{source.name}" if primary_is_data else "steering_vs_random"
    tests: list[tuple[str, str | None, str, np.ndarray, np.ndarray, SequentialNull | None, int]] = [
        (primary_method, None, "primary", concept, null_slopes, out, 0),
        (primary_method, "random_direction", "control", held, null_slopes, out, 1),
    ]
    # references: the concept against other nulls, keyed as controls (they judge the placebo choice, not the claim)
    if n_random and primary_is_data:
        tests.append(("steering_vs_random", "isotropic_placebo", "control", concept,
                      _reference_null(steerer, fixed_delta, slice(1, 1 + n_random)), None, 0))
    if n_orthogonal:
        rows = slice(1 + n_random, 1 + n_random + n_orthogonal)
        tests.append(("steering_vs_orthogonal", None if not primary_is_data else "orthogonal_placebo", "control",
                      concept, _reference_null(steerer, fixed_delta, rows), None, 0))
    results, replicates = [], {}
    for method, control, role, observed, placebo_slopes, sequential, row in tests:
        fit = placebo_interval(observed, placebo_slopes, n_bootstrap=n_bootstrap, seed=seed, level=level,
                               resample_items=resample_prompts)
        p, p_extra = _p_value(fit, placebo_slopes, sequential, row, p_method)
        key = TestKey(test="steering", dataset=dataset, method=method, site=steerer.site, position=prepared.where,
                      control=control, model=model_kind(model))
        results.append(TestResult(
            key=key, statistic=fit.statistic, effect_size=fit.effect, ci_low=fit.ci_low, ci_high=fit.ci_high,
            p_value=p, claim=claim, statistic_name="steering_slope", effect_size_name="slope - placebo mean",
            n=prepared.n,
            extra={**extra_base, **p_extra, "role": role, "placebo": method.removeprefix("steering_vs_"),
                   "n_placebo": int(placebo_slopes.shape[0]), "z_vs_placebo": fit.z,
                   "placebo_slope_quantiles": np.quantile(placebo_slopes.mean(axis=1), [0.025, 0.5, 0.975]).tolist()},
        ))
        replicates[key] = fit.replicates
    return results, replicates


def _p_value(fit: PlaceboEffect, placebo_slopes: np.ndarray, sequential: SequentialNull | None, row: int,
             p_method: str) -> tuple[float, dict[str, Any]]:
    """The p-value of one row and the fields that describe its null (number drawn, MC interval, mean, SD)."""
    means = placebo_slopes.mean(axis=1)
    extra: dict[str, Any] = {"null_mean": fit.null_mean, "null_sd": fit.null_sd,
                             "n_permutations": int(means.size), "settled": True}
    if sequential is not None:
        extra.update(null_extra(sequential, row))
    if p_method == "parametric":
        extra["p_value_method"] = "prediction-interval t test against the placebo slopes, one-sided, df = B - 1"
        return parametric_p_value(fit.statistic, means), extra
    extra["p_value_method"] = ("placebo rank: (1 + #placebo >= observed) / (B + 1), one-sided"
                               + (", placebos drawn sequentially" if sequential is not None else ""))
    p = float(sequential.p_value[row]) if sequential is not None else rank_p_value(fit.statistic, means)
    return p, extra
