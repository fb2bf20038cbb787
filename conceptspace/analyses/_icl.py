"""In-context learning inputs and measurements shared by the N2 (context narrows) and N3 (function vector) kinds.

Why one module: both claims compare what a model predicts for a query with and without demonstrations of a task,
so they need the same tasks (the bundled function-vector pairs, plus an arbitrary mapping generated from a seed),
the same prompt format, the same answer tokens and the same "last-position log-probabilities of a batch of
prompts, optionally with a vector added at one site" measurement. Keeping it here makes the two analyses differ
only in their statistics.

Prompt format (Todd et al. 2023 use ``Q: x\\nA: y`` blocks; a shorter arrow form is used here because the quick
battery runs on two CPU cores and the cost of a forward is linear in tokens): a demonstration is ``"x -> y"``,
demonstrations are joined by newlines, and the query ends with ``"x ->"``. The answer is scored by its first
token with a leading space (``" Paris"``), the token the model has to put next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from conceptspace.analyses.causal import Edits, prepare_prompts, run_edits
from conceptspace.analyses.causal._inputs import require_causal
from conceptspace.concepts import load_concepts
from conceptspace.concepts._controls import reference_vocabulary
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel

#: the bundled function-vector tasks (pairs subsets of ``function_vectors``)
FV_TASKS = ("capitalize", "country_capital", "country_currency", "national_parks", "next_item", "park_country",
            "present_past", "prev_item", "singular_plural")
#: the name of the generated task "random word -> random label"
ARBITRARY = "arbitrary"


@dataclass(frozen=True)
class IclTask:
    """One input -> output task: its name and its pairs (inputs and outputs aligned)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.inputs)


def check_tasks(names: Sequence[str], *, allow_arbitrary: bool = False) -> list[str]:
    """The task names, validated (each once); an unknown name is an error that lists the known ones."""
    known = (*FV_TASKS, ARBITRARY) if allow_arbitrary else FV_TASKS
    out: list[str] = []
    for name in names:
        if name not in known:
            raise InvalidInputError(f"unknown in-context task {name!r}; tasks are {', '.join(known)}")
        if name in out:
            raise InvalidInputError(f"task {name!r} is listed twice")
        out.append(name)
    return out


def load_task(name: str) -> IclTask:
    """A bundled function-vector task as pairs (``conceptspace datasets`` lists them under function_vectors)."""
    cs = load_concepts(f"function_vectors/{name}")
    return IclTask(name, tuple(str(a) for a in cs.column("a")), tuple(str(b) for b in cs.column("b")))


def arbitrary_task(n_items: int, n_labels: int, seed: int) -> IclTask:
    """``n_items`` random words mapped to labels drawn from ``n_labels`` random words: a mapping no pretraining
    could have taught, generated reproducibly from ``seed`` (wordfreq's English list, Zipf 3.5-5.5, so that every
    word is common enough to be a few tokens at most). Inputs and labels never overlap."""
    if n_items < 2 or n_labels < 2:
        raise InvalidInputError(f"the arbitrary mapping needs >= 2 items and >= 2 labels; got {n_items}, {n_labels}")
    words, zipf = reference_vocabulary("en")
    pool = np.array([w for w, z in zip(words, zipf, strict=True) if 3.5 <= z <= 5.5 and 3 <= len(w) <= 8])
    rng = np.random.default_rng([seed, 2027])
    chosen = rng.choice(pool.size, size=n_items + n_labels, replace=False)
    inputs = tuple(str(w) for w in pool[chosen[:n_items]])
    labels = pool[chosen[n_items:]]
    outputs = tuple(str(labels[i]) for i in rng.integers(0, n_labels, size=n_items))
    return IclTask(ARBITRARY, inputs, outputs)


def demo_line(x: str, y: str) -> str:
    return f"{x} -> {y}"


def icl_prompt(demos: Sequence[tuple[str, str]], query: str) -> str:
    """Demonstrations (one ``x -> y`` line each), then the query ``x ->`` (zero-shot when ``demos`` is empty)."""
    return "\n".join([*(demo_line(x, y) for x, y in demos), f"{query} ->"])


def answer_ids(model: ConceptModel, answers: Sequence[str]) -> np.ndarray:
    """The first token of each answer as the model would write it after ``"->"`` (with a leading space)."""
    encoded = model.tokenizer([" " + a.strip() for a in answers], add_special_tokens=False)["input_ids"]
    if any(len(ids) == 0 for ids in encoded):
        raise InvalidInputError("an answer tokenizes to nothing; every answer must be a non-empty word")
    return np.array([ids[0] for ids in encoded], dtype=np.int64)


def choose_demos(n_pool: int, query: int, shots: int, rng: np.random.Generator, *, include_query: bool = False) -> (
    list[int]
):
    """``shots`` demonstration indices from a pool, never the query itself unless ``include_query`` (then the
    query's own pair takes a random slot: the arbitrary mapping is learnable in context only by retrieval)."""
    others = np.array([i for i in range(n_pool) if i != query])
    if others.size < shots:
        raise InvalidInputError(f"{shots} shots need at least {shots + 1} pairs per task; the task has {n_pool}")
    picked = [int(i) for i in rng.choice(others, size=shots, replace=False)]
    if include_query:
        picked[int(rng.integers(0, shots))] = query
    return picked


def shuffled_answers(outputs: Sequence[str], rng: np.random.Generator) -> list[str]:
    """The demonstrations' answers permuted among themselves with no answer left in place where possible (the
    shuffled-demonstration control: same inputs, same answer words, wrong mapping)."""
    n = len(outputs)
    if n < 2:
        return list(outputs)
    base = rng.permutation(n)  # one cycle through a random order: every slot gets another slot's answer
    perm = np.empty(n, dtype=np.int64)
    perm[base] = base[np.roll(np.arange(n), -1)]
    return [outputs[int(perm[i])] for i in range(n)]


# ------------------------------------------------------------------------------------------- measurement
def edit_site(model: ConceptModel) -> str:
    """A site every causal model has, for runs that edit nothing (the zero vector is added at the last position)."""
    return "layer.0"


def next_token_logprobs(
    model: ConceptModel,
    prompts: Sequence[str],
    *,
    vectors: np.ndarray | None = None,
    site: str | None = None,
    target_ids: Sequence[int] | None = None,
    max_rows: int = 128,
) -> np.ndarray:
    """Last-position next-token log-probabilities of ``prompts``, each with every vector of ``vectors`` (c, d)
    added to the residual stream at ``site`` (last position only; stacked along the batch: one forward for many
    vectors). Returns (c, n, V) full log-probabilities, or (c, n, t) for ``target_ids``. ``vectors=None``: the
    unedited prompts, (1, n, ...)."""
    require_causal(model, "in-context learning tests")
    prompts = list(prompts)
    if not prompts:
        raise InvalidInputError("no prompts given: pass at least one prompt")
    if vectors is None:
        delta = torch.zeros(1, model.d_model)
        site = site or edit_site(model)
    else:
        if site is None:
            raise InvalidInputError("adding vectors needs the site to add them at")
        delta = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        if delta.ndim != 2 or delta.shape[1] != model.d_model:
            raise InvalidInputError(f"vectors must be (c, {model.d_model}); got {tuple(delta.shape)}")
    ids = None if target_ids is None else tuple(int(i) for i in target_ids)
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    for bucket in length_buckets(model, prompts):
        prepared = prepare_prompts(model, [prompts[i] for i in bucket])
        if ids is None:
            out = run_edits(model, prepared, site, Edits.additive(delta), (0,), keep_full=True, max_rows=max_rows,
                            memo=False)  # full distributions: the callers memoize what they reduce them to
            assert out.full_logp is not None
            pieces.append((bucket, out.full_logp.numpy()))
        else:
            out = run_edits(model, prepared, site, Edits.additive(delta), ids, max_rows=max_rows)
            pieces.append((bucket, out.target_logp.numpy()))
    result = np.empty((pieces[0][1].shape[0], len(prompts), pieces[0][1].shape[2]), dtype=np.float64)
    for bucket, values in pieces:
        result[:, bucket] = values
    return result


def length_buckets(model: ConceptModel, prompts: Sequence[str], size: int = 32) -> list[np.ndarray]:
    """Prompt indices sorted by token count, in runs of ``size``.

    Why: prompts are left-padded to the longest in their batch, and k-shot prompts next to zero-shot ones wasted
    36-59% of the forward on padding (N2: 0.41 and 0.64 of the padded tokens were real). Each run is padded to
    its own longest; the numbers are the same up to float rounding (positions count real tokens only)."""
    lengths = np.array([len(ids) for ids in model.tokenizer(list(prompts))["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    return [order[start:start + size] for start in range(0, order.size, size)]


def ranks_of(logp: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Rank (1 = most probable) of ``token_ids[j]`` in every row of ``logp`` (rows, V): (rows, len(token_ids)).
    Ties count against the token (rank = 1 + #tokens with strictly higher log-probability)."""
    rows = np.asarray(logp, dtype=np.float64)
    target = rows[:, np.asarray(token_ids)]  # (rows, m)
    sorted_rows = np.sort(rows, axis=1)  # ascending
    out = np.empty(target.shape, dtype=np.int64)
    for r in range(rows.shape[0]):
        above = sorted_rows.shape[1] - np.searchsorted(sorted_rows[r], target[r], side="right")
        out[r] = 1 + above
    return out


def stratified_resamples(strata: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """(B, n) item indices: each replicate resamples items with replacement within each stratum (task), so every
    replicate keeps the task mix. The same seed gives the same resamples for the model and for every control."""
    strata = np.asarray(strata)
    rng = np.random.default_rng([seed, 31337])
    out = np.empty((n_bootstrap, strata.size), dtype=np.int64)
    start = 0
    order = np.argsort(strata, kind="stable")
    for value in np.unique(strata):
        members = order[strata[order] == value]
        picks = rng.integers(0, members.size, size=(n_bootstrap, members.size))
        out[:, start:start + members.size] = members[picks]
        start += members.size
    return out


def matched_replicates(effect: float, boot: np.ndarray, null: np.ndarray, *, stratum_size: int | None = None,
                       widen: bool = True) -> np.ndarray:
    """(B,) replicates of ``effect``: the bootstrap's deviations from their mean, put on the effect, and widened to
    the Monte Carlo null's spread where that is the larger (few items, weight on few of them), so that the CI is
    never narrower than the spread the p-value is judged against. Each replicate keeps its resample (paired
    differences with controls drawn on the same resamples stay paired). NaN resamples stay NaN.
    ``stratum_size`` m: the bootstrap's deviations are first scaled by sqrt(m / (m - 1)), the usual correction of
    a resampling variance that divides by m (it under-covers by a few percent at a dozen items per task).
    ``widen=False``: never widen to the null (for a null whose spread grows with the signal itself)."""
    boot = np.asarray(boot, dtype=np.float64)
    ok = np.isfinite(boot)
    if ok.sum() < 2:
        return np.full(boot.shape, np.nan)
    deviations = boot - boot[ok].mean()
    if stratum_size is not None and stratum_size > 1:
        deviations = deviations * np.sqrt(stratum_size / (stratum_size - 1.0))
    var_boot = float(np.var(deviations[ok], ddof=1))
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    var_null = float(np.var(null, ddof=1)) if null.size > 1 else 0.0
    scale = np.sqrt(var_null / var_boot) if widen and var_boot > 0 and var_null > var_boot else 1.0
    return np.where(ok, effect + scale * deviations, np.nan)


def smallest_stratum(strata: np.ndarray) -> int:
    """The size of the smallest stratum (task): the m of the small-sample correction."""
    return int(np.unique(np.asarray(strata), return_counts=True)[1].min())


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN, NaN when fewer than two)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [tail, 1.0 - tail])
    return float(low), float(high)
