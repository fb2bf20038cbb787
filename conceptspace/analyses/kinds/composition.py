"""N6b: composition of contexts. Do idioms interact more than literal phrases with the same adjective?

The design (contexts, targets, the interaction I(t), the statistic, the frequency control and the twins) is in
:mod:`conceptspace.analyses._composition`. One primary test: Delta = mean |I| of idioms - of compositional phrases
(site ``unembed``: a statement about next-token distributions), against labels permuted within adjective groups.
Beside it, uncorrected: the part of Delta that the collocation strength log p(B | A) accounts for (control
``frequency``; the paired difference with it is the frequency-adjusted class effect), and the same test on the
untrained twins and the spectrum-matched twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.analyses import _composition as comp
from conceptspace.analyses._base import (
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_str,
    list_of,
    mark_roles,
    optional,
    param,
    register,
)
from conceptspace.analyses._mc_result import effect_replicates, mc_result
from conceptspace.analyses.causal._inputs import require_causal
from conceptspace.errors import InvalidInputError
from conceptspace.stats import ResultSet, SequentialPlan, TestKey, TestResult, sequential_null

TEST = "composition"
METHOD = "mean_abs_interaction"
STAT = "mean |I(t)| of idioms - of compositional phrases (nats)"
EFFECT = "Delta - within-adjective label-permutation null mean"
FREQUENCY = "frequency"


@dataclass(frozen=True)
class CompositionParams:
    dataset: str = param("phrase_composition", check=is_str, type_name="string",
                         doc="a binary set with adjective and noun columns and an 'idiom' class")
    frames: list[str] = param(list(comp.FRAMES), check=list_of(is_str), type_name="list of strings with {slot}",
                              doc="contexts: the slot takes ' A', ' B', ' A B' or nothing (p(t))")
    top_k: int = param(10, check=is_int, type_name="integer",
                       doc="targets: the top_k next tokens after AB, per phrase and frame")
    max_items: int | None = param(None, check=optional(is_int), type_name="integer",
                                  doc="phrases (whole matched pairs; None: all)")


@register
class CompositionAnalysis(Analysis):
    kind = "composition"
    claims = ("N6b",)
    Params = CompositionParams
    description = ("interaction log p(t|AB) - log p(t|A) - log p(t|B) + log p(t) of idioms vs adjective-matched "
                   "literal phrases; collocation-frequency control and twins")
    smoke_params: ClassVar[dict[str, Any]] = {"max_items": 12, "top_k": 5}

    def run(self, context: RunContext, params: CompositionParams) -> AnalysisOutput:
        require_causal(context.model, "the composition test (N6b)")
        if params.top_k < 1:
            raise InvalidInputError(f"top_k must be >= 1; got {params.top_k}")
        frames = comp.check_frames(params.frames)
        primary_site = context.primary_site or "unembed"
        if primary_site != "unembed":
            raise InvalidInputError(f"the composition test reads next-token distributions: its primary site is "
                                    f"'unembed', not {primary_site!r}")
        measured_set = comp.load_phrases(params.dataset, params.max_items, context.seed, context.null_seed)
        phrases = measured_set
        trained = comp.measure(context.model, phrases, frames, params.top_k)
        keep = np.flatnonzero(trained.consistent)
        excluded = [phrases.texts[i] for i in np.flatnonzero(~trained.consistent)]
        if keep.size < phrases.n:
            phrases = phrases.subset(keep)
            comp.check_classes(phrases.idiom)
            trained = _restrict(trained, keep)
        controls = [(c, _restrict(comp.measure(c.model, measured_set, frames, params.top_k, frequency=False),
                                  keep))
                    for c in context.control_models()]
        key = TestKey(TEST, params.dataset.split("/")[-1], METHOD, site="unembed", position="last")
        labels = phrases.idiom.astype(np.float64)
        weights = comp.group_weights(phrases.group, context.n_bootstrap, context.seed)
        perm_seed = context.seed if context.null_seed is None else context.null_seed

        def draw(offset: int, count: int) -> np.ndarray:
            y = labels[comp.within_group_permutations(phrases.group, count, perm_seed, offset)]
            return np.vstack([comp.class_difference(trained.scalar, y),
                              comp.frequency_part(trained.scalar, trained.log_p_noun, y)])

        observed = np.array([comp.class_difference(trained.scalar, labels)[0],
                             comp.frequency_part(trained.scalar, trained.log_p_noun, labels)[0]])
        out = sequential_null(draw, observed, context.sequential_plan(), decide=(0,))
        boots = [comp.class_difference(trained.scalar, labels[None, :] * np.ones_like(weights), weights),
                 comp.frequency_part(trained.scalar, trained.log_p_noun, labels[None, :] * np.ones_like(weights),
                                     weights)]
        extra = {**_describe(phrases, trained), "frames": frames, "top_k": params.top_k,
                 "excluded_token_merge": excluded, "null_battery": context.null_seed is not None,
                 "null": "idiom/compositional labels permuted within adjective groups"}
        results: list[TestResult] = []
        replicates: dict[TestKey, np.ndarray] = {}
        for row, k in enumerate((key, key.counterpart(FREQUENCY))):
            reps = effect_replicates(boots[row], out.null_mean[row])
            replicates[k] = reps
            more = extra if row == 0 else {
                "what": "the part of Delta that log p(noun | adjective) accounts for (ANCOVA); the paired "
                        "difference test - frequency is the class effect at equal collocation strength",
                "covariate_mean_idiom": float(trained.log_p_noun[phrases.idiom].mean()),
                "covariate_mean_compositional": float(trained.log_p_noun[~phrases.idiom].mean())}
            results.append(mc_result(k, context.claim, statistic_name=STAT if row == 0 else f"frequency part of {STAT}",
                                     effect_name=EFFECT, observed=float(observed[row]), null=out, row=row,
                                     replicates=reps, n=phrases.n, seed=context.seed, extra=more))
        results.extend(_control_results(controls, phrases, key, context, weights, perm_seed, replicates))
        marked = mark_roles(ResultSet(results), lambda r: r.control is None and r.method == METHOD)
        figure = {"by_frame": {f: {"idiom": float(trained.by_frame[i][phrases.idiom].mean()),
                                   "compositional": float(trained.by_frame[i][~phrases.idiom].mean())}
                               for i, f in enumerate(frames)}}
        return AnalysisOutput(marked, {"composition": figure}, replicates)


def _restrict(m: comp.Measured, rows: np.ndarray) -> comp.Measured:
    return comp.Measured(m.scalar[rows], m.by_frame[:, rows], m.signed[rows], m.log_p_noun[rows], m.consistent[rows])


def _describe(phrases: comp.Phrases, m: comp.Measured) -> dict[str, Any]:
    """Class means a reader checks first: the interaction, its sign, the collocation proxy, and the extremes."""
    idiom = phrases.idiom
    order = np.argsort(-m.scalar)
    return {
        "n_idiom": int(idiom.sum()), "n_compositional": int((~idiom).sum()),
        "mean_abs_interaction_idiom": float(m.scalar[idiom].mean()),
        "mean_abs_interaction_compositional": float(m.scalar[~idiom].mean()),
        "mean_interaction_idiom": float(m.signed[idiom].mean()),
        "mean_interaction_compositional": float(m.signed[~idiom].mean()),
        "log_p_noun_idiom": float(m.log_p_noun[idiom].mean()),
        "log_p_noun_compositional": float(m.log_p_noun[~idiom].mean()),
        "largest_interaction": [phrases.texts[i] for i in order[:5]],
        "smallest_interaction": [phrases.texts[i] for i in order[-5:]],
    }


def _control_results(controls: list[tuple[Any, comp.Measured]], phrases: comp.Phrases, key: TestKey,
                     context: RunContext, weights: np.ndarray, perm_seed: int,
                     replicates: dict[TestKey, np.ndarray]) -> list[TestResult]:
    """Delta on the untrained twins (one seed-mean result) and the spectrum twin: same phrases, permutations and
    resamples (a fixed number of draws: controls decide nothing on their own)."""
    labels = phrases.idiom.astype(np.float64)
    groups: dict[str, list[comp.Measured]] = {}
    for control, measured in controls:
        groups.setdefault(control.name, []).append(measured)
    results = []
    plan = SequentialPlan.fixed(context.n_permutations)
    for name, runs in groups.items():
        def draw(offset: int, count: int, runs: list[comp.Measured] = runs) -> np.ndarray:
            y = labels[comp.within_group_permutations(phrases.group, count, perm_seed, offset)]
            return np.mean([comp.class_difference(r.scalar, y) for r in runs], axis=0)  # type: ignore[no-any-return]

        per_seed = np.array([comp.class_difference(r.scalar, labels)[0] for r in runs])
        out = sequential_null(draw, [float(per_seed.mean())], plan)
        y = labels[None, :] * np.ones_like(weights)
        boots = np.stack([comp.class_difference(r.scalar, y, weights) for r in runs])
        reps = effect_replicates(boots, out.null_mean[0])
        k = key.counterpart(name)
        replicates[k] = reps if len(runs) > 1 else reps[0]
        extra = {"per_seed": [float(v - out.null_mean[0]) for v in per_seed],
                 "mean_abs_interaction_idiom": float(np.mean([r.scalar[phrases.idiom].mean() for r in runs])),
                 "mean_abs_interaction_compositional": float(np.mean([r.scalar[~phrases.idiom].mean()
                                                                      for r in runs]))}
        results.append(mc_result(k, context.claim, statistic_name=STAT, effect_name=EFFECT,
                                 observed=float(per_seed.mean()), null=out, row=0,
                                 replicates=reps if len(runs) > 1 else reps[0], n=phrases.n, seed=context.seed,
                                 extra=extra))
    return results
