"""What the causal kinds (steering, erasure, derivatives) share in a run: the concept read on the model and on
every control model, its data-drawn placebos, and the one "untrained" counterpart made of several twin seeds.

Why here and not in ``_base``: only the causal kinds edit along a concept direction; they need the concept's
activations on each control model (the twin's concept direction is the twin's own mass-mean direction, and its
placebos the twin's own relabelled mass-mean directions, under the same relabellings as the model's: paired),
the null battery's concept (``concepts.null_labels``: the concept direction becomes a data-drawn placebo), and
the rule that several twin seeds make one control whose interval resamples the seeds (issue 13, sec. 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptspace.activations import extract
from conceptspace.analyses._base import ConceptPromptParams, RunContext, block_indices, subsample_rows, subset
from conceptspace.analyses.causal._placebo import RelabelledPlacebos, rank_p_value
from conceptspace.analyses.probes import MassMeanProbe
from conceptspace.concepts import ConceptSet, load_concepts, null_labels
from conceptspace.models import ConceptModel
from conceptspace.stats import ResultSet, TestKey, TestResult, seed_mean_replicates
from conceptspace.stats._bootstrap import percentile_interval


@dataclass(frozen=True)
class CausalSubject:
    """The concept set read at the analysis's site on one model: the trained model or one control model.

    ``control``: None for the model, else ``"untrained"`` or ``"spectrum_matched"``; ``seed`` the twin seed."""

    model: ConceptModel
    control: str | None
    seed: int | None
    concept_set: ConceptSet
    site: str
    X: np.ndarray  # (n, d) float64

    @property
    def label(self) -> str:
        if self.control is None:
            return "model"
        return f"{self.control} twin" + ("" if self.seed is None else f" (seed {self.seed})")

    def mass_mean_direction(self) -> np.ndarray:
        """The class-mean difference direction (class 0 -> class 1), the concept direction the kinds test."""
        return MassMeanProbe().fit(self.X, self.concept_set.labels).direction_

    def relabel(self) -> Callable[[int], np.ndarray]:
        """Label vectors of random relabellings, the concept set's own null (permuted respecting groups)."""
        concept_set = self.concept_set
        return lambda seed: np.asarray(null_labels(concept_set, seed).labels)

    def placebos(self, seed: int) -> RelabelledPlacebos:
        """Data-drawn placebo directions: mass-mean directions of relabellings (placebo j: the same relabelling
        on every model, so the model's and its twins' placebos are paired)."""
        return RelabelledPlacebos(self.X, self.relabel(), seed=seed)


def causal_subjects(context: RunContext, params: ConceptPromptParams) -> list[CausalSubject]:
    """The concept set (seeded subset of whole groups; under ``context.null_seed`` its labels permuted, so the
    concept direction is itself a data-drawn placebo), read at ``params.layer`` on the model, then on every
    control model of the run (:meth:`RunContext.control_models`), at the words' spans."""
    full = load_concepts(params.dataset)
    cs = subset(full, subsample_rows(full, params.max_items, context.seed))
    if context.null_seed is not None:
        cs = null_labels(cs, context.null_seed)
    site = f"layer.{block_indices(context.model, [params.layer])[0]}"
    position = "span:mean" if cs.spans is not None else "last"
    models: list[tuple[ConceptModel, str | None, int | None]] = [(context.model, None, None)]
    models += [(c.model, c.name, c.seed) for c in context.control_models()]
    out = []
    for model, control, seed in models:
        X = np.asarray(extract(model, cs.texts, sites=[site], position=position, spans=cs.spans,
                               progress=context.progress)[site], dtype=np.float64)
        out.append(CausalSubject(model, control, seed, cs, site, X))
    return out


@dataclass(frozen=True)
class ControlRun:
    """One control model's primary-counterpart test: its row, effect replicates and null draws (B,)."""

    subject: CausalSubject
    result: TestResult
    replicates: np.ndarray
    null: np.ndarray


def combine_controls(primary_key: TestKey, runs: list[ControlRun], *, seed: int, level: float,
                     ) -> tuple[list[TestResult], dict[TestKey, np.ndarray]]:
    """ONE counterpart per control name: the untrained twins' seeds averaged (statistic, effect; the interval
    from the two-level bootstrap over seeds and resamples; p from the seed-mean against the seed-mean of the
    paired null draws, placebo j being the same relabelling on every seed), the spectrum-matched one as it is."""
    by_name: dict[str, list[ControlRun]] = {}
    for run in runs:
        assert run.subject.control is not None
        by_name.setdefault(run.subject.control, []).append(run)
    rows, replicates = [], {}
    for name, group in by_name.items():
        key = primary_key.counterpart(name)
        reps = np.stack([r.replicates for r in group])  # (S, B)
        draws = min(r.null.size for r in group)
        null = np.mean([r.null[:draws] for r in group], axis=0)
        statistic = float(np.mean([r.result.statistic for r in group]))
        effect = float(np.mean([r.result.effect_size for r in group]))
        if len(group) > 1:
            low, high = percentile_interval(seed_mean_replicates(reps, seed), level)
        else:
            low, high = group[0].result.ci_low, group[0].result.ci_high
        first = group[0].result
        extra: dict[str, Any] = {
            **first.extra,
            "role": "control",
            "null_mean": float(null.mean()),
            "null_sd": float(null.std(ddof=1)),
            "n_permutations": int(draws),
            "per_seed": [{"seed": r.subject.seed, "statistic": r.result.statistic, "effect": r.result.effect_size,
                          "p_value": r.result.p_value} for r in group],
        }
        if len(group) > 1:
            extra["ci_method"] = "two-level bootstrap over twin seeds and (within seed) prompts and placebos"
            extra["p_value_method"] = ("placebo rank of the seed-mean slope among seed-means of the paired placebo "
                                       "draws (placebo j: the same relabelling on every seed)")
        rows.append(first.replace(key=key, statistic=statistic, effect_size=effect, ci_low=low, ci_high=high,
                                  p_value=rank_p_value(statistic, null) if len(group) > 1 else first.p_value,
                                  extra=extra))
        replicates[key] = reps if len(group) > 1 else reps[0]
    return rows, replicates


def primary_row(results: ResultSet) -> TestResult:
    """The one row a causal test marked ``extra["role"] == "primary"``."""
    found = [r for r in results if r.extra.get("role") == "primary"]
    if len(found) != 1:
        raise AssertionError(f"a causal test has exactly one primary row; got {len(found)}")
    return found[0]
