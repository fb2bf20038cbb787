"""C5: steer along the mass-mean direction of a binary concept set, against data-drawn placebo directions
(mass-mean directions of random relabellings of the same words), on the model and on every control model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from conceptspace.analyses._base import (
    CAUSAL_SMOKE_PARAMS,
    Analysis,
    AnalysisOutput,
    ConceptPromptParams,
    RunContext,
    is_int,
    is_number,
    is_str,
    list_of,
    optional,
    param,
    register,
)
from conceptspace.analyses._causal_runs import (
    FORWARD_START,
    CausalSubject,
    ControlRun,
    causal_subjects,
    combine_controls,
    primary_row,
)
from conceptspace.analyses._figures import Figure, dose_response, to_png
from conceptspace.analyses.causal import steering_test
from conceptspace.analyses.causal._inputs import require_causal
from conceptspace.analyses.causal._steering import SteeringResult
from conceptspace.stats import ResultSet, SequentialPlan, TestResult


@dataclass(frozen=True)
class SteeringParams(ConceptPromptParams):
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    strengths: list[float] = param([-1.0, -0.5, 0.5, 1.0], check=list_of(is_number), type_name="list of numbers",
                                   doc="multiples of the site's activation scale added along the direction; a grid "
                                       "symmetric about 0 makes each placebo's -u free")
    n_random: int = param(20, check=is_int, type_name="integer",
                          doc="isotropic random directions: a reference beside the data-drawn placebos")
    p_method: str = param("rank", check=is_str, type_name="string",
                          doc="'rank' (placebo rank, sequential) or 'parametric' (t test on the placebo slopes)")


@register
class SteeringAnalysis(Analysis):
    kind = "steering"
    claims = ("C5",)
    Params = SteeringParams
    description = ("steering dose-response along a mass-mean direction vs data-drawn placebo directions "
                   "(relabelled mass-mean), isotropic ones as a reference")
    renamed_params: ClassVar[dict[str, str]] = {"alphas": "strengths"}
    smoke_params: ClassVar[dict[str, Any]] = {**CAUSAL_SMOKE_PARAMS, "strengths": [-1.0, 1.0]}

    def run(self, context: RunContext, params: SteeringParams) -> AnalysisOutput:
        require_causal(context.model, "steering")  # before extracting anything: an encoder has no next token
        subjects = causal_subjects(context, params)
        # every placebo costs forwards: start small (the sequential plan doubles while the decision is open)
        start = min(context.n_permutations, FORWARD_START)
        trained = self._steer(subjects[0], context, params, context.sequential_plan(start), n_random=params.n_random)
        primary = primary_row(trained.results)
        results = list(trained.results)
        replicates = dict(trained.replicates)
        curves: dict[str, pd.DataFrame] = {subjects[0].label: trained.dose_response()}
        runs = []
        for subject in subjects[1:]:  # controls: a fixed number of placebos (they decide nothing)
            steer = self._steer(subject, context, params, SequentialPlan.fixed(start), n_random=0)
            runs.append(ControlRun(subject, steer.results, steer.replicates, {primary.method: (steer.null, False)}))
            curves.setdefault(f"{subject.control} twin", steer.dose_response())
        controls, control_replicates = combine_controls([primary], runs, seed=context.seed, level=0.95)
        replicates.update(control_replicates)
        return AnalysisOutput(ResultSet(results + controls), {"dose_response": curves}, replicates)

    @staticmethod
    def _steer(subject: CausalSubject, context: RunContext, params: SteeringParams, plan: SequentialPlan, *,
               n_random: int) -> SteeringResult:
        return steering_test(
            subject.model, subject.mass_mean_direction(), params.prompts, (params.positive, params.negative),
            site=subject.site, off_target_prompts=params.off_target_prompts, strengths=params.strengths,
            placebos=subject.placebos(context.seed), n_random=n_random, n_orthogonal=0, plan=plan,
            n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=subject.concept_set.name,
            claim=context.claim, p_method=params.p_method,
        )

    def figures(self, name: str, title: str, results: Sequence[TestResult],
                figure_data: Mapping[str, Any]) -> list[Figure]:
        out = super().figures(name, title, results, figure_data)
        curves = figure_data.get("dose_response")
        if curves:
            png = to_png(dose_response(curves, title=f"{title}: dose-response"))
            out.append(Figure(f"{name}-dose-response.png", f"{name}: steering dose-response (95% CI band) vs the "
                              "placebo band of data-drawn placebo directions (hatched; dashed: their median)", png))
        return out

