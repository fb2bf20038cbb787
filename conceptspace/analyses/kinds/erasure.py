"""C5: LEACE erasure of a binary concept at one layer: the probe falls to chance; do predictions move more
than under erasure of random subspaces? On the model and on every control model."""

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
)
from conceptspace.analyses.causal import erasure_test
from conceptspace.analyses.causal._erasure import ErasureResult
from conceptspace.stats import ResultSet, SequentialPlan


@dataclass(frozen=True)
class ErasureParams(ConceptPromptParams):
    off_target_prompts: list[str] | None = param(None, check=optional(list_of(is_str)), type_name="list of strings")
    n_random: int = param(40, check=is_int, type_name="integer",
                          doc="random subspaces erased as a reference (the primary placebos are LEACE erasers of "
                              "random relabellings, drawn sequentially); >= 39 for a 95% rank interval")
    n_splits: int = param(5, check=is_int, type_name="integer")
    probe_permutations: int | None = param(
        None, check=optional(lambda v: is_int(v) and v >= 1), type_name="positive integer",
        doc="label permutations of the probe rows (a fresh probe before and after erasure: is the concept linearly "
            "gone?), exploratory; each refits the probe in every fold; None: the run's n_permutations")
    n_placebos: int | None = param(None, check=optional(lambda v: is_int(v) and v >= 1), type_name="positive integer",
                                   doc="a fixed number of relabelled-LEACE placebo erasers on the model and on each "
                                       "control (None: drawn sequentially under the run's plan); each costs a set "
                                       "of forwards, and a secondary analysis decides nothing on them; p >= 1/(B+1)")


@register
class ErasureAnalysis(Analysis):
    kind = "erasure"
    claims = ("C5",)
    Params = ErasureParams
    description = ("LEACE erasure: probe accuracy before/after, prediction change vs LEACE erasure of random "
                   "relabellings (random subspaces as a reference)")
    smoke_params: ClassVar[dict[str, Any]] = {**CAUSAL_SMOKE_PARAMS, "n_splits": 3}

    def run(self, context: RunContext, params: ErasureParams) -> AnalysisOutput:
        subjects = causal_subjects(context, params)
        if params.n_placebos is not None:  # fixed: nothing is decided on them (a secondary analysis)
            start, plan = params.n_placebos, SequentialPlan.fixed(params.n_placebos)
        else:
            start = min(context.n_permutations, FORWARD_START)  # each placebo erasure costs forwards
            plan = context.sequential_plan(start)
        trained = self._erase(subjects[0], context, params, plan)
        replicates = dict(trained.replicates)
        runs = []
        for subject in subjects[1:]:
            erased = self._erase(subject, context, params, SequentialPlan.fixed(start))
            runs.append(ControlRun(subject, erased.results, erased.replicates, {"LEACE": (erased.placebo_null, False)}))
        tested = [r for r in trained.results if r.control is None]
        controls, control_replicates = combine_controls(tested, runs, seed=context.seed, level=0.95)
        replicates.update(control_replicates)
        return AnalysisOutput(ResultSet(list(trained.results) + controls), replicates=replicates)

    @staticmethod
    def _erase(subject: CausalSubject, context: RunContext, params: ErasureParams,
               plan: SequentialPlan) -> ErasureResult:
        cs = subject.concept_set
        return erasure_test(
            subject.model, subject.X, cs.labels, cs.groups, site=subject.site, prompts=params.prompts,
            targets=(params.positive, params.negative), off_target_prompts=params.off_target_prompts,
            n_random=params.n_random, n_splits=params.n_splits,
            n_permutations=params.probe_permutations or context.n_permutations,
            n_bootstrap=context.n_bootstrap, seed=context.seed, dataset=cs.name, claim=context.claim,
            relabel=subject.relabel(), plan=plan,
        )
