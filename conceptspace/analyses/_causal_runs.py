"""What the causal kinds (steering, erasure, derivatives) share in a run: the concept read on the model and on
every control model, its data-drawn placebos, and the one "untrained" counterpart made of several twin seeds.

Why here and not in ``_base``: only the causal kinds edit along a concept direction; they need the concept's
activations on each control model (the twin's concept direction is the twin's own mass-mean direction, and its
placebos the twin's own relabelled mass-mean directions, under the same relabellings as the model's: paired),
the null battery's concept (``concepts.null_labels``: the concept direction becomes a data-drawn placebo), and
the rule that several twin seeds make one control whose interval resamples the seeds (issue 13, sec. 4).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptspace.activations import extract
from conceptspace.analyses._base import ConceptPromptParams, RunContext, block_indices, subsample_rows, subset
from conceptspace.analyses.causal._placebo import RelabelledPlacebos, rank_p_value
from conceptspace.analyses.probes import MassMeanProbe
from conceptspace.concepts import ConceptSet, load_concepts, null_labels
from conceptspace.concepts._controls import _shuffle_mode
from conceptspace.models import ConceptModel
from conceptspace.stats import TRAINED, ResultSet, TestKey, TestResult, seed_mean_replicates
from conceptspace.stats._bootstrap import percentile_interval

#: placebo draws a forward-based causal test starts with (steering, erasure): the sequential plan doubles them
#: while the primary decision is open (up to the run's maximum), and a clear null stops here; controls draw this
#: many, fixed (they decide nothing). Directional derivatives cost a dot product per placebo and start at the
#: run's n_permutations.
FORWARD_START = 199


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
        return relabeller(self.concept_set)

    def placebos(self, seed: int) -> RelabelledPlacebos:
        """Data-drawn placebo directions: mass-mean directions of relabellings (placebo j: the same relabelling
        on every model, so the model's and its twins' placebos are paired)."""
        return RelabelledPlacebos(self.X, self.relabel(), seed=seed)


def relabeller(concept_set: ConceptSet) -> Callable[[int], np.ndarray]:
    """``seed -> labels``: the labels of ``concepts.null_labels(concept_set, seed)``, without rebuilding the set.

    Why: a placebo direction needs only the label vector, and rebuilding a concept set costs ~28 ms, which
    thousands of sequential placebos cannot pay. The permutation (mode chosen from the groups, the same
    generator calls) is the one ``shuffled_labels`` makes; a unit test holds the two equal.
    """
    labels = np.asarray(concept_set.labels)
    groups = list(concept_set.groups)
    mode = _shuffle_mode(labels, groups)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_size: dict[int, list[str]] = defaultdict(list)
    for g, rows in members.items():
        by_size[len(rows)].append(g)

    def relabel(seed: int) -> np.ndarray:
        rng = np.random.default_rng(int(seed))
        if mode == "global":
            return labels[rng.permutation(len(labels))]
        new = labels.copy()
        if mode == "within":
            for rows in members.values():
                index = np.asarray(rows)
                new[index] = labels[index[rng.permutation(len(index))]]
            return new
        for same_size in by_size.values():
            source = [same_size[j] for j in rng.permutation(len(same_size))]
            for target_group, source_group in zip(same_size, source, strict=True):
                new[np.asarray(members[target_group])] = labels[members[source_group][0]]
        return new

    return relabel


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
    """One control model's run of the test: its rows, their effect replicates, and per test of the model the
    null draws of its counterpart (B,) and whether its p is two-sided (|statistic - null centre|)."""

    subject: CausalSubject
    results: ResultSet
    replicates: dict[TestKey, np.ndarray]
    nulls: dict[str, tuple[np.ndarray, bool]]  # method -> (null draws, two-sided)


def _as_model_key(key: TestKey) -> TestKey:
    return key.replace(control=None, model=TRAINED)


def combine_controls(tested: list[TestResult], runs: list[ControlRun], *, seed: int, level: float,
                     ) -> tuple[list[TestResult], dict[TestKey, np.ndarray]]:
    """ONE counterpart per control name of each of the model's ``tested`` rows: the untrained twins' seeds
    averaged (statistic, effect; the interval from the two-level bootstrap over seeds and resamples; p from the
    seed-mean against the seed-mean of the paired null draws, placebo j being the same relabelling on every
    seed), the spectrum-matched one as it is. Every counterpart is a "control"."""
    by_name: dict[str, list[ControlRun]] = {}
    for run in runs:
        assert run.subject.control is not None
        by_name.setdefault(run.subject.control, []).append(run)
    rows, replicates = [], {}
    for tested_row in tested:
        for name, group in by_name.items():
            found = [next(r for r in run.results if _as_model_key(r.key) == tested_row.key) for run in group]
            row, reps = _combine(tested_row.key.counterpart(name), found, group, seed=seed, level=level)
            rows.append(row)
            if reps.size:
                replicates[row.key] = reps
    return rows, replicates


def _combine(key: TestKey, found: list[TestResult], group: list[ControlRun], *, seed: int,
             level: float) -> tuple[TestResult, np.ndarray]:
    first = found[0]
    extra: dict[str, Any] = {**first.extra, "role": "control"}
    if any(r.key not in run.replicates for run, r in zip(group, found, strict=True)):
        return _combine_without_replicates(key, found, group, extra), np.zeros(0)
    reps = np.stack([run.replicates[r.key] for run, r in zip(group, found, strict=True)])  # (S, B)
    if len(found) == 1:
        return first.replace(key=key, extra=extra), reps[0]
    nulls = [run.nulls[first.method] for run in group]
    draws = min(n.size for n, _ in nulls)
    null = np.mean([n[:draws] for n, _ in nulls], axis=0)
    two_sided = nulls[0][1]
    statistic = float(np.mean([r.statistic for r in found]))
    effect = float(np.mean([r.effect_size for r in found]))
    low, high = percentile_interval(seed_mean_replicates(reps, seed), level)
    observed, reference = (abs(statistic - 0.5), np.abs(null - 0.5)) if two_sided else (statistic, null)
    extra.update({
        "null_mean": float(null.mean()),
        "null_sd": float(null.std(ddof=1)),
        "n_permutations": int(draws),
        "per_seed": [{"seed": run.subject.seed, "statistic": r.statistic, "effect": r.effect_size,
                      "p_value": r.p_value} for run, r in zip(group, found, strict=True)],
        "ci_method": "two-level bootstrap over twin seeds and (within seed) prompts and placebos",
        "p_value_method": "placebo rank of the seed-mean statistic among seed-means of the paired placebo draws "
                          "(placebo j: the same relabelling on every seed)",
    })
    row = first.replace(key=key, statistic=statistic, effect_size=effect, ci_low=low, ci_high=high,
                        p_value=rank_p_value(observed, reference), extra=extra)
    return row, reps


def _combine_without_replicates(key: TestKey, found: list[TestResult], group: list[ControlRun],
                                extra: dict[str, Any]) -> TestResult:
    """A counterpart whose test hands over no replicates (e.g. a probe score): the mean over seeds, the
    Bonferroni p over seeds (min p times S: "some seed shows it"), the envelope of the seeds' intervals."""
    per_seed = [{"seed": run.subject.seed, "statistic": r.statistic, "effect": r.effect_size, "p_value": r.p_value}
                for run, r in zip(group, found, strict=True)]
    return found[0].replace(
        key=key,
        statistic=float(np.mean([r.statistic for r in found])),
        effect_size=float(np.mean([r.effect_size for r in found])),
        ci_low=float(np.min([r.ci_low for r in found])),
        ci_high=float(np.max([r.ci_high for r in found])),
        p_value=float(min(1.0, len(found) * min(r.p_value for r in found))),
        extra={**extra, "per_seed": per_seed, "ci_method": "envelope of the seeds' intervals",
               "p_value_method": "Bonferroni over seeds (smallest p times the number of seeds)"},
    )


def primary_row(results: ResultSet) -> TestResult:
    """The one row a causal test marked ``extra["role"] == "primary"``."""
    found = [r for r in results if r.extra.get("role") == "primary"]
    if len(found) != 1:
        raise AssertionError(f"a causal test has exactly one primary row; got {len(found)}")
    return found[0]
