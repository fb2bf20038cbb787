"""Directional derivatives (TCAV-style): does moving along the concept direction raise the target logit?

Why it is built this way:

* The derivative of the target score (``logsumexp`` of the positive words' logits minus that of the negative
  words, or one word's logit) w.r.t. the site's activations is computed once per prompt; the derivative along
  any direction is then a dot product, so 50 or 500 random directions cost nothing extra. It is the slope of
  steering at alpha = 0 at the same positions, a local version of :mod:`conceptspace.analyses.causal._steering`.
* Gradients are taken inside the nnsight trace (``with loss.backward():``), the path that also runs remotely;
  a unit test checks them against plain torch autograd on the Hugging Face model.
* Two statistics per direction, each against the same random directions: the mean directional derivative
  (two-sided on its absolute value; the more powerful one) and the TCAV score.
* TCAV score = fraction of prompts with a positive derivative (Kim et al., 2018). Random directions give the
  null: under it the concept direction is exchangeable with isotropic random directions, whose score
  distribution is symmetric about 1/2 (v and -v are equally likely). The two-sided p-value is
  (1 + #{|s_random - 1/2| >= |s_concept - 1/2|}) / (B + 1); ties count against the concept, so when all
  prompts' gradients point the same way (random directions then score 0 or 1 too) the test is honestly weak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    require_causal,
    unit_direction,
)
from conceptspace.analyses.causal._trace import run_gradients
from conceptspace.models import ConceptModel
from conceptspace.stats._bootstrap import group_counts, percentile_interval
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.utils.deprecation import renamed_keywords


@dataclass(frozen=True)
class DerivativeResult:
    """Per-prompt directional derivatives, TCAV scores of the concept and the random directions, the tests."""

    name: str
    site: str
    derivatives: np.ndarray  # (n_prompts,) along the concept direction
    tcav_score: float
    random_scores: np.ndarray  # (B,)
    random_derivatives: np.ndarray  # (B, n_prompts)
    results: ResultSet

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
    return float(permutation_p_value(abs(observed - 0.5), np.abs(np.asarray(null) - 0.5)))


@renamed_keywords(name="dataset")
def directional_derivative_test(
    model: ConceptModel,
    direction: Any,
    prompts: Sequence[str],
    targets: TargetTokens | tuple[Sequence[str | int], Sequence[str | int]],
    *,
    site: str | int,
    where: Where = "last",
    n_random: int = 50,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    dataset: str = "concept",
    claim: str | None = None,
    max_rows: int = 32,
) -> DerivativeResult:
    """TCAV score of ``direction`` at ``site`` for the target score, against ``n_random`` random directions.

    ``targets`` as in :func:`~conceptspace.analyses.causal.steering_test` (``([word], [])`` for a single logit).
    Returns the derivatives and four :class:`TestResult` rows: TCAV score and mean derivative of the concept,
    and the same for one random direction tested as if it were the concept (``control="random_direction"``).
    """
    require_causal(model, "the directional-derivative test")
    site_name = check_site(model, site)
    v = unit_direction(direction, model.d_model)
    target = as_targets(model, targets)
    n_random = check_count(n_random, "n_random", 2)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    level = check_level(level)
    prepared = prepare_prompts(model, prompts, where)
    grads = run_gradients(model, prepared, site_name, target.positive, target.negative, max_rows=max_rows)
    randoms = random_directions(model.d_model, n_random, seed)
    concept_d = (grads @ v).double().numpy()  # (n,)
    random_d = (grads @ randoms.T).T.double().numpy()  # (B, n)
    grad_norms = grads.norm(dim=1).double().numpy()
    tie = ZERO_TOLERANCE * grad_norms
    concept_score = float(tcav_scores(concept_d, tie))
    random_scores = tcav_scores(random_d, tie)
    counts = group_counts(None, prepared.n, n_bootstrap, seed)
    weights = counts / counts.sum(1, keepdims=True)
    boot_norm = weights @ grad_norms
    common: dict[str, Any] = {
        "claim": claim,
        "n": prepared.n,
    }
    extra_base: dict[str, Any] = {
        "site": site_name,
        "targets": target.describe(),
        "mean_gradient_norm": float(grad_norms.mean()),
        "n_bootstrap": n_bootstrap,
        "ci_level": level,
        "seed": seed,
    }
    rows = []
    for control, observed_d, null_d, null_scores in (
        (None, concept_d, random_d, random_scores),
        ("random_direction", random_d[0], random_d[1:], random_scores[1:]),
    ):
        key = TestKey(test="tcav", dataset=dataset, method="tcav_score", site=site_name, position=prepared.where,
                      control=control, model=model_kind(model))
        score = float(tcav_scores(observed_d, tie))
        signs = np.where(np.abs(observed_d) <= tie, 0.5, (observed_d > 0).astype(np.float64))
        low, high = percentile_interval(weights @ signs - 0.5, level)
        rows.append(
            TestResult(
                key=key,
                statistic_name="tcav_score",
                statistic=score,
                effect_size_name="tcav_score_minus_half",
                effect_size=score - 0.5,
                ci_low=low,
                ci_high=high,
                p_value=tcav_p_value(score, null_scores),
                **common,
                extra={
                    **extra_base,
                    "n_random": int(null_scores.shape[0]),
                    "random_score_quantiles": np.quantile(null_scores, [0.025, 0.5, 0.975]).tolist(),
                    "p_value_method": "two-sided placebo rank of |score - 1/2| against random directions",
                },
            )
        )
        mean_d = float(observed_d.mean())
        null_means = null_d.mean(axis=1)
        low, high = percentile_interval((weights @ observed_d) / boot_norm, level)
        rows.append(
            TestResult(
                key=key.replace(method="directional_derivative"),
                statistic_name="mean_directional_derivative",
                statistic=mean_d,
                effect_size_name="mean_derivative_over_mean_gradient_norm",
                effect_size=mean_d / float(grad_norms.mean()) if grad_norms.mean() > 0 else float("nan"),
                ci_low=low,
                ci_high=high,
                p_value=float(permutation_p_value(abs(mean_d), np.abs(null_means))),
                **common,
                extra={
                    **extra_base,
                    "n_random": int(null_means.shape[0]),
                    "random_mean_derivative_quantiles": np.quantile(null_means, [0.025, 0.5, 0.975]).tolist(),
                    "p_value_method": "two-sided placebo rank of |mean derivative| against random directions",
                },
            )
        )
    return DerivativeResult(
        name=dataset,
        site=site_name,
        derivatives=concept_d,
        tcav_score=concept_score,
        random_scores=random_scores,
        random_derivatives=random_d,
        results=ResultSet(rows),
    )
