"""Steering dose-response: add alpha * v at a site and measure how the model's next-token preferences move.

Why it is built this way:

* alpha is in units of the site's activation scale (the median norm of the unedited activations at the edited
  positions over the prompts), so one grid means the same strength at every layer: residual norms grow by
  orders of magnitude with depth.
* The outcome is the change of a target score (log P(positive words) - log P(negative words) at the next
  token) relative to the unedited run, per prompt. The dose-response slope is the least-squares slope through
  the origin over the alpha grid, per prompt, averaged over prompts.
* A direction "working" is only evidence if it beats placebos of the same norm at the same site and positions:
  >= 20 isotropic random directions and directions orthogonal to v. p = (1 + #placebo slopes >= concept
  slope) / (B + 1) (one-sided: steering towards the positive class should raise the positive words). One
  random direction is also tested as if it were the concept (``control="random_direction"``): it must not
  fire, and it sits in the same family for correction.
* Off-target damage: KL(unedited || edited) of the next-token distribution on unrelated prompts, for the
  concept and the placebos, reported beside the slope, so a large slope bought by breaking the model shows.
* CIs: bootstrap over prompts (paired: placebos are re-averaged on the same resample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptspace.analyses.causal._inputs import (
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
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.stats._bootstrap import group_counts, percentile_interval
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.utils.deprecation import renamed_keywords


@dataclass(frozen=True)
class SteeringResult:
    """Dose-response curves of the concept direction and its placebos, and the tests on them.

    ``delta`` (D, A, n_prompts): target-score change per direction, alpha and prompt; ``kl`` (D, A, n_off)
    off-target KL (None without off-target prompts). Direction 0 is the concept; ``kinds`` names each row
    ("concept", "random", "orthogonal"). ``alphas`` are relative to ``scale``.
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

    def dose_response(self, level: float = 0.95) -> pd.DataFrame:
        """One row per alpha: concept mean change with a bootstrap CI, placebo bands, off-target KL."""
        kinds = np.array(self.kinds)
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
            for kind in ("random", "orthogonal"):
                means = self.delta[kinds == kind, a].mean(axis=1)
                if means.size:
                    row[f"{kind}_low"] = float(np.quantile(means, tail))
                    row[f"{kind}_median"] = float(np.median(means))
                    row[f"{kind}_high"] = float(np.quantile(means, 1 - tail))
            if self.kl is not None:
                row["kl_concept"] = float(self.kl[0, a].mean())
                row["kl_random_median"] = float(np.median(self.kl[kinds == "random", a].mean(axis=1)))
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        table = self.dose_response().to_string(index=False, float_format=lambda x: f"{x:.4g}")
        return f"Steering {self.name} at {self.site} ({self.where}), scale {self.scale:.4g}\n{table}\n\n{self.results}"


def _slopes(delta: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Least-squares slope through the origin per direction and prompt: (D, A, n) -> (D, n)."""
    return np.einsum("a,dan->dn", alphas, delta) / float(alphas @ alphas)


P_METHODS = ("rank", "parametric")


def _placebo_test(
    concept: np.ndarray, placebos: np.ndarray, counts: np.ndarray, level: float, p_method: str = "rank"
) -> tuple[float, float, float, float, float, float]:
    """Slope vs placebos: (slope, effect = slope - placebo mean, CI low, CI high, p, z).

    ``concept`` (n,) and ``placebos`` (B, n) are per-prompt slopes; the CI is a paired bootstrap over prompts.
    ``p_method="rank"`` is exact but can never go below 1/(B+1), which no correction across a run's tests can
    reach with tens of placebos. ``"parametric"`` treats the placebo slopes as a normal sample and asks whether
    the concept's slope is a new draw from it: a one-sided prediction-interval t test,
    t = (slope - mean) / (sd * sqrt(1 + 1/B)) with B - 1 degrees of freedom.
    """
    slope = float(concept.mean())
    placebo_means = placebos.mean(axis=1)
    effect = slope - float(placebo_means.mean())
    weights = counts / counts.sum(1, keepdims=True)
    boot = weights @ concept - (weights @ placebos.T).mean(axis=1)
    low, high = percentile_interval(boot, level)
    spread = float(placebo_means.std(ddof=1)) if placebo_means.size > 1 else float("nan")
    if p_method == "parametric":
        from scipy.stats import t as student_t

        n = placebo_means.size
        scale = spread * np.sqrt(1 + 1 / n)
        statistic = (slope - float(placebo_means.mean())) / scale if scale > 0 else float("inf")
        p = float(student_t.sf(statistic, df=n - 1))
    else:
        p = float(permutation_p_value(slope, placebo_means))
    z = (slope - float(placebo_means.mean())) / spread if spread > 0 else float("nan")
    return slope, effect, low, high, p, z


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
    n_random: int = 20,
    n_orthogonal: int = 20,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    dataset: str = "concept",
    claim: str | None = None,
    max_rows: int = 256,
    p_method: str = "rank",
) -> SteeringResult:
    """Dose-response of steering along ``direction`` at ``site`` vs norm-matched placebo directions.

    ``targets``: :class:`TargetTokens` or ``(positive_words, negative_words)``; the direction should point
    towards the positive words' concept (a probe's ``direction_`` points from class 0 to class 1).
    ``where``: ``"last"`` token, ``"all"`` real tokens, or one character span per prompt (off-target prompts
    are then steered at their last token). ``strengths`` are multiples of the site's activation scale (the
    median norm) added along the unit direction. ``dataset`` names the concept in the results' keys. Returns
    curves and three :class:`TestResult` rows (vs random, vs orthogonal, and a random direction as a negative
    control) in ``results``.
    """
    require_causal(model, "steering")
    site_name = check_site(model, site)
    v = unit_direction(direction, model.d_model)
    grid = relative_strengths(strengths)
    target = as_targets(model, targets)
    n_random = check_count(n_random, "n_random", 2)
    n_orthogonal = check_count(n_orthogonal, "n_orthogonal", 0)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    level = check_level(level)
    if p_method not in P_METHODS:
        raise InvalidInputError(f"p_method must be one of {', '.join(P_METHODS)}, not {p_method!r}")
    if p_method == "parametric" and n_random < 4:
        raise InvalidInputError(
            f"p_method='parametric' estimates the placebo spread, so it needs n_random >= 4 (the random-direction "
            f"control then still has 3 placebos); got {n_random}"
        )
    prepared = prepare_prompts(model, prompts, where)
    off = None
    if off_target_prompts is not None:
        off = prepare_prompts(model, off_target_prompts, where if isinstance(where, str) else "last")

    directions = [v[None], random_directions(model.d_model, n_random, seed)]
    kinds = ["concept"] + ["random"] * n_random
    if n_orthogonal:
        directions.append(random_directions(model.d_model, n_orthogonal, seed + 1, orthogonal_to=v))
        kinds += ["orthogonal"] * n_orthogonal
    units = torch.cat(directions)  # (D, d)

    zero = Edits.additive(torch.zeros(1, model.d_model))
    base = run_edits(model, prepared, site_name, zero, target.ids, max_rows=max_rows)
    scale = float(base.norms[prepared.edit_mask.cpu()].median())
    base_score = target.score(base.target_logp[0])  # (n,)
    deltas = (torch.as_tensor(grid, dtype=torch.float32)[None, :, None] * scale * units[:, None, :]).reshape(
        -1, model.d_model
    )
    edited = run_edits(model, prepared, site_name, Edits.additive(deltas), target.ids, max_rows=max_rows)
    scores = torch.stack([target.score(lp) for lp in edited.target_logp])  # (D*A, n)
    delta = (scores - base_score[None]).reshape(len(kinds), grid.size, prepared.n).double().numpy()
    kl = None
    if off is not None:
        reference = run_edits(model, off, site_name, zero, target.ids, keep_full=True, max_rows=max_rows)
        assert reference.full_logp is not None
        off_out = run_edits(
            model,
            off,
            site_name,
            Edits.additive(deltas),
            target.ids,
            reference=reference.full_logp[0],
            max_rows=max_rows,
        )
        assert off_out.kl is not None
        kl = off_out.kl.reshape(len(kinds), grid.size, off.n).double().clamp(min=0).numpy()

    slopes = _slopes(delta, grid)
    kind_arr = np.array(kinds)
    counts = group_counts(None, prepared.n, n_bootstrap, seed)
    common: dict[str, Any] = {
        "claim": claim,
        "statistic_name": "steering_slope",
        "effect_size_name": "slope_minus_placebo_mean",
        "n": prepared.n,
    }
    extra_base = {
        "site": site_name,
        "alphas_relative": grid.tolist(),
        "activation_scale": scale,
        "targets": target.describe(),
        "n_bootstrap": n_bootstrap,
        "ci_level": level,
        "seed": seed,
        "p_value_method": (
            "placebo rank: (1 + #placebo >= observed) / (B + 1), one-sided"
            if p_method == "rank"
            else "prediction-interval t test against the placebo slopes, one-sided, df = B - 1"
        ),
    }
    if kl is not None:
        top = int(np.argmax(np.abs(grid)))
        extra_base["off_target_kl_concept"] = kl[0].mean(axis=1).tolist()
        extra_base["off_target_kl_random_median"] = np.median(kl[kind_arr == "random"].mean(axis=2), axis=0).tolist()
        extra_base["off_target_kl_at_max_alpha"] = {
            "concept": float(kl[0, top].mean()),
            "random_median": float(np.median(kl[kind_arr == "random", top].mean(axis=1))),
        }
    extra_base["concept_mean_change"] = delta[0].mean(axis=1).tolist()

    rows = []
    comparisons: list[tuple[str, str | None, np.ndarray, np.ndarray]] = [
        ("random", None, slopes[0], slopes[kind_arr == "random"])
    ]
    if n_orthogonal:
        comparisons.append(("orthogonal", None, slopes[0], slopes[kind_arr == "orthogonal"]))
    randoms = slopes[kind_arr == "random"]
    comparisons.append(("random", "random_direction", randoms[0], randoms[1:]))
    for placebo, control, concept_slopes, placebo_slopes in comparisons:
        slope, effect, low, high, p, z = _placebo_test(concept_slopes, placebo_slopes, counts, level, p_method)
        rows.append(
            TestResult(
                key=TestKey(test="steering", dataset=dataset, method=f"steering_vs_{placebo}", site=site_name,
                            position=prepared.where, control=control, model=model_kind(model)),
                statistic=slope,
                effect_size=effect,
                ci_low=low,
                ci_high=high,
                p_value=p,
                **common,
                extra={
                    **extra_base,
                    "placebo": placebo,
                    "n_placebo": int(placebo_slopes.shape[0]),
                    "z_vs_placebo": z,
                    "placebo_slope_quantiles": np.quantile(placebo_slopes.mean(axis=1), [0.025, 0.5, 0.975]).tolist(),
                },
            )
        )
    return SteeringResult(
        name=dataset,
        site=site_name,
        where=prepared.where,
        alphas=grid,
        scale=scale,
        kinds=tuple(kinds),
        delta=delta,
        kl=kl,
        slopes=slopes.mean(axis=1),
        results=ResultSet(rows),
    )
