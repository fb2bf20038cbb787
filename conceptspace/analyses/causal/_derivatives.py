"""Directional derivatives (TCAV-style): does moving along the concept direction raise the target logit?

Why it is built this way:

* The derivative of the target score (``logsumexp`` of the positive words' logits minus that of the negative
  words, or one word's logit) w.r.t. the site's activations is computed once per prompt; the derivative along
  any direction is then a dot product, so 50 or 500 random directions cost nothing extra. It is the slope of
  steering at alpha = 0 at the same positions, a local version of :mod:`conceptspace.analyses.causal._steering`.
* Gradients are taken inside the nnsight trace (``with loss.backward():``), the path that also runs remotely;
  a unit test checks them against plain torch autograd on the Hugging Face model.
* Two statistics per direction, each against the same placebo directions: the mean directional derivative
  (the primary test: one-sided, the concept direction points from class 0 to class 1, towards the positive
  words) and the TCAV score (exploratory). Placebos are data-drawn when the caller gives a source (mass-mean
  directions of relabellings of the concept words), drawn sequentially as +/-u pairs until the decision at
  the run's thresholds is settled (they cost one dot product each); isotropic directions otherwise.
* The mean derivative's CI inverts the placebo rank test (:func:`~._placebo.rank_interval`), so it carries
  the direction-level variance its p-value tests; its replicates (two-level bootstrap over prompts and
  placebos) go to paired differences against the controls.
* TCAV score = fraction of prompts with a positive derivative (Kim et al., 2018). Random directions give the
  null: under it the concept direction is exchangeable with isotropic random directions, whose score
  distribution is symmetric about 1/2 (v and -v are equally likely). The two-sided p-value is
  (1 + #{|s_random - 1/2| >= |s_concept - 1/2|}) / (B + 1); ties count against the concept, so when all
  prompts' gradients point the same way (random directions then score 0 or 1 too) the test is honestly weak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    require_causal,
    unit_direction,
)
from conceptspace.analyses.causal._placebo import IsotropicPlacebos, PlaceboSource, placebo_interval, signed_pairs
from conceptspace.analyses.causal._steering import HELD_OUT_PLACEBO, _default_plan
from conceptspace.analyses.causal._trace import run_gradients
from conceptspace.models import ConceptModel
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, null_extra, sequential_null
from conceptspace.utils.deprecation import renamed_keywords


@dataclass(frozen=True)
class DerivativeResult:
    """Per-prompt directional derivatives, TCAV scores of the concept and the random directions, the tests."""

    name: str
    site: str
    derivatives: np.ndarray  # (n_prompts,) along the concept direction
    tcav_score: float
    random_scores: np.ndarray  # (B,)
    random_derivatives: np.ndarray  # (B, n_prompts): the placebo draws, +u_0, -u_0, +u_1...
    results: ResultSet
    replicates: dict[TestKey, np.ndarray] = field(default_factory=dict)

    def summary(self) -> str:
        q = np.quantile(self.random_scores, [0.025, 0.5, 0.975])
        return (
            f"TCAV {self.name} at {self.site}: score {self.tcav_score:.3f}, random directions "
            f"median {q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}], mean derivative {self.derivatives.mean():.4g}\n\n"
            f"{self.results}"
        )


ZERO_TOLERANCE = 1e-6  # |derivative| <= this * |gradient| is a tie: it counts half towards the TCAV score


def tcav_scores(derivatives: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Fraction of prompts with a positive derivative along the last axis; near-zero ones count half.

    Without the tie rule a direction orthogonal to every gradient would score 0 or 1 from float noise alone.
    """
    positive = (derivatives > tie).mean(axis=-1)
    zero = (np.abs(derivatives) <= tie).mean(axis=-1)
    return np.asarray(positive + 0.5 * zero)


def tcav_p_value(observed: float, null: np.ndarray) -> float:
    """Two-sided placebo p-value of a TCAV score: distance from 1/2 compared with the random scores'."""
    null = np.abs(np.asarray(null, dtype=np.float64) - 0.5)
    return float((1 + np.count_nonzero(null >= abs(observed - 0.5) - 1e-12)) / (null.size + 1))


@renamed_keywords(name="dataset")
def directional_derivative_test(
    model: ConceptModel,
    direction: Any,
    prompts: Sequence[str],
    targets: TargetTokens | tuple[Sequence[str | int], Sequence[str | int]],
    *,
    site: str | int,
    where: Where = "last",
    placebos: PlaceboSource | None = None,
    n_random: int = 50,
    max_permutations: int | None = None,
    plan: SequentialPlan | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
    dataset: str = "concept",
    claim: str | None = None,
    max_rows: int = 32,
) -> DerivativeResult:
    """Directional derivative and TCAV score of ``direction`` at ``site`` against placebo directions.

    ``targets`` as in :func:`~conceptspace.analyses.causal.steering_test` (``([word], [])`` for a single logit).
    ``placebos``: the placebo source (data-drawn :class:`~._placebo.RelabelledPlacebos` in the suite; None:
    isotropic); ``plan`` (or ``n_random`` draws to start, doubling up to ``max_permutations``, deciding at
    ``alpha``) says how many +/-u draws. Returns the derivatives and four :class:`TestResult` rows: the mean
    derivative (``extra["role"]`` "primary") and the TCAV score of the concept ("exploratory"), and the same
    for one more placebo tested as if it were the concept (``control="random_direction"``, "control").
    """
    require_causal(model, "the directional-derivative test")
    site_name = check_site(model, site)
    v = unit_direction(direction, model.d_model)
    target = as_targets(model, targets)
    n_random = check_count(n_random, "n_random", 2)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    level = check_level(level)
    plan = plan if plan is not None else _default_plan(n_random, max_permutations, alpha)
    prepared = prepare_prompts(model, prompts, where)
    grads = run_gradients(model, prepared, site_name, target.positive, target.negative, max_rows=max_rows)
    source: PlaceboSource = placebos if placebos is not None else IsotropicPlacebos(model.d_model, seed)
    concept_d = (grads @ v).double().numpy()  # (n,)
    held_d = (grads @ source.directions(np.array([HELD_OUT_PLACEBO]))[0]).double().numpy()
    tie = ZERO_TOLERANCE * grads.norm(dim=1).double().numpy()

    def draw(offset: int, count: int) -> np.ndarray:
        pairs = np.arange(offset // 2, (offset + count + 1) // 2)
        d = (grads @ source.directions(pairs).T).T.double().numpy()  # (pairs, n)
        values = signed_pairs(d, -d)[offset - 2 * pairs[0]: offset - 2 * pairs[0] + count]
        return np.repeat(values.mean(axis=1)[None], 2, axis=0)

    out = sequential_null(draw, np.array([concept_d.mean(), held_d.mean()]), plan, decide=(0,))
    pairs = np.arange((out.n_drawn + 1) // 2)
    d = (grads @ source.directions(pairs).T).T.double().numpy()
    null_d = signed_pairs(d, -d)[: out.n_drawn]  # (B, n) per-prompt derivatives of the draws
    rows, replicates = _derivative_rows(
        concept_d, held_d, null_d, tie, out, prepared=prepared, grads_norm=float(grads.norm(dim=1).mean()),
        target=target, site=site_name, model=model, source=source, n_bootstrap=n_bootstrap, seed=seed,
        level=level, dataset=dataset, claim=claim,
    )
    return DerivativeResult(
        name=dataset,
        site=site_name,
        derivatives=concept_d,
        tcav_score=float(tcav_scores(concept_d, tie)),
        random_scores=tcav_scores(null_d, tie),
        random_derivatives=null_d,
        results=ResultSet(rows),
        replicates=replicates,
    )


def _derivative_rows(
    concept_d: np.ndarray,
    held_d: np.ndarray,
    null_d: np.ndarray,
    tie: np.ndarray,
    out: SequentialNull,
    *,
    prepared: PreparedPrompts,
    grads_norm: float,
    target: TargetTokens,
    site: str,
    model: ConceptModel,
    source: PlaceboSource,
    n_bootstrap: int,
    seed: int,
    level: float,
    dataset: str,
    claim: str | None,
) -> tuple[list[TestResult], dict[TestKey, np.ndarray]]:
    """Mean derivative (sequential placebo rank, rank-inversion CI) and TCAV score, for the concept and the
    held-out placebo."""
    extra_base: dict[str, Any] = {
        "site": site,
        "targets": target.describe(),
        "mean_gradient_norm": grads_norm,
        "n_bootstrap": n_bootstrap,
        "ci_level": level,
        "seed": seed,
        "placebo": source.name,
        "placebo_pairs": "each placebo u enters as +u and -u",
    }
    null_signs = np.where(np.abs(null_d) <= tie, 0.5, (null_d > 0).astype(np.float64))
    null_scores = null_signs.mean(axis=1)
    rows, replicates = [], {}
    for row, (control, observed_d) in enumerate(((None, concept_d), ("random_direction", held_d))):
        key = TestKey(test="tcav", dataset=dataset, method="directional_derivative", site=site,
                      position=prepared.where, control=control, model=model_kind(model))
        fit = placebo_interval(observed_d, null_d, n_bootstrap=n_bootstrap, seed=seed, level=level)
        rows.append(TestResult(
            key=key, statistic_name="mean_directional_derivative", statistic=fit.statistic,
            effect_size_name="mean derivative - placebo mean", effect_size=fit.effect,
            ci_low=fit.ci_low, ci_high=fit.ci_high, p_value=float(out.p_value[row]), claim=claim, n=prepared.n,
            extra={**extra_base, **null_extra(out, row), "role": "primary" if control is None else "control",
                   "z_vs_placebo": fit.z, "effect_over_mean_gradient_norm": fit.effect / grads_norm if grads_norm
                   else float("nan"),
                   "p_value_method": "placebo rank of the mean derivative, one-sided, placebos drawn sequentially",
                   "ci_method": "inversion of the placebo rank test (direction-level variance)"},
        ))
        replicates[key] = fit.replicates
        signs = np.where(np.abs(observed_d) <= tie, 0.5, (observed_d > 0).astype(np.float64))
        score_fit = placebo_interval(signs, null_signs, n_bootstrap=n_bootstrap, seed=seed, level=level)
        tcav_key = key.replace(method="tcav_score")
        rows.append(TestResult(
            key=tcav_key, statistic_name="tcav_score", statistic=score_fit.statistic,
            effect_size_name="TCAV score - placebo mean", effect_size=score_fit.effect,
            ci_low=score_fit.ci_low, ci_high=score_fit.ci_high, p_value=tcav_p_value(score_fit.statistic, null_scores),
            claim=claim, n=prepared.n,
            extra={**extra_base, "role": "exploratory" if control is None else "control",
                   "n_permutations": int(null_scores.size), "null_mean": score_fit.null_mean,
                   "null_sd": score_fit.null_sd, "settled": bool(out.settled),
                   "random_score_quantiles": np.quantile(null_scores, [0.025, 0.5, 0.975]).tolist(),
                   "p_value_method": "two-sided placebo rank of |score - 1/2| against the same placebo draws"},
        ))
        replicates[tcav_key] = score_fit.replicates
    return rows, replicates
