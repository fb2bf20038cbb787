"""Proximity and probability (claim 5 of the seed paper), read through the logit lens.

Claim 5: the context vector's proximity to a token vector reflects the token's conditional probability. For each
context x and layer L we take the last-token residual h_L, apply the model's final norm (the logit lens), and
rank-correlate cos(ln_f(h_L), u_t) with the model's log p(t | x) over the vocabulary (Spearman, per context).

Why each control:

* **identity**: at the last layer ``u_t . ln_f(h_L)`` *is* the logit, so its rank correlation with log p is 1
  by construction of the architecture. It is returned as ``control="identity"`` with
  ``extra["sanity_check"] = True`` and ``p_value = 1.0``: a pipeline check, never evidence.
* **the last block** (``role="sanity"``): there cos(ln_f(h_L), u_t) is the logit divided by the token norm, so a
  high Spearman certifies the architecture, not the claim. It is reported, never evidence.
* **shuffled contexts** (the permutation null): pair context i's cosines with context j's log-probabilities.
  Any part of the correlation that comes from token properties shared by all contexts (frequency, norm, the
  generic unigram prior) survives the shuffle, so p tests whether proximity tracks *this context's*
  probabilities. The effect is the paired per-context effect (the statistic minus the null's exact mean), with an
  interval from a bootstrap over contexts of that paired quantity: see :mod:`._context_shuffle`.
* **token frequency**: the wordfreq Zipf frequency of each decoded token; its own Spearman with log p is
  reported, and the partial Spearman of cosine and log p controlling for it is a separate test.
* **control models**: the same analysis on the untrained twin (seeds averaged into one counterpart) and the
  spectrum-matched twin, on the same permutations and context resamples, so differences are paired.

Spearman correlations of many rankings are one matrix product of standardised rank vectors, so the whole
(contexts x contexts) matrix, and with it every permutation, costs one product per layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from conceptspace.activations import memoized
from conceptspace.activations._extract import extract
from conceptspace.analyses.geometry._context_shuffle import (
    bootstrap_rows,
    context_shuffle_draw,
    effect_replicates,
    max_t_p_values,
    paired_context_effects,
    percentile_ci,
    shuffle_null_moments,
)
from conceptspace.analyses.geometry._naming import geometry_key
from conceptspace.analyses.geometry._vector_ops import residualize, standardized_ranks, unit_rows
from conceptspace.depth import resolve_layers
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel
from conceptspace.models._weights import final_norm, output_head
from conceptspace.stats._paired import seed_mean_replicates
from conceptspace.stats._results import TRAINED, UNTRAINED, ResultSet, TestKey, TestResult
from conceptspace.stats._sequential import SequentialNull, SequentialPlan, null_extra, sequential_null
from conceptspace.utils.deprecation import renamed_keywords


@functools.lru_cache(maxsize=4)
def _token_zipf_cached(key: str, tokens: tuple[str, ...]) -> np.ndarray:
    import wordfreq

    return np.asarray([wordfreq.zipf_frequency(t, "en") if t else 0.0 for t in tokens], dtype=np.float64)


def token_zipf(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """Zipf frequency (wordfreq, English) of each token id's decoded text, stripped; 0 for unknown pieces.

    A proxy for how often the token occurs: it scores whole-word tokens well and sub-word pieces as rare,
    which is the frequency baseline the claim has to beat.
    """
    decoded = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    tokens = tuple(str(t).strip() for t in decoded)
    key = f"{getattr(tokenizer, 'name_or_path', '')}:{vocab_size}"
    return _token_zipf_cached(key, tokens)


def _final_norm(model: ConceptModel, H: np.ndarray) -> np.ndarray:
    norm = final_norm(model)
    parameter = next(norm.parameters(), None)
    device = model.device if parameter is None else parameter.device
    dtype = model.dtype if parameter is None else parameter.dtype
    with torch.inference_mode():
        x = torch.from_numpy(np.array(H, dtype=np.float32)).to(device, dtype)
        return norm(x).float().cpu().numpy()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))


def _require_logit_lens(model: ConceptModel) -> None:
    """The logit lens reads blocks through the final norm and the LM head; an encoder has neither."""
    if model.site_map.final_norm is None or model.head_path() is None:
        missing = [name for name, absent in (("a final norm", model.site_map.final_norm is None),
                                             ("a language-model head", model.head_path() is None)) if absent]
        raise NotApplicableError(
            f"the logit lens reads each block through the final norm and the LM head; {model.name} has no "
            f"{' and no '.join(m.removeprefix('a ') for m in missing)} (load a decoder such as 'smollm2-135m')"
        )



#: the two statistics per site, and their names; the first is the claim's (the primary metric)
METHODS = {"cosine_vs_logp": "mean_spearman_rho", "cosine_vs_logp_partial_frequency": "mean_partial_spearman_rho"}
PRIMARY_METHOD = "cosine_vs_logp"
PARTIAL_METHOD = "cosine_vs_logp_partial_frequency"
_NULL = "contexts shuffled (cosines of one context vs log p of another); exact null moments (Hoeffding)"


@dataclass(frozen=True)
class ContextMatrices:
    """One model's (contexts x contexts) Spearman matrices per (site, method) and what describes each.

    ``matrices[(site, method)][i, j]``: Spearman of context i's proximities with context j's log-probabilities
    (after ``pairing``, when the null battery re-paired them). ``identity_rho``: per context, the Spearman of the
    last layer's logits-by-construction (ln_f(h_L) . u_t) with log p, a pipeline check.
    """

    matrices: dict[tuple[str, str], np.ndarray]
    describe: dict[tuple[str, str], dict[str, Any]]
    common: dict[str, Any]
    identity_rho: np.ndarray
    zero_norm_tokens: int
    last_site: str


@dataclass(frozen=True)
class ModelPasses:
    """The passes of one model role: the trained model (one pass), the untrained twin (one per seed) or the
    spectrum-matched twin. ``control`` is the TestKey control (None for the trained model)."""

    control: str | None
    seeds: tuple[int, ...]
    passes: tuple[ContextMatrices, ...]


def context_matrices(
    model: ConceptModel,
    texts: Sequence[str],
    *,
    layers: Sequence[int],
    pairing: np.ndarray | None = None,
    top_k: int = 10,
) -> ContextMatrices:
    """Run the model once over the contexts and form every (site, method) Spearman matrix.

    ``pairing`` (the null battery): context i's target distribution becomes context ``pairing[i]``'s.
    Memoized (:func:`~conceptspace.activations.memoized`): a warm run reads the (contexts x contexts) matrices
    and the few numbers beside them, not the vocabulary-wide distributions and rank transforms they came from.
    """
    _require_logit_lens(model)
    sites = [f"layer.{int(i)}" for i in layers]
    spec = {"texts": list(texts), "layers": [int(i) for i in layers], "top_k": top_k,
            "pairing": None if pairing is None else np.asarray(pairing, dtype=np.int64)}

    def compute() -> dict[str, np.ndarray]:
        found = _context_matrices(model, texts, layers=layers, pairing=pairing, top_k=top_k)
        out = {f"m_{i}_{j}": found.matrices[(site, method)] for i, site in enumerate(sites)
               for j, method in enumerate(METHODS)}
        out["precision"] = np.array([found.describe[(site, PRIMARY_METHOD)][f"precision_at_{top_k}"]
                                     for site in sites], dtype=np.float64)
        out["baselines"] = np.array([found.common["frequency_baseline_rho"], found.common["norm_baseline_rho"]],
                                    dtype=np.float64)
        out["counts"] = np.array([found.common["vocab_size"], found.zero_norm_tokens], dtype=np.int64)
        out["identity_rho"] = found.identity_rho
        return out

    arrays = memoized(model, "logit_lens.context_matrices", spec, compute, version="1")
    last_site = f"layer.{model.n_layers - 1}"
    matrices = {(site, method): arrays[f"m_{i}_{j}"] for i, site in enumerate(sites)
                for j, method in enumerate(METHODS)}
    describe = {}
    for i, site in enumerate(sites):
        describe[(site, PRIMARY_METHOD)] = _describe_primary(float(arrays["precision"][i]), top_k, site == last_site)
        describe[(site, PARTIAL_METHOD)] = _describe_partial(site == last_site)
    common = {"vocab_size": int(arrays["counts"][0]), "frequency_baseline_rho": float(arrays["baselines"][0]),
              "norm_baseline_rho": float(arrays["baselines"][1])}
    return ContextMatrices(matrices, describe, common, arrays["identity_rho"], int(arrays["counts"][1]), last_site)


def _describe_primary(precision: float, top_k: int, last: bool) -> dict[str, Any]:
    return {f"precision_at_{top_k}": precision, "last_layer": last}


def _describe_partial(last: bool) -> dict[str, Any]:
    return {"covariate": "wordfreq Zipf frequency of the decoded token", "last_layer": last}


def _context_matrices(model: ConceptModel, texts: Sequence[str], *, layers: Sequence[int],
                      pairing: np.ndarray | None, top_k: int) -> ContextMatrices:
    """:func:`context_matrices` without the memo: the lens over the full vocabulary and the rank transforms."""
    sites = [f"layer.{int(i)}" for i in layers]
    acts = extract(model, list(texts), sites=[*sites, "final_norm"], position="last", progress=False)
    U, bias = output_head(model)
    final = np.asarray(acts["final_norm"], dtype=np.float32)
    logits = final @ U.T + (0.0 if bias is None else bias)
    true_logp = _log_softmax(logits.astype(np.float64))
    logp = true_logp if pairing is None else true_logp[np.asarray(pairing)]
    token_norms = np.linalg.norm(U, axis=1)
    # a zero row (a padding token's, say) has cosine 0 with everything rather than an undefined one
    U_unit = (U / np.maximum(token_norms, 1e-12)[:, None]).astype(np.float32)
    Zf = standardized_ranks(token_zipf(model.tokenizer, U.shape[0]))
    Zlp = standardized_ranks(logp)
    Zlp_partial = residualize(Zlp, Zf)
    top_true = np.argsort(-logp, axis=1)[:, :top_k]
    last_site = f"layer.{model.n_layers - 1}"
    matrices: dict[tuple[str, str], np.ndarray] = {}
    describe: dict[tuple[str, str], dict[str, Any]] = {}
    for site in sites:
        lens = _final_norm(model, np.asarray(acts[site], dtype=np.float32))
        cos = unit_rows(lens.astype(np.float64)).astype(np.float32) @ U_unit.T
        Zc = standardized_ranks(cos)
        top_cos = np.argsort(-cos, axis=1)[:, :top_k]
        precision = float(np.mean([len(set(a) & set(b)) / top_k for a, b in zip(top_cos, top_true, strict=True)]))
        last = site == last_site
        matrices[(site, PRIMARY_METHOD)] = Zc @ Zlp.T
        describe[(site, PRIMARY_METHOD)] = _describe_primary(precision, top_k, last)
        matrices[(site, PARTIAL_METHOD)] = residualize(Zc, Zf) @ Zlp_partial.T
        describe[(site, PARTIAL_METHOD)] = _describe_partial(last)
    dot = final.astype(np.float64) @ U.T.astype(np.float64)
    identity = np.einsum("ij,ij->i", standardized_ranks(dot), standardized_ranks(true_logp))
    common = {"vocab_size": int(U.shape[0]), "frequency_baseline_rho": float((Zlp @ Zf).mean()),
              "norm_baseline_rho": float((Zlp @ standardized_ranks(token_norms)).mean())}
    return ContextMatrices(matrices, describe, common, identity, int(np.count_nonzero(token_norms == 0)), last_site)


@dataclass(frozen=True)
class _Row:
    passes: ModelPasses
    site: str
    method: str
    matrix: np.ndarray  # the mean over the passes' matrices (linear, so its null is the mean of theirs)
    sanity: bool


def proximity_results(
    groups: Sequence[ModelPasses],
    *,
    dataset: str,
    plan: SequentialPlan,
    n_bootstrap: int,
    seed: int,
    claim: str | None = "P5",
    primary: tuple[str, str] | None = None,
) -> tuple[ResultSet, dict[TestKey, np.ndarray]]:
    """Every (model role, site, method) test with one shared context-shuffle null, and effect replicates.

    Every row sees the same permutations (drawn sequentially until the ``primary`` row's decision is settled;
    every row when there is no primary) and the same context resamples, so the runner can pair a test with its
    controls. The untrained twin's seeds are averaged into one row (a mean of Spearman matrices); its interval
    also resamples the seeds. Rows at the last block are sanity checks (``role="sanity"``): there cosine and
    logit differ only by the token norm, so the test is nearly an identity of the architecture.
    """
    rows = [
        _Row(g, site, method, np.mean([p.matrices[(site, method)] for p in g.passes], axis=0),
             site == g.passes[0].last_site)
        for g in groups for (site, method) in g.passes[0].matrices
    ]
    decide = [i for i, r in enumerate(rows) if r.passes.control is None and (r.site, r.method) == primary]
    if primary is not None and not decide:
        raise InvalidInputError(f"the primary test {primary} is not among the tests run")
    observed = np.array([np.diag(r.matrix).mean() for r in rows])
    out = sequential_null(context_shuffle_draw([r.matrix for r in rows], seed), observed, plan,
                          decide=decide or None)
    moments = np.array([shuffle_null_moments(r.matrix) for r in rows])
    family = [i for i, r in enumerate(rows) if r.passes.control is None and not r.sanity]
    p_maxt = dict(zip(family, max_t_p_values(observed[family], out.null[family], moments[family, 0],
                                             moments[family, 1]), strict=True)) if family else {}
    boot = bootstrap_rows(groups[0].passes[0].identity_rho.size, n_bootstrap, seed)
    results: list[TestResult] = []
    replicates: dict[TestKey, np.ndarray] = {}
    for i, r in enumerate(rows):
        per_seed = np.stack([effect_replicates(paired_context_effects(p.matrices[(r.site, r.method)]), boot)
                             for p in r.passes.passes])
        reps = per_seed[0] if len(r.passes.passes) == 1 else seed_mean_replicates(per_seed, seed)
        key = geometry_key("proximity", dataset, r.site, "last", r.method, control=r.passes.control)
        replicates[key] = per_seed if r.passes.control == UNTRAINED else per_seed[0]
        results.append(_result(r, key, claim, observed[i], moments[i], reps, out, i, p_maxt.get(i), per_seed))
    results.extend(_identity(g, dataset, claim) for g in groups)
    return ResultSet(results), replicates


def _result(row: _Row, key: TestKey, claim: str | None, observed: float, moments: np.ndarray, reps: np.ndarray,
            out: SequentialNull, index: int, p_maxt: float | None, per_seed: np.ndarray) -> TestResult:
    null_mean, null_sd = float(moments[0]), float(moments[1])
    low, high = percentile_ci(reps)
    first = row.passes.passes[0]
    drawn = null_extra(out, index)
    extra: dict[str, Any] = {
        "site": row.site, **first.common, **first.describe[(row.site, row.method)], **drawn,
        "null": _NULL, "null_mean": null_mean, "null_sd": null_sd, "null_mean_drawn": drawn["null_mean"],
        "null_sd_drawn": drawn["null_sd"], "n_bootstrap": int(reps.size),
        "interval": "bootstrap over contexts of the paired per-context effect (doubly-centred Spearman matrix)",
    }
    if row.passes.control == UNTRAINED:
        extra.update(per_seed=[float(e) for e in per_seed.mean(axis=1)], twin_seeds=list(row.passes.seeds),
                     interval_levels="two-level bootstrap: twin seeds, then contexts")
    if p_maxt is not None:
        extra["p_maxt"] = float(p_maxt)
    if row.sanity:
        extra.update(role="sanity", sanity_check=True, note="last block: the cosine differs from the logit only by "
                     "the token norm (the logit lens is the model's own output), so this is a pipeline check")
    n = first.identity_rho.size
    return TestResult(
        key=key, claim=claim, statistic_name=METHODS[row.method], statistic=float(observed),
        effect_size_name=f"{METHODS[row.method]} - null mean (shuffled contexts)",
        effect_size=float(observed - null_mean), ci_low=low, ci_high=high, p_value=float(out.p_value[index]),
        n=n, n_groups=n, extra=extra,
    )


def _identity(group: ModelPasses, dataset: str, claim: str | None) -> TestResult:
    rho = np.mean([p.identity_rho for p in group.passes], axis=0)
    key = geometry_key("proximity", dataset, "final_norm", "last", "dot_vs_logp", control="identity",
                       model=group.control or TRAINED)
    return TestResult(
        key=key, claim=claim, statistic_name="mean_spearman_rho", statistic=float(rho.mean()),
        effect_size_name="mean_spearman_rho", effect_size=float(rho.mean()), ci_low=float(rho.min()),
        ci_high=float(rho.max()), p_value=1.0, n=rho.size, n_groups=rho.size,
        extra={"site": "final_norm", "sanity_check": True, "role": "sanity", "model_control": group.control,
               "zero_norm_tokens": group.passes[0].zero_norm_tokens,
               "note": "identity of the architecture (logits are these dot products): pipeline check, not "
               "evidence; p fixed at 1; CI is the min-max over contexts"},
    )


@renamed_keywords(n_boot="n_bootstrap")
def proximity_probability_tests(
    model: ConceptModel,
    texts: Sequence[str],
    *,
    layers: Sequence[int | float] | str | None = None,
    n_permutations: int = 500,
    n_bootstrap: int = 500,
    seed: int = 0,
    dataset: str = "",
    control: str | None = None,
    claim: str | None = "P5",
    top_k: int = 10,
) -> ResultSet:
    """Per layer: Spearman of cos(ln_f(h_L), u_t) with log p(t | x), and its partial version given token frequency.

    ``layers``: block indices (negative from the end), fractions of depth (floats in [0, 1]; see
    :mod:`conceptspace.depth`) or ``"all"`` (the default). Also the last-layer dot-product identity
    (``control="identity"``, a sanity check). One model with a fixed number of permutations; ``control`` labels
    its tests (``"untrained"`` for a twin). :func:`conceptspace.analyses.geometry.run_proximity_probability` runs
    the model and its twin on shared draws.
    """
    texts = _checked(texts)
    chosen = resolve_layers("all" if layers is None else layers, model.n_layers, model=model.name)
    passes = ModelPasses(control, (0,), (context_matrices(model, texts, layers=chosen, top_k=top_k),))
    results, _ = proximity_results([passes], dataset=dataset, plan=SequentialPlan.fixed(n_permutations),
                                   n_bootstrap=n_bootstrap, seed=seed, claim=claim)
    return results


def _checked(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    if len(texts) < 3:
        raise InvalidInputError("proximity vs probability needs at least three contexts (the null shuffles them)")
    return texts
