"""C5: TCAV-style directional derivatives: does moving along the concept direction raise the target score, more
than along data-drawn placebo directions (relabelled mass-mean)? On the model and on every control model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from conceptspace.analyses._base import (
    CAUSAL_SMOKE_PARAMS,
    Analysis,
    AnalysisOutput,
    ConceptPromptParams,
    RunContext,
    is_int,
    param,
    register,
)
from conceptspace.analyses._causal_runs import (
    CausalSubject,
    ControlRun,
    causal_subjects,
    combine_controls,
)
from conceptspace.analyses.causal import directional_derivative_test
from conceptspace.analyses.causal._derivatives import DerivativeResult
from conceptspace.stats import ResultSet, SequentialPlan


@dataclass(frozen=True)
class DerivativesParams(ConceptPromptParams):
    n_random: int = param(50, check=is_int, type_name="integer",
                          doc="placebo CAVs drawn first (more are drawn until the primary decision is settled)")


@register
class DerivativesAnalysis(Analysis):
    kind = "derivatives"
    claims = ("C5",)
    Params = DerivativesParams
    description = "TCAV-style directional derivatives of the target score along the concept vs data-drawn placebos"
    smoke_params: ClassVar[dict[str, Any]] = {**CAUSAL_SMOKE_PARAMS}

    def run(self, context: RunContext, params: DerivativesParams) -> AnalysisOutput:
        subjects = causal_subjects(context, params)
        start = max(params.n_random, context.n_permutations)
        trained = self._test(subjects[0], context, params, context.sequential_plan(start))
        results = list(trained.results)
        replicates = dict(trained.replicates)
        runs = []
        for subject in subjects[1:]:  # controls decide nothing: a fixed number of placebos
            tcav = self._test(subject, context, params, SequentialPlan.fixed(start))
            nulls = {"directional_derivative": (tcav.random_derivatives.mean(axis=1), False),
                     "tcav_score": (tcav.random_scores, True)}
            runs.append(ControlRun(subject, tcav.results, tcav.replicates, nulls))
        tested = [r for r in trained.results if r.control is None]
        controls, control_replicates = combine_controls(tested, runs, seed=context.seed, level=0.95)
        replicates.update(control_replicates)
        return AnalysisOutput(ResultSet(results + controls), replicates=replicates)

    @staticmethod
    def _test(subject: CausalSubject, context: RunContext, params: DerivativesParams,
              plan: SequentialPlan) -> DerivativeResult:
        return directional_derivative_test(
            subject.model, subject.mass_mean_direction(), params.prompts, (params.positive, params.negative),
            site=subject.site, placebos=subject.placebos(context.seed), plan=plan, n_bootstrap=context.n_bootstrap,
            seed=context.seed, dataset=subject.concept_set.name, claim=context.claim,
        )
