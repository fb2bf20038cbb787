"""C5: steer along the mass-mean direction of a binary concept set, against data-drawn placebo directions
(mass-mean directions of random relabellings of the same words), on the model and on every control model.

With ``held_out_prompts`` the strength grid is chosen on them (and the off-target prompts) as the largest candidate
whose off-target KL at the concept stays under ``kl_cap`` (:mod:`~conceptspace.analyses.causal._strength_select`),
so a slope bought by breaking the model cannot count; the control models run the model's relative grid at their
own held-out activation scale (the same dose in each model's units; their own selection is recorded, not used).
Nothing under the cap: the rows carry ``not_testable`` (verdict "not testable as run")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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
from conceptspace.analyses.causal._inputs import as_targets, require_causal, unit_direction
from conceptspace.analyses.causal._steering import SteeringResult
from conceptspace.analyses.causal._strength_select import (
    DEFAULT_CANDIDATES,
    DEFAULT_KL_CAP,
    StrengthSelection,
    candidate_grid,
    is_monotone,
    select_strengths,
)
from conceptspace.errors import InvalidInputError
from conceptspace.stats import ResultSet, SequentialPlan, TestResult

#: placebo draws of each control model (+/-u pairs: half as many directions). Controls decide nothing: their
#: draws only set their own interval's direction-level spread, which the paired difference with the model reads
#: (fewer draws: a noisier, wider interval, never an easier pass). With 60 prompts every direction costs 240
#: forward rows, and 4 control models at the model's 199 draws were 80% of a 9-minute CPU run.
CONTROL_PLACEBOS = 49

#: the grid of a run that neither gives strengths nor held-out prompts (the battery's grid before issue 14)
FIXED_GRID = (-1.0, -0.5, 0.5, 1.0)


@dataclass(frozen=True)
class SteeringParams(ConceptPromptParams):
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    strengths: list[float] | None = param(None, check=optional(list_of(is_number)), type_name="list of numbers",
                                          doc="a fixed grid: multiples of the site's activation scale added along "
                                              "the direction (symmetric about 0 makes each placebo's -u free); "
                                              "None: chosen under kl_cap when held_out_prompts are given, else "
                                              f"{list(FIXED_GRID)}")
    held_out_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings",
                                               doc="prompts disjoint from `prompts` on which the strength grid is "
                                                   "chosen (with off_target_prompts); the evaluation never sees them")
    kl_cap: float = param(DEFAULT_KL_CAP, check=is_number, type_name="number",
                          doc="nats: the mean off-target KL at the concept direction every chosen strength must stay "
                              "under (declared before the run)")
    candidate_strengths: list[float] = param(list(DEFAULT_CANDIDATES), check=list_of(is_number),
                                             type_name="list of numbers",
                                             doc="candidate maxima c (multiples of the activation scale); c's grid is "
                                                 "(-c, -c/2, +c/2, +c); the largest under kl_cap is chosen")
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
        _check_selection_params(params)
        subjects = causal_subjects(context, params)
        selections = [_selection(subject, params) for subject in subjects]
        grid, untestable = _grid(params, selections[0])
        # every placebo costs forwards: start small (the sequential plan doubles while the decision is open); a
        # grid that broke the cap decides nothing, so it draws the start only
        start = min(context.n_permutations, FORWARD_START)
        plan = context.sequential_plan(start) if untestable is None else SequentialPlan.fixed(start)
        trained = self._steer(subjects[0], context, params, plan, n_random=params.n_random, grid=grid,
                              selection=selections[0])
        model_rows = ResultSet(_annotate(trained, selections[0], untestable))
        primary = primary_row(model_rows)
        results = list(model_rows)
        replicates = dict(trained.replicates)
        curves: dict[str, pd.DataFrame] = {subjects[0].label: trained.dose_response()}
        runs = []
        for subject, selection in zip(subjects[1:], selections[1:], strict=True):
            # controls: the model's relative grid at their own held-out scale, a fixed, smaller number of placebos
            steer = self._steer(subject, context, params, SequentialPlan.fixed(min(start, CONTROL_PLACEBOS)),
                                n_random=0, grid=grid, selection=selection)
            rows = ResultSet(_annotate(steer, selection, untestable))
            runs.append(ControlRun(subject, rows, steer.replicates, {primary.method: (steer.null, False)}))
            curves.setdefault(f"{subject.control} twin", steer.dose_response())
        controls, control_replicates = combine_controls([primary], runs, seed=context.seed, level=0.95)
        replicates.update(control_replicates)
        return AnalysisOutput(ResultSet(results + controls), {"dose_response": curves}, replicates)

    @staticmethod
    def _steer(subject: CausalSubject, context: RunContext, params: SteeringParams, plan: SequentialPlan, *,
               n_random: int, grid: list[float], selection: StrengthSelection | None) -> SteeringResult:
        return steering_test(
            subject.model, subject.mass_mean_direction(), params.prompts, (params.positive, params.negative),
            site=subject.site, off_target_prompts=params.off_target_prompts, strengths=grid,
            placebos=subject.placebos(context.seed), n_random=n_random, n_orthogonal=0, plan=plan,
            n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=subject.concept_set.name,
            claim=context.claim, p_method=params.p_method,
            scale=None if selection is None else selection.scale,
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



def _check_selection_params(params: SteeringParams) -> None:
    """A fixed grid and a chosen one exclude each other; a chosen one needs both prompt sets, disjoint from the
    evaluation prompts (a shared prompt would let the selection see the evaluation)."""
    if params.held_out_prompts is None:
        return
    if params.strengths is not None:
        raise InvalidInputError("give either strengths (a fixed grid) or held_out_prompts (the grid chosen under "
                                "kl_cap on them), not both")
    if not params.held_out_prompts:
        raise InvalidInputError("held_out_prompts is empty: list the prompts the strength grid is chosen on, or "
                                "drop the key and give strengths")
    if not params.off_target_prompts:
        raise InvalidInputError("choosing the strength grid under kl_cap needs off_target_prompts (unrelated "
                                "prompts whose next-token KL the cap bounds)")
    shared = sorted(set(params.held_out_prompts) & set(params.prompts))
    if shared:
        raise InvalidInputError(f"held_out_prompts must be disjoint from prompts (the evaluation); both list "
                                f"{shared}")


def _selection(subject: CausalSubject, params: SteeringParams) -> StrengthSelection | None:
    """The subject's strength selection on the held-out and off-target prompts (None: a fixed grid)."""
    if params.held_out_prompts is None:
        return None
    unit = unit_direction(subject.mass_mean_direction(), subject.model.d_model)
    return select_strengths(subject.model, unit, params.held_out_prompts, params.off_target_prompts,
                            as_targets(subject.model, (params.positive, params.negative)), site=subject.site,
                            candidates=params.candidate_strengths, kl_cap=params.kl_cap)


def _grid(params: SteeringParams, selection: StrengthSelection | None) -> tuple[list[float], str | None]:
    """The evaluation grid, and why the test is not testable as run (None when it is). With nothing under the
    cap the smallest candidate still runs, so the report shows what that strength does, flagged."""
    if selection is None:
        return list(params.strengths if params.strengths is not None else FIXED_GRID), None
    if selection.chosen is None:
        return candidate_grid(selection.candidates[0]), selection.reason()
    return selection.grid, None


def _annotate(steer: SteeringResult, selection: StrengthSelection | None,
              untestable: str | None) -> list[TestResult]:
    """The test rows with the selection's record, whether the response is monotone over the grid, and the
    not-testable reason (which the verdict reads)."""
    extra: dict[str, Any] = {}
    if selection is not None:
        extra.update(selection.extra())
        order = sorted(range(steer.alphas.size), key=lambda i: float(steer.alphas[i]))
        change = steer.delta[0].mean(axis=1)
        extra["evaluation_monotone"] = is_monotone([float(change[i]) for i in order])
    if untestable is not None:
        extra["not_testable"] = untestable
    return [replace(row, extra={**row.extra, **extra}) for row in steer.results]
