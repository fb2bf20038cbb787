"""N3: in-context learning is a composed vector. Add a task's mean k-shot context vector to zero-shot prompts.

The claim (v1 point 3): "in-context learning and generalization are simply the result of different contexts
composing into different vectors". Protocol after Todd et al. (2023, function vectors), in its simplest form (their
"layer average" vector, which Hendel et al. 2023 call a task vector): the mean residual state at one layer, last
position, of ``n_icl`` k-shot prompts of a task is added at that layer and position to zero-shot prompts of held-out
queries of the same task; the answer's log-probability should rise.

**Primary statistic**: the mean over zero-shot test prompts (all tasks pooled) of the answer log-prob gain (nats)
from adding the prompt's own task vector. **Null** (placebos: the other tasks' vectors): the tasks' vectors
permuted among the tasks (Monte Carlo, sequential; the gain of every vector on every prompt is measured once, all
vectors of a prompt stacked along the batch in one forward; uniform permutations, so the p-value is exact).
**Effect** = statistic - null mean = (1 - 1/T) (own gain - mean gain of the other tasks' vectors): how much more
the own task's vector raises the answer than a vector of the same construction from a random task (format, length
and the generic "an answer comes next" state cancel; country_capital and country_currency share their inputs, so
the query domain alone cannot pass). **Interval**: two-level bootstrap, prompts within task x placebo vectors.
Controls: norm-matched random vectors (``random_direction``, ``n_random`` per task, a rank p against them), the
untrained twins and the spectrum-matched twin (the whole procedure on each). ``--null``: every task's vector is
built from k-shot prompts whose demonstrations and queries are pairs pooled over all tasks with their answers
shuffled, so the vectors carry no task identity and are exchangeable among tasks.
The raw gain of the own vector over the unedited prompt (does it "recover" anything at all) is reported in the
primary test's ``extra`` and as an exploratory test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from conceptspace.activations import extract
from conceptspace.analyses._base import (
    LAYERS_TYPE,
    Analysis,
    AnalysisOutput,
    RunContext,
    block_indices,
    is_int,
    is_layers,
    is_number,
    is_str,
    list_of,
    param,
    register,
)
from conceptspace.analyses._icl import (
    IclTask,
    answer_ids,
    check_tasks,
    icl_prompt,
    load_task,
    matched_replicates,
    next_token_logprobs,
    percentile_ci,
    shuffled_answers,
    smallest_stratum,
    stratified_resamples,
)
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.stats import ResultSet, SequentialPlan, TestKey, TestResult, null_extra, sequential_null
from conceptspace.stats._paired import seed_mean_replicates

TEST = "function_vector"
METHOD = "mean_kshot_state_added"
EFFECT_NAME = "answer log-prob gain (nats) minus the null mean (other tasks' vectors)"


@dataclass(frozen=True)
class FunctionVectorParams:
    tasks: list[str] = param(["country_capital", "country_currency", "present_past", "singular_plural",
                              "capitalize", "next_item"], check=list_of(is_str),
                             type_name="list of function_vectors pair subsets (>= 3; 6 give 720 permutations)")
    layers: Any = param([0.3], check=is_layers, type_name=LAYERS_TYPE, doc="first = primary unless `primary`")
    shots: int = param(5, check=is_int, type_name="integer")
    n_icl: int = param(8, check=is_int, type_name="integer", doc="k-shot prompts averaged into a task's vector")
    n_test: int = param(12, check=is_int, type_name="integer", doc="zero-shot test prompts per task")
    n_random: int = param(4, check=is_int, type_name="integer", doc="norm-matched random vectors per task")
    strength: float = param(1.0, check=is_number, type_name="number", doc="multiple of the vector added")


# --------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Prompts:
    """Per task: the k-shot prompts its vector averages, and held-out zero-shot test prompts with answers."""

    tasks: tuple[str, ...]
    icl: tuple[tuple[str, ...], ...]  # per task
    test_task: np.ndarray  # (n,) task index, contiguous per task
    test_prompts: tuple[str, ...]
    test_answers: tuple[str, ...]


def build_prompts(params: FunctionVectorParams, seed: int, null_seed: int | None = None) -> Prompts:
    """Seeded split of each task into test queries and the pairs of its k-shot prompts (disjoint)."""
    names = check_tasks(params.tasks)
    if len(names) < 3:
        raise InvalidInputError(f"the task-permutation null needs at least 3 tasks; got {len(names)}")
    if params.shots < 1 or params.n_icl < 1 or params.n_test < 2:
        raise InvalidInputError("need shots >= 1, n_icl >= 1 and n_test >= 2")
    tasks = [load_task(n) for n in names]
    need = params.n_test + params.shots + 1
    for task in tasks:
        if len(task) < need:
            raise InvalidInputError(f"task {task.name} has {len(task)} pairs; n_test + shots + 1 = {need} needed")
    pool = _null_pool(tasks, null_seed) if null_seed is not None else None
    icl: list[tuple[str, ...]] = []
    test_task: list[int] = []
    test_prompts: list[str] = []
    test_answers: list[str] = []
    for t, task in enumerate(tasks):
        rng = np.random.default_rng([seed, 5150, t])
        order = rng.permutation(len(task))
        test, train = order[:params.n_test], order[params.n_test:]
        source = pool if pool is not None else task
        source_idx = np.arange(len(source)) if pool is not None else train
        prompts = []
        for _ in range(params.n_icl):
            picked = rng.choice(source_idx, size=params.shots + 1, replace=False)
            prompts.append(icl_prompt([(source.inputs[i], source.outputs[i]) for i in picked[:-1]],
                                      source.inputs[picked[-1]]))
        icl.append(tuple(prompts))
        for i in test:
            test_task.append(t)
            test_prompts.append(icl_prompt([], task.inputs[i]))
            test_answers.append(task.outputs[i])
    return Prompts(tuple(names), tuple(icl), np.asarray(test_task), tuple(test_prompts), tuple(test_answers))


def _null_pool(tasks: list[IclTask], null_seed: int) -> IclTask:
    """Every task's pairs pooled, answers shuffled across the pool: the null battery's source of demonstrations."""
    inputs = [x for t in tasks for x in t.inputs]
    outputs = shuffled_answers([y for t in tasks for y in t.outputs], np.random.default_rng([null_seed, 99]))
    return IclTask("null_pool", tuple(inputs), tuple(outputs))


# ------------------------------------------------------------------------------------------- measurement
@dataclass(frozen=True)
class Measured:
    """One model at one site: ``gain`` (n, T) answer log-prob gain of test prompt i with task s's vector;
    ``random_gain`` (n, R) with the prompt's task's R norm-matched random vectors; the vectors' norms (T,)."""

    gain: np.ndarray
    random_gain: np.ndarray
    norms: np.ndarray


def measure_vectors(model: ConceptModel, prompts: Prompts, site: str, params: FunctionVectorParams,
                    seed: int) -> Measured:
    """Task vectors from the k-shot prompts (one extraction), then per task one forward of its test prompts with
    the unedited row, every task's vector and its random vectors stacked along the batch."""
    flat = [p for group in prompts.icl for p in group]
    states = np.asarray(extract(model, flat, sites=[site], position="last", progress=False)[site], dtype=np.float64)
    sizes = [len(group) for group in prompts.icl]
    bounds = np.cumsum([0, *sizes])
    vectors = np.vstack([states[bounds[t]:bounds[t + 1]].mean(axis=0) for t in range(len(sizes))])
    vectors = params.strength * vectors
    norms = np.linalg.norm(vectors, axis=1)
    n_tasks = len(prompts.tasks)
    ids = answer_ids(model, prompts.test_answers)
    gain = np.empty((prompts.test_task.size, n_tasks))
    random_gain = np.empty((prompts.test_task.size, params.n_random))
    rng = np.random.default_rng([seed, 60606])
    for t in range(n_tasks):
        members = np.flatnonzero(prompts.test_task == t)
        randoms = rng.standard_normal((params.n_random, vectors.shape[1]))
        randoms *= (norms[t] / np.linalg.norm(randoms, axis=1))[:, None]
        edits = np.vstack([np.zeros((1, vectors.shape[1])), vectors, randoms])
        targets = np.unique(ids[members])
        logp = next_token_logprobs(model, [prompts.test_prompts[i] for i in members], vectors=edits, site=site,
                                   target_ids=targets.tolist())  # (edits, m, targets)
        column = np.searchsorted(targets, ids[members])
        own = logp[:, np.arange(members.size), column]  # (edits, m)
        gain[members] = (own[1:1 + n_tasks] - own[0]).T
        random_gain[members] = (own[1 + n_tasks:] - own[0]).T
    return Measured(gain, random_gain, norms)


# -------------------------------------------------------------------------------------------- statistics
def task_permutations(n_tasks: int, count: int, seed: int, offset: int) -> np.ndarray:
    """(count, T) uniformly random permutations of the tasks (the placebo assignment of vectors to tasks), batch
    ``offset`` seeded from (seed, offset). All permutations, the identity included, so the p-value is exact
    (a derangement-only null is anti-conservative: its draws never reuse the own-vector gains the observed
    statistic is made of; measured 8% rejections at 5% on pure noise)."""
    rng = np.random.default_rng([seed, 424242, offset])
    return np.argsort(rng.random((count, n_tasks)), axis=1)


def permuted_gain(gain: np.ndarray, task: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """(count,) mean over prompts of the gain from the vector each permutation assigns to the prompt's task (the
    identity permutation gives the observed statistic)."""
    return gain[np.arange(task.size)[None, :], perms[:, task]].mean(axis=1)


#: Intervals here are the two-level bootstrap alone (``widen=False``): the permutation null includes the identity, so
#: its spread grows with the signal (the own vector lands on 1/T of the prompts), and widening to it over-covered
#: (100% on planted data; 94.5% on noise and 97.5% on planted without it: tests/unit/test_icl_claims.py).
def two_level_replicates(gain: np.ndarray, task: np.ndarray, resamples: np.ndarray, seed: int) -> np.ndarray:
    """(B,) replicates of the effect (1 - 1/T) mean_i (gain[i, own] - mean_{s != own} gain[i, s]) (the permutation
    null's mean gives the own vector weight 1/T): prompts resampled within task (``resamples``) and, in the same
    replicate, the T - 1 placebo vectors of every prompt resampled with replacement, so the interval carries both
    the prompts' and the placebos' sampling noise."""
    rng = np.random.default_rng([seed, 777])
    n_tasks = gain.shape[1]
    draws = rng.integers(0, n_tasks - 1, size=(resamples.shape[0], n_tasks - 1))
    own = gain[np.arange(task.size), task]
    out = np.empty(resamples.shape[0])
    for b in range(resamples.shape[0]):
        rows = resamples[b]
        cols = draws[b][None, :] + (draws[b][None, :] >= task[rows][:, None])  # skip each prompt's own task
        out[b] = (1.0 - 1.0 / n_tasks) * (own[rows] - gain[rows[:, None], cols].mean(axis=1)).mean()
    return out


def random_placebo_replicates(own: np.ndarray, random_gain: np.ndarray, resamples: np.ndarray, seed: int) -> (
    np.ndarray
):
    """(B,) replicates of mean own gain - mean random-vector gain, prompts x random vectors resampled."""
    rng = np.random.default_rng([seed, 888])
    r = random_gain.shape[1]
    picks = rng.integers(0, r, size=(resamples.shape[0], r))
    return np.array([own[rows].mean() - random_gain[rows][:, picks[b]].mean()
                     for b, rows in enumerate(resamples)])


# ----------------------------------------------------------------------------------------------- the kind
@register
class FunctionVectorAnalysis(Analysis):
    kind = "function_vector"
    claims = ("N3",)
    Params = FunctionVectorParams
    description = ("mean k-shot context vector added to zero-shot prompts (function vector) vs other tasks' vectors "
                   "and norm-matched random vectors; twins")
    smoke_params: ClassVar[dict[str, Any]] = {"tasks": ["country_capital", "present_past", "singular_plural"],
                                              "layers": [1], "shots": 1, "n_icl": 2, "n_test": 3, "n_random": 2}

    def run(self, context: RunContext, params: FunctionVectorParams) -> AnalysisOutput:
        prompts = build_prompts(params, context.seed, context.null_seed)
        sites = [f"layer.{b}" for b in block_indices(context.model, params.layers)]
        primary = context.primary_site if context.primary_site in sites else sites[0]
        if context.primary_site is not None and context.primary_site not in sites:
            sites = [context.primary_site, *sites]
            primary = context.primary_site
        task = prompts.test_task
        n_tasks = len(prompts.tasks)
        resamples = stratified_resamples(task, context.n_bootstrap, context.seed)
        results: list[TestResult] = []
        replicates: dict[TestKey, np.ndarray] = {}
        for site in sites:
            trained = measure_vectors(context.model, prompts, site, params, context.seed)
            controls = [(c, measure_vectors(c.model, prompts, site, params, context.seed))
                        for c in context.control_models()]
            models = [trained] + [m for _, m in controls]
            untrained = [i + 1 for i, (c, _) in enumerate(controls) if c.name == "untrained"]

            def rows(perms: np.ndarray, models: list[Measured] = models, untrained: list[int] = untrained) -> (
                np.ndarray
            ):
                per = [permuted_gain(m.gain, task, perms) for m in models]
                if untrained:
                    per.append(np.mean([per[i] for i in untrained], axis=0))
                return np.vstack(per)

            identity = np.arange(n_tasks)[None, :]
            observed = rows(identity)[:, 0]
            def draw(offset: int, count: int, rows: Any = rows) -> np.ndarray:
                return rows(task_permutations(n_tasks, count, context.seed, offset))  # type: ignore[no-any-return]

            out = sequential_null(draw, observed, context.sequential_plan(), decide=(0,) if site == primary else ())
            key = TestKey(TEST, "function_vectors", METHOD, site=site, position="last")
            is_primary = site == primary
            own = trained.gain[np.arange(task.size), task]
            reps = matched_replicates(float(out.observed[0] - out.null_mean[0]),
                                      two_level_replicates(trained.gain, task, resamples, context.seed), out.null[0],
                                      stratum_size=smallest_stratum(task), widen=False)
            low, high = percentile_ci(reps)
            raw_low, raw_high = percentile_ci(own[resamples].mean(axis=1))
            extra: dict[str, Any] = {
                **null_extra(out, 0), "role": "primary" if is_primary else "exploratory",
                "own_gain_nats": float(own.mean()), "own_gain_ci": [raw_low, raw_high],
                "vector_norms": dict(zip(prompts.tasks, trained.norms.tolist(), strict=True)),
                "gain_matrix": {prompts.tasks[t]: dict(zip(prompts.tasks, trained.gain[task == t].mean(axis=0)
                                                           .tolist(), strict=True)) for t in range(n_tasks)},
                "own_top_task_share": float(np.mean(np.argmax(trained.gain, axis=1) == task)),
            }
            results.append(_test(key, context.claim, out, 0, low, high, task.size, extra))
            if is_primary:
                replicates[key] = reps
            results.append(_raw_gain_test(key, context.claim, own, resamples, context.seed))
            results += _raw_gain_controls(key, context.claim, controls, task, resamples, context.seed)
            results += self._random_control(key, context, trained, own, task, resamples, is_primary, replicates)
            results += _control_tests(key, context, controls, out, task, resamples, is_primary, replicates)
        return AnalysisOutput(ResultSet(results), {}, replicates)

    @staticmethod
    def _random_control(key: TestKey, context: RunContext, trained: Measured, own: np.ndarray, task: np.ndarray,
                        resamples: np.ndarray, is_primary: bool, replicates: dict[TestKey, np.ndarray]) -> (
        list[TestResult]
    ):
        """The own vector against norm-matched random vectors: rank p over the random vectors' mean gains."""
        random_means = trained.random_gain.mean(axis=0)  # (R,) each random vector's mean gain over prompts
        observed = float(own.mean())
        out = sequential_null(lambda offset, count: random_means[None, offset:offset + count], observed,
                              SequentialPlan.fixed(random_means.size), decide=())
        effect = observed - float(out.null_mean[0])
        reps = matched_replicates(effect, random_placebo_replicates(own, trained.random_gain, resamples,
                                                                    context.seed), out.null[0],
                                  stratum_size=smallest_stratum(task), widen=False)
        low, high = percentile_ci(reps)
        this = key.replace(control="random_direction")
        if is_primary:
            replicates[this] = reps
        result = TestResult(key=this, claim=context.claim, statistic_name="mean answer log-prob gain (nats)",
                            statistic=observed, effect_size_name="gain minus the norm-matched random vectors' mean",
                            effect_size=effect, ci_low=low, ci_high=high, p_value=float(out.p_value[0]),
                            n=own.size, extra={**null_extra(out, 0), "role": "control"})
        return [result]


def _test(key: TestKey, claim: str, out: Any, row: int, low: float, high: float, n: int,
          extra: dict[str, Any]) -> TestResult:
    statistic = float(out.observed[row])
    return TestResult(key=key, claim=claim, statistic_name="mean answer log-prob gain from the task's own vector",
                      statistic=statistic, effect_size_name=EFFECT_NAME,
                      effect_size=statistic - float(out.null_mean[row]), ci_low=low, ci_high=high,
                      p_value=float(out.p_value[row]), n=n, extra=extra)


def _raw_gain_test(key: TestKey, claim: str, own: np.ndarray, resamples: np.ndarray, seed: int) -> TestResult:
    """Exploratory: does the own vector raise the answer at all (gain over the unedited prompt)? Sign-flip p."""
    rng = np.random.default_rng([seed, 4711])
    flips = rng.choice([-1.0, 1.0], size=(999, own.size))
    null = (flips * own[None, :]).mean(axis=1)
    p = (1.0 + np.sum(null >= own.mean())) / (null.size + 1.0)
    low, high = percentile_ci(own[resamples].mean(axis=1))
    return TestResult(key=key.replace(method="own_vector_gain_over_zero_shot"), claim=claim,
                      statistic_name="mean answer log-prob gain (nats)", statistic=float(own.mean()),
                      effect_size_name="gain over the unedited zero-shot prompt (nats)",
                      effect_size=float(own.mean()), ci_low=low, ci_high=high, p_value=float(p), n=own.size,
                      extra={"role": "exploratory", "n_permutations": 999})


def _raw_gain_controls(key: TestKey, claim: str, controls: list[tuple[Any, Measured]], task: np.ndarray,
                       resamples: np.ndarray, seed: int) -> list[TestResult]:
    """The exploratory raw gain on the control models: one untrained counterpart (mean over seeds, seeds resampled
    in the interval) and one per other control."""
    out: list[TestResult] = []
    untrained = [m.gain[np.arange(task.size), task] for c, m in controls if c.name == "untrained"]
    if untrained:
        one = _raw_gain_test(key, claim, np.mean(untrained, axis=0), resamples, seed)
        seeds = np.vstack([g[resamples].mean(axis=1) for g in untrained])
        low, high = percentile_ci(seed_mean_replicates(seeds, seed))
        out.append(one.replace(control="untrained", ci_low=low, ci_high=high,
                               extra={**dict(one.extra), "role": "control",
                                      "per_seed": [float(g.mean()) for g in untrained]}))
    for c, m in controls:
        if c.name != "untrained":
            one = _raw_gain_test(key, claim, m.gain[np.arange(task.size), task], resamples, seed)
            out.append(one.replace(control=c.name, extra={**dict(one.extra), "role": "control"}))
    return out


def _control_tests(key: TestKey, context: RunContext, controls: list[tuple[Any, Measured]], out: Any,
                   task: np.ndarray, resamples: np.ndarray, is_primary: bool,
                   replicates: dict[TestKey, np.ndarray]) -> list[TestResult]:
    """One untrained counterpart (seed mean; two-level over seeds) and one spectrum-matched counterpart."""
    results: list[TestResult] = []
    untrained = [(i + 1, m) for i, (c, m) in enumerate(controls) if c.name == "untrained"]
    if untrained:
        row = len(controls) + 1
        per_seed = [float(out.observed[i] - out.null_mean[i]) for i, _ in untrained]
        seeds = np.vstack([matched_replicates(per_seed[j], two_level_replicates(m.gain, task, resamples,
                                                                                context.seed), out.null[i],
                                              stratum_size=smallest_stratum(task), widen=False)
                           for j, (i, m) in enumerate(untrained)])
        low, high = percentile_ci(seed_mean_replicates(seeds, context.seed))
        this = key.counterpart("untrained")
        result = _test(this, context.claim, out, row, low, high, task.size,
                       {**null_extra(out, row), "role": "control", "per_seed": per_seed})
        results.append(result.replace(effect_size=float(np.mean(per_seed))))
        if is_primary:
            replicates[this] = seeds
    for i, (c, m) in enumerate(controls):
        if c.name == "untrained":
            continue
        row = i + 1
        reps = matched_replicates(float(out.observed[row] - out.null_mean[row]),
                                  two_level_replicates(m.gain, task, resamples, context.seed), out.null[row],
                                  stratum_size=smallest_stratum(task), widen=False)
        low, high = percentile_ci(reps)
        this = key.counterpart(c.name)
        results.append(_test(this, context.claim, out, row, low, high, task.size,
                             {**null_extra(out, row), "role": "control"}))
        if is_primary:
            replicates[this] = reps
    return results
