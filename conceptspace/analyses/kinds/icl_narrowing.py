"""N2: context narrows, it does not teach. Where in the query's own zero-shot ranking do the answers come from that
demonstrations make more probable?

The claim (arXiv 2308.10874 v2, point 2): "no learning can take place in-context; context only narrows the subset
of paths sampled during decoding". Read as a statement about next-token distributions: the answers k
demonstrations lift were already ranked high by the query's own zero-shot distribution (a re-weighting of that
ranking); "teaching" would lift answers the query's zero-shot ranking did not place (far down, > ``far_rank``).

Items: queries of bundled function-vector tasks (demonstrations are other pairs of the task) and of an arbitrary
mapping, random word -> random label, generated from the suite seed (the query's own pair is shown among the
demonstrations, so the mapping can be picked up in context only by retrieval; no pretraining could have taught it).

**Primary statistic** (one per analysis, on the trained model, the pooled items):

    S = sum_i w_i L_i(i) / sum_i w_i,   w_i = max(0, log p_k(a_i | demos, x_i) - log p_0(a_i | x_i)),
    L_i(j) = -log10 rank of answer a_i in the zero-shot distribution of query x_j  (0 = top, -3 = rank 1000)

i.e. the zero-shot log-rank, under the query's own zero-shot prompt, of the answers the demonstrations lifted,
weighted by how much they were lifted. **Null**: the query's zero-shot ranking replaced by another query's of the
same task (a permutation of queries within task; Monte Carlo, sequential). **Effect** = S - null mean, in orders of
magnitude of rank: how much higher the query's own zero-shot ranking had placed the lifted answers than the
ranking of an unrelated query of the same task did (so answer frequency and answer type cancel).

How the claim can fail: if demonstrations lift answers that the query's own zero-shot ranking did not single out
(arbitrary-mapping labels copied from context, or only the answer type), the weight sits on items whose own and
other-query ranks agree, and the effect shrinks to 0 ("not supported" once its CI is below ``min_effect``); the
count of answers that jump from zero-shot rank > ``far_rank`` to k-shot top-1 is reported per task. If the
demonstrations lift nothing (mean lift's 95% CI reaches 0) there is no narrowing to attribute and the primary test
says "not testable". Controls: the same statistic with shuffled demonstrations (answers permuted among the
demonstrations, ``shuffled_demos``), the untrained twins and the spectrum-matched twin. ``--null``: each task's
answers are permuted across its items before any prompt is built (demonstrations included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from conceptspace.activations import memoized_record
from conceptspace.analyses._base import (
    Analysis,
    AnalysisOutput,
    RunContext,
    is_int,
    is_str,
    list_of,
    param,
    register,
)
from conceptspace.analyses._icl import (
    ARBITRARY,
    IclTask,
    answer_ids,
    arbitrary_task,
    check_tasks,
    choose_demos,
    icl_prompt,
    load_task,
    matched_replicates,
    next_token_logprobs,
    percentile_ci,
    ranks_of,
    shuffled_answers,
    smallest_stratum,
    stratified_resamples,
)
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel
from conceptspace.stats import ResultSet, TestKey, TestResult, null_extra, sequential_null
from conceptspace.stats._paired import seed_mean_replicates

TEST = "icl_narrowing"
METHOD = "zero_shot_log_rank_of_lifted_answers"
EFFECT_NAME = "log10-rank advantage of the own query over the null mean"


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


@dataclass(frozen=True)
class IclNarrowingParams:
    tasks: list[str] = param(["country_capital", "present_past", "singular_plural", "capitalize"],
                             check=list_of(is_str), type_name="list of function_vectors pair subsets")
    n_items: int = param(24, check=is_int, type_name="integer", doc="queries per function-vector task")
    n_arbitrary: int = param(24, check=is_int, type_name="integer",
                             doc="queries of the generated arbitrary mapping (0: none)")
    n_labels: int = param(6, check=is_int, type_name="integer", doc="labels of the arbitrary mapping")
    shots: int = param(4, check=is_int, type_name="integer")
    far_rank: int = param(1000, check=is_int, type_name="integer",
                          doc="a zero-shot rank above this counts as 'absent' (the jump count)")
    arbitrary_query_shown: bool = param(True, check=is_bool, type_name="boolean",
                                        doc="show the query's own arbitrary pair among the demonstrations")


# ------------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Items:
    """The queries (grouped by task, contiguous), their answers and their two demonstration sets."""

    tasks: tuple[str, ...]
    task: np.ndarray  # (n,) index into tasks
    queries: tuple[str, ...]
    answers: tuple[str, ...]
    demos: tuple[tuple[tuple[str, str], ...], ...]
    shuffled: tuple[tuple[tuple[str, str], ...], ...]

    @property
    def n(self) -> int:
        return len(self.queries)

    def prompts(self, which: str) -> list[str]:
        if which == "zero":
            return [icl_prompt([], q) for q in self.queries]
        demos = self.demos if which == "k" else self.shuffled
        return [icl_prompt(d, q) for d, q in zip(demos, self.queries, strict=True)]


def _task_list(params: IclNarrowingParams, seed: int) -> list[IclTask]:
    tasks = [load_task(name) for name in check_tasks(params.tasks)]
    if params.n_arbitrary < 0:
        raise InvalidInputError(f"n_arbitrary must be >= 0; got {params.n_arbitrary}")
    if params.n_arbitrary > 0:
        tasks.append(arbitrary_task(params.n_arbitrary, params.n_labels, seed))
    if not tasks:
        raise InvalidInputError("give at least one task (tasks) or an arbitrary mapping (n_arbitrary > 0)")
    return tasks


def build_items(params: IclNarrowingParams, seed: int, null_seed: int | None = None) -> Items:
    """Seeded queries and demonstrations of every task; under ``null_seed`` each task's answers are first permuted
    across its pairs (the mapping the prompts show and score is then a wrong one)."""
    if params.shots < 1 or params.n_items < 2:
        raise InvalidInputError(f"need shots >= 1 and n_items >= 2; got {params.shots}, {params.n_items}")
    names: list[str] = []
    task_idx: list[int] = []
    queries: list[str] = []
    answers: list[str] = []
    demos: list[tuple[tuple[str, str], ...]] = []
    shuffled: list[tuple[tuple[str, str], ...]] = []
    for t, task in enumerate(_task_list(params, seed)):
        rng = np.random.default_rng([seed, 4243, t])
        outputs = list(task.outputs)
        if null_seed is not None:
            outputs = [outputs[i] for i in np.random.default_rng([null_seed, 77, t]).permutation(len(outputs))]
        limit = params.n_arbitrary if task.name == ARBITRARY else params.n_items
        chosen = np.sort(rng.choice(len(task), size=min(limit, len(task)), replace=False))
        names.append(task.name)
        for q in chosen:
            picked = choose_demos(len(task), int(q), params.shots, rng,
                                  include_query=task.name == ARBITRARY and params.arbitrary_query_shown)
            pairs = tuple((task.inputs[i], outputs[i]) for i in picked)
            wrong = shuffled_answers([y for _, y in pairs], rng)
            task_idx.append(t)
            queries.append(task.inputs[int(q)])
            answers.append(outputs[int(q)])
            demos.append(pairs)
            shuffled.append(tuple((x, y) for (x, _), y in zip(pairs, wrong, strict=True)))
    return Items(tuple(names), np.asarray(task_idx), tuple(queries), tuple(answers), tuple(demos), tuple(shuffled))


# ------------------------------------------------------------------------------------------- measurement
@dataclass(frozen=True)
class Measured:
    """What one model says about the items: answer log-probs and ranks zero-shot, k-shot and with shuffled
    demonstrations, and ``L`` (n, n): -log10 rank of answer i under the zero-shot prompt of query j (same task;
    NaN across tasks)."""

    logp0: np.ndarray
    logpk: np.ndarray
    logps: np.ndarray
    rank0: np.ndarray
    rankk: np.ndarray
    ranks: np.ndarray
    L: np.ndarray


def measure_narrowing(model: ConceptModel, items: Items) -> Measured:
    """Three batched forwards (zero-shot, k-shot, shuffled demonstrations), last position, full vocabulary.
    Memoized (:func:`~conceptspace.activations.memoized_record`): the record keeps the answers' log-probs and
    ranks and ``L`` (n x n), not the (n, V) distributions."""
    spec: dict[str, Any] = {which: list(items.prompts(which)) for which in ("zero", "k", "shuffled")}
    spec.update(answers=list(items.answers), task=items.task)
    return memoized_record(model, "icl.narrowing", spec, Measured, lambda: _measure(model, items), version="1")


def _measure(model: ConceptModel, items: Items) -> Measured:
    """:func:`measure_narrowing` without the memo."""
    ids = answer_ids(model, items.answers)
    own = np.arange(items.n)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    L = np.full((items.n, items.n), np.nan)
    for which in ("zero", "k", "shuffled"):
        logp = next_token_logprobs(model, items.prompts(which))[0]  # (n, V)
        out[which] = (logp[own, ids], ranks_of(logp, ids)[own, own])
        if which == "zero":
            for t in np.unique(items.task):
                members = np.flatnonzero(items.task == t)
                ranks = ranks_of(logp[members], ids[members])  # (query j, answer i)
                L[np.ix_(members, members)] = -np.log10(ranks.T.astype(np.float64))
    return Measured(out["zero"][0], out["k"][0], out["shuffled"][0], out["zero"][1], out["k"][1],
                    out["shuffled"][1], L)


# -------------------------------------------------------------------------------------------- statistics
def lift_weights(logp0: np.ndarray, logpk: np.ndarray) -> np.ndarray:
    """How much the demonstrations lifted each answer (nats), 0 where they lowered it."""
    return np.maximum(0.0, np.asarray(logpk, dtype=np.float64) - np.asarray(logp0, dtype=np.float64))


def narrowing_statistic(weights: np.ndarray, L: np.ndarray, perm: np.ndarray, members: np.ndarray | None = None) -> (
    np.ndarray
):
    """S for permutations ``perm`` (count, n) (the identity row is the observed statistic): the lift-weighted
    mean of L[i, perm[i]] over ``members`` (default all items). NaN where nothing was lifted."""
    w = np.asarray(weights, dtype=np.float64)
    idx = np.arange(w.size) if members is None else np.asarray(members)
    values = L[idx[None, :], perm[:, idx]]  # (count, m)
    total = w[idx].sum()
    if total <= 0:
        return np.full(perm.shape[0], np.nan)
    return (values * w[idx]).sum(axis=1) / total


def within_task_permutations(task: np.ndarray, count: int, seed: int, offset: int) -> np.ndarray:
    """(count, n) permutations that send every item to an item of its own task (the null's draws); batch
    ``offset`` is seeded from (seed, offset), so the same seed gives the same draws."""
    rng = np.random.default_rng([seed, 8675309, offset])
    keys = np.asarray(task, dtype=np.float64)[None, :] + rng.random((count, task.size))
    order = np.argsort(keys, axis=1, kind="stable")  # items grouped by task, random order within each task
    grouped = np.argsort(task, kind="stable")  # the slots of each task, in item order
    perm = np.empty_like(order)
    perm[:, grouped] = order
    return perm


def own_minus_mean(L: np.ndarray, task: np.ndarray) -> np.ndarray:
    """d_i = L_i(i) - mean_j L_i(j) over the queries j of i's task: item i's contribution to the effect (the
    permutation null's expectation of L_i(perm(i)) is that mean)."""
    out = np.empty(task.size)
    for i in range(task.size):
        members = np.flatnonzero(task == task[i])
        out[i] = L[i, i] - np.nanmean(L[i, members])
    return out


def effect_replicates(weights: np.ndarray, d: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """(B,) bootstrap replicates of the effect sum w d / sum w over item resamples (B, n); NaN where nothing was
    lifted in a resample."""
    w = np.asarray(weights)[resamples]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.asarray(d)[resamples]).sum(axis=1) / np.where(total > 0, total, 1), np.nan)


@dataclass
class ModelStats:
    """One model's rows: weights, per-item effect contributions and, per row, the observed statistic."""

    measured: Measured
    weights: np.ndarray
    shuffled_weights: np.ndarray
    d: np.ndarray
    observed: dict[str, float] = field(default_factory=dict)


def _model_stats(measured: Measured, task: np.ndarray) -> ModelStats:
    return ModelStats(measured, lift_weights(measured.logp0, measured.logpk),
                      lift_weights(measured.logp0, measured.logps), own_minus_mean(measured.L, task))


# ----------------------------------------------------------------------------------------------- the kind
@register
class IclNarrowingAnalysis(Analysis):
    kind = "icl_narrowing"
    claims = ("N2",)
    Params = IclNarrowingParams
    description = ("zero-shot log-rank of the answers k-shot demonstrations lift (own query vs another query of the "
                   "task), function-vector tasks and an arbitrary mapping; shuffled demonstrations and twins")
    smoke_params: ClassVar[dict[str, Any]] = {"tasks": ["country_capital", "present_past"], "n_items": 6,
                                              "n_arbitrary": 6, "n_labels": 3, "shots": 1}

    def run(self, context: RunContext, params: IclNarrowingParams) -> AnalysisOutput:
        items = build_items(params, context.seed, context.null_seed)
        dataset = "function_vectors" + ("+arbitrary" if ARBITRARY in items.tasks else "")
        trained = _model_stats(measure_narrowing(context.model, items), items.task)
        controls = [(c, _model_stats(measure_narrowing(c.model, items), items.task)) for c in context.control_models()]
        resamples = stratified_resamples(items.task, context.n_bootstrap, context.seed)
        identity = np.arange(items.n)[None, :]
        groups = [("pooled", None)] + [(name, np.flatnonzero(items.task == t)) for t, name in enumerate(items.tasks)]

        # rows of the trained model's Monte Carlo null: pooled (primary), each task, pooled with shuffled demos
        def trained_rows(perm: np.ndarray) -> np.ndarray:
            rows = [narrowing_statistic(trained.weights, trained.measured.L, perm, members) for _, members in groups]
            rows.append(narrowing_statistic(trained.shuffled_weights, trained.measured.L, perm))
            return np.vstack(rows)

        def draw_for(rows: Callable[[np.ndarray], np.ndarray]) -> Callable[[int, int], np.ndarray]:
            return lambda offset, count: rows(within_task_permutations(items.task, count, context.seed, offset))

        observed = trained_rows(identity)[:, 0]
        out = sequential_null(draw_for(trained_rows), observed, context.sequential_plan(), decide=(0,))
        key = TestKey(TEST, dataset, METHOD, site="unembed", position="last")
        results: list[TestResult] = []
        replicates: dict[TestKey, np.ndarray] = {}
        lift = _mean_lift_interval(trained.measured, resamples)
        stratum = smallest_stratum(items.task)
        for row, (name, members) in enumerate(groups):
            sub = resamples if members is None else resamples[:, members]  # items are contiguous per task
            boot = effect_replicates(trained.weights, trained.d, sub)
            extra: dict[str, Any] = {**null_extra(out, row),
                                     "by_task": _describe(items, trained.measured, params.far_rank, members)}
            if row == 0:
                extra.update(role="primary", mean_lift_nats=lift[0], mean_lift_ci=[lift[1], lift[2]])
                if not (np.isfinite(lift[1]) and lift[1] > 0):
                    extra["not_testable"] = (f"the demonstrations did not lift the answers (mean lift {lift[0]:.3g} "
                                             f"nats, 95% CI [{lift[1]:.3g}, {lift[2]:.3g}]): there is no narrowing "
                                             "to attribute to the zero-shot ranking")
            else:
                extra["role"] = "exploratory"
            result, reps = _result(key.replace(detail=(name,)), context.claim, out, row, boot,
                                   items.n if members is None else members.size, extra, stratum)
            results.append(result)
            if row == 0:
                replicates[result.key] = reps
        shuffled_row = len(groups)
        boot = effect_replicates(trained.shuffled_weights, trained.d, resamples)
        result, reps = _result(key.replace(detail=("pooled",), control="shuffled_demos"), context.claim, out,
                               shuffled_row, boot, items.n, {**null_extra(out, shuffled_row), "role": "control"},
                               stratum)
        results.append(result)
        replicates[result.key] = reps
        for name, members in groups if controls else []:
            results_c, reps_c = _control_results(controls, items, key.replace(detail=(name,)), context, resamples,
                                                 draw_for, members)
            results += results_c
            if members is None:
                replicates.update(reps_c)
        by_task = _describe(items, trained.measured, params.far_rank, None)
        return AnalysisOutput(ResultSet(results), {"by_task": by_task}, replicates)


def _mean_lift_interval(measured: Measured, resamples: np.ndarray) -> tuple[float, float, float]:
    lift = measured.logpk - measured.logp0
    reps = lift[resamples].mean(axis=1)
    low, high = np.quantile(reps, [0.025, 0.975])
    return float(lift.mean()), float(low), float(high)


def _result(key: TestKey, claim: str, out: Any, row: int, boot: np.ndarray, n: int,
            extra: dict[str, Any], stratum: int) -> tuple[TestResult, np.ndarray]:
    """The test of one row of the null and its effect replicates (matched to the null's spread)."""
    statistic = float(out.observed[row])
    effect = statistic - float(out.null_mean[row])
    reps = matched_replicates(effect, boot, out.null[row], stratum_size=stratum)
    low, high = percentile_ci(reps)
    p = float(out.p_value[row]) if np.isfinite(statistic) else float("nan")
    result = TestResult(key=key, claim=claim, statistic_name="lift-weighted zero-shot log10-rank (own query)",
                        statistic=statistic, effect_size_name=EFFECT_NAME, effect_size=effect, ci_low=low,
                        ci_high=high, p_value=p, n=n, extra=extra)
    return result, reps


def _control_results(controls: list[tuple[Any, ModelStats]], items: Items, key: TestKey, context: RunContext,
                     resamples: np.ndarray, draw_for: Callable[..., Callable[[int, int], np.ndarray]],
                     members: np.ndarray | None = None) -> tuple[list[TestResult], dict[TestKey, np.ndarray]]:
    """One untrained counterpart (mean over twin seeds, two-level interval) and one spectrum-matched one, of the
    pooled test (``members`` None) or of one task's."""
    identity = np.arange(items.n)[None, :]
    stratum = smallest_stratum(items.task if members is None else items.task[members])
    n = items.n if members is None else members.size
    resamples = resamples if members is None else resamples[:, members]
    untrained = [(c, s) for c, s in controls if c.name == "untrained"]
    others = [(c, s) for c, s in controls if c.name != "untrained"]

    def rows(perm: np.ndarray) -> np.ndarray:
        per = [narrowing_statistic(s.weights, s.measured.L, perm, members) for _, s in controls]
        if untrained:
            per.append(np.nanmean(np.vstack(per[:len(untrained)]), axis=0))
        return np.vstack(per)

    observed = rows(identity)[:, 0]
    out = sequential_null(draw_for(rows), observed, context.sequential_plan(), decide=())
    results: list[TestResult] = []
    replicates: dict[TestKey, np.ndarray] = {}
    if untrained:
        row = len(controls)
        per_seed = [float(out.observed[i] - out.null_mean[i]) for i in range(len(untrained))]
        effect = float(np.nanmean(per_seed))
        seeds = np.vstack([matched_replicates(per_seed[i], effect_replicates(s.weights, s.d, resamples), out.null[i],
                                              stratum_size=stratum) for i, (_, s) in enumerate(untrained)])
        low, high = percentile_ci(seed_mean_replicates(seeds, context.seed))
        statistic = float(out.observed[row])
        this = key.counterpart("untrained")
        results.append(TestResult(
            key=this, claim=context.claim, statistic_name="lift-weighted zero-shot log10-rank (own query)",
            statistic=statistic, effect_size_name=EFFECT_NAME, effect_size=effect, ci_low=low, ci_high=high,
            p_value=float(out.p_value[row]) if np.isfinite(statistic) else float("nan"), n=n,
            extra={**null_extra(out, row), "role": "control", "per_seed": per_seed,
                   "seeds": [c.seed for c, _ in untrained]}))
        replicates[this] = seeds
    for offset, (c, s) in enumerate(others):
        row = len(untrained) + offset
        result, reps = _result(key.counterpart(c.name), context.claim, out, row,
                               effect_replicates(s.weights, s.d, resamples), n,
                               {**null_extra(out, row), "role": "control"}, stratum)
        results.append(result)
        replicates[result.key] = reps
    return results, replicates


def _describe(items: Items, m: Measured, far_rank: int, members: np.ndarray | None) -> dict[str, Any]:
    """Per task: accuracy zero-shot / k-shot / shuffled, the median zero-shot rank of the answer, and how many
    answers jump from beyond ``far_rank`` zero-shot to the k-shot top-1 (the 'teaching' count)."""
    out: dict[str, Any] = {}
    for t, name in enumerate(items.tasks):
        sel = np.flatnonzero(items.task == t)
        if members is not None and not np.isin(sel, members).all():
            continue
        far = m.rank0[sel] > far_rank
        jumps = far & (m.rankk[sel] == 1)
        out[name] = {
            "n": int(sel.size),
            "zero_shot_top1": float(np.mean(m.rank0[sel] == 1)),
            "k_shot_top1": float(np.mean(m.rankk[sel] == 1)),
            "shuffled_top1": float(np.mean(m.ranks[sel] == 1)),
            "median_zero_shot_rank": float(np.median(m.rank0[sel])),
            "median_k_shot_rank": float(np.median(m.rankk[sel])),
            "far": int(far.sum()),
            "jumps_far_to_top1": int(jumps.sum()),
            "jump_rate": float(jumps.sum() / far.sum()) if far.any() else None,
            "mean_lift_nats": float(np.mean(m.logpk[sel] - m.logp0[sel])),
        }
    return out
