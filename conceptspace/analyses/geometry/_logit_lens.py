"""Proximity and probability (claim 5 of the seed paper), read through the logit lens.

Claim 5: the context vector's proximity to a token vector reflects the token's conditional probability. For each
context x and layer L we take the last-token residual h_L, apply the model's final norm (the logit lens), and
rank-correlate cos(ln_f(h_L), u_t) with the model's log p(t | x) over the vocabulary (Spearman, per context).

Why each control:

* **identity**: at the last layer ``u_t . ln_f(h_L)`` *is* the logit, so its rank correlation with log p is 1
  by construction of the architecture. It is returned as ``control="identity"`` with
  ``extra["sanity_check"] = True`` and ``p_value = 1.0``: a pipeline check, never evidence. Leave it out of
  the family you correct (``results.filter(control="identity")`` finds it).
* **shuffled contexts** (the permutation null): pair context i's cosines with context j's log-probabilities.
  Any part of the correlation that comes from token properties shared by all contexts (frequency, norm, the
  generic unigram prior) survives the shuffle, so p tests whether proximity tracks *this context's*
  probabilities.
* **token frequency**: the wordfreq Zipf frequency of each decoded token; its own Spearman with log p is
  reported, and the partial Spearman of cosine and log p controlling for it is a separate test.
* **untrained twin**: the same analysis on the randomly initialised model (its own cosines and log p).

Spearman correlations of many rankings are one matrix product of standardised rank vectors, so the whole
(contexts x contexts) matrix, and with it every permutation, costs one product per layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from conceptspace.activations._extract import extract
from conceptspace.analyses.geometry._naming import geometry_key, null_summary
from conceptspace.analyses.geometry._vector_ops import residualize, standardized_ranks, unit_rows
from conceptspace.depth import resolve_layers
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel
from conceptspace.models._weights import final_norm, output_head
from conceptspace.stats._permutation import permutation_p_value
from conceptspace.stats._results import TRAINED, UNTRAINED, ResultSet, TestResult
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


def _context_tests(
    Zx: np.ndarray,
    Zy: np.ndarray,
    perms: np.ndarray,
    boot_rows: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Observed mean diagonal Spearman, its context-shuffle null, bootstrap replicates and per-context values."""
    M = Zx @ Zy.T
    per_context = np.diag(M).copy()
    n = M.shape[0]
    null = M[np.arange(n)[None, :], perms].mean(axis=1)
    boot = per_context[boot_rows].mean(axis=1)
    return float(per_context.mean()), null, boot, per_context


def _require_logit_lens(model: ConceptModel) -> None:
    """The logit lens reads blocks through the final norm and the LM head; an encoder has neither."""
    if model.site_map.final_norm is None or model.head_path() is None:
        missing = [name for name, absent in (("a final norm", model.site_map.final_norm is None),
                                             ("a language-model head", model.head_path() is None)) if absent]
        raise NotApplicableError(
            f"the logit lens reads each block through the final norm and the LM head; {model.name} has no "
            f"{' and no '.join(m.removeprefix('a ') for m in missing)} (load a decoder such as 'smollm2-135m')"
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
    (``control="identity"``, a sanity check). Run it again on
    ``model.untrained(seed)`` with ``control="untrained"`` for the twin (or use
    :func:`conceptspace.analyses.geometry.run_proximity_probability`, which does both).
    """
    texts = list(texts)
    if len(texts) < 3:
        raise InvalidInputError("proximity vs probability needs at least three contexts (the null shuffles them)")
    _require_logit_lens(model)
    chosen = resolve_layers("all" if layers is None else layers, model.n_layers, model=model.name)
    sites = [f"layer.{i}" for i in chosen]
    acts = extract(model, texts, sites=[*sites, "final_norm"], position="last", progress=False)
    U, bias = output_head(model)
    final = np.asarray(acts["final_norm"], dtype=np.float32)
    logits = final @ U.T + (0.0 if bias is None else bias)
    logp = _log_softmax(logits.astype(np.float64))
    token_norms = np.linalg.norm(U, axis=1)
    # a zero row (a padding token's, say) has cosine 0 with everything rather than an undefined one
    U_unit = (U / np.maximum(token_norms, 1e-12)[:, None]).astype(np.float32)
    freq = token_zipf(model.tokenizer, U.shape[0])
    Zf = standardized_ranks(freq)
    Zlp = standardized_ranks(logp)
    Zlp_partial = residualize(Zlp, Zf)
    Znorm = standardized_ranks(token_norms)
    n = len(texts)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_permutations, n)), axis=1)
    boot_rows = rng.integers(0, n, size=(n_bootstrap, n))
    freq_rho = float((Zlp @ Zf).mean())
    norm_rho = float((Zlp @ Znorm).mean())
    top_true = np.argsort(-logp, axis=1)[:, :top_k]
    results: list[TestResult] = []
    common = {"n_permutations": n_permutations, "n_bootstrap": n_bootstrap, "vocab_size": int(U.shape[0]),
              "frequency_baseline_rho": freq_rho, "norm_baseline_rho": norm_rho,
              "null": "contexts shuffled (cosines of one context vs log p of another)"}

    def add(site: str, name: str, stat_name: str, obs: float, null: np.ndarray, boot: np.ndarray, more: dict) -> None:
        ns = null_summary(null)
        lo, hi = np.quantile(boot - ns["null_mean"], [0.025, 0.975])
        results.append(
            TestResult(
                key=geometry_key("proximity", dataset, site, "last", name, control=control),
                claim=claim, statistic_name=stat_name, statistic=obs,
                effect_size_name=f"{stat_name}_minus_shuffled_context",
                effect_size=obs - ns["null_mean"], ci_low=float(lo), ci_high=float(hi),
                p_value=float(permutation_p_value(obs, null)), n=n, n_groups=n,
                extra={"site": site, **common, **ns, **more},
            )
        )

    for layer, site in zip(chosen, sites, strict=True):
        c = _final_norm(model, np.asarray(acts[site], dtype=np.float32))
        cos = unit_rows(c.astype(np.float64)).astype(np.float32) @ U_unit.T
        Zc = standardized_ranks(cos)
        obs, null, boot, per_context = _context_tests(Zc, Zlp, perms, boot_rows)
        top_cos = np.argsort(-cos, axis=1)[:, :top_k]
        precision = float(np.mean([len(set(a) & set(b)) / top_k for a, b in zip(top_cos, top_true, strict=True)]))
        last = layer == model.n_layers - 1
        add(site, "cosine_vs_logp", "mean_spearman_rho", obs, null, boot,
            {"per_context_rho_sd": float(per_context.std(ddof=1)), f"precision_at_{top_k}": precision,
             "last_layer": last, "note": "at the last layer this differs from an identity only by token norms"
             if last else ""})
        obs_p, null_p, boot_p, _ = _context_tests(residualize(Zc, Zf), Zlp_partial, perms, boot_rows)
        add(site, "cosine_vs_logp_partial_frequency", "mean_partial_spearman_rho", obs_p, null_p, boot_p,
            {"covariate": "wordfreq Zipf frequency of the decoded token", "last_layer": last})

    dot = final.astype(np.float64) @ U.T.astype(np.float64)
    rho_dot = np.diag(standardized_ranks(dot) @ Zlp.T)
    results.append(
        TestResult(
            key=geometry_key("proximity", dataset, "final_norm", "last", "dot_vs_logp", control="identity",
                             model=UNTRAINED if control == UNTRAINED else TRAINED),
            claim=claim, statistic_name="mean_spearman_rho", statistic=float(rho_dot.mean()),
            effect_size_name="mean_spearman_rho", effect_size=float(rho_dot.mean()),
            ci_low=float(rho_dot.min()), ci_high=float(rho_dot.max()), p_value=1.0, n=n, n_groups=n,
            extra={"site": "final_norm", "sanity_check": True, "model_control": control,
                   "zero_norm_tokens": int(np.count_nonzero(token_norms == 0)),
                   "note": "identity of the architecture (logits are these dot products): pipeline check, not "
                   "evidence; p fixed at 1; CI is the min-max over contexts"},
        )
    )
    return ResultSet(results)
