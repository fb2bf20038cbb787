"""Claim A6: context vectors aggregate the features of the sequence's tokens.

Two tests, both on the final context vector (output of the final norm at the last token):

* **order vs content.** Permute the non-final tokens of a sentence (Delta_perm = 1 - cos(c(x), c(pi(x)))) and,
  separately, replace the same number of non-final tokens by random tokens of matched frequency (Delta_sub).
  A pure aggregator of token features ignores order, so Delta_perm << Delta_sub. The statistic is the ratio
  mean(Delta_perm) / mean(Delta_sub); the effect size is 1 - ratio (1: order irrelevant, 0: reordering hurts as
  much as replacing); the pre-registered criterion ratio < 0.5 is tested with a one-sided paired Wilcoxon
  signed-rank test of 0.5 * Delta_sub - Delta_perm > 0. The CI is a bootstrap over sentences. The
  frequency-matched replacement is the control that stops "any change moves c a lot" from passing as aggregation.
* **bag of token embeddings.** A linear (ridge) model predicts the context vector's leading principal
  components from sum_i w(i) e_{x_i} over the non-final tokens (position-decay weights w = decay^(distance to
  the end)) and the last token's embedding. Held-out R^2 by grouped CV; the null refits on shuffled targets
  (the exact permutation path of :mod:`conceptspace.stats`).

The untrained twin runs the same perturbed sequences with its own embeddings and context vectors.

Why the forward pass is run here and not through :func:`conceptspace.activations._extract.extract`: the perturbed inputs
are token sequences, and decoding them to text and re-tokenizing would not give the same tokens back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
import torch

from conceptspace.analyses.geometry._logit_lens import token_zipf
from conceptspace.analyses.probes._estimators import RidgeRegressionProbe
from conceptspace.analyses.probes._evaluation import probe_layers
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel
from conceptspace.models._nnsight import import_nnsight
from conceptspace.models._weights import embedding_rows, vocab_size
from conceptspace.paths import activation_cache_dir
from conceptspace.site_names import FINAL_NORM
from conceptspace.stats._results import ResultSet, TestKey, TestResult
from conceptspace.utils.deprecation import renamed_keywords


@dataclass(frozen=True)
class Perturbed:
    """Original, permuted and substituted token sequences (same lengths) and how many tokens each changed."""

    original: tuple[tuple[int, ...], ...]
    permuted: tuple[tuple[int, ...], ...]
    substituted: tuple[tuple[int, ...], ...]
    n_changed: tuple[int, ...]
    kept: tuple[int, ...]


class FrequencySampler:
    """Draws a random vocabulary token whose frequency (Zipf) is close to a given token's.

    Tokens are sorted by Zipf value once; a draw picks uniformly among the ``window`` tokens nearest in that
    order (excluding the original and special tokens), so rare pieces are replaced by rare pieces and common
    words by common words.
    """

    def __init__(self, zipf: np.ndarray, exclude: Sequence[int] = (), window: int = 200) -> None:
        zipf = np.asarray(zipf, dtype=np.float64)
        allowed = np.ones(zipf.size, dtype=bool)
        allowed[[i for i in exclude if 0 <= i < zipf.size]] = False
        self.ids = np.flatnonzero(allowed)[np.argsort(zipf[allowed], kind="stable")]
        self.sorted_zipf = zipf[self.ids]
        self.zipf = zipf
        self.window = int(window)

    def draw(self, token: int, rng: np.random.Generator) -> int:
        centre = int(np.searchsorted(self.sorted_zipf, self.zipf[token]))
        lo = max(0, centre - self.window // 2)
        hi = min(self.ids.size, lo + self.window)
        lo = max(0, hi - self.window)
        while True:
            choice = int(self.ids[rng.integers(lo, hi)])
            if choice != token:
                return choice


def perturb(
    sequences: Sequence[Sequence[int]],
    sampler: FrequencySampler,
    *,
    protected: Sequence[int] = (),
    seed: int = 0,
    max_tries: int = 20,
) -> Perturbed:
    """Permute the non-final, non-special tokens of each sequence; replace as many by frequency-matched tokens.

    A sequence where no permutation changes any token (fewer than two distinct movable tokens) is dropped; the
    indices of the kept sequences are in ``kept``.
    """
    rng = np.random.default_rng(seed)
    special = set(int(i) for i in protected)
    orig: list[tuple[int, ...]] = []
    perm: list[tuple[int, ...]] = []
    sub: list[tuple[int, ...]] = []
    changed: list[int] = []
    kept: list[int] = []
    for index, seq in enumerate(sequences):
        ids = [int(t) for t in seq]
        movable = [p for p in range(len(ids) - 1) if ids[p] not in special]
        if len(movable) < 2:
            continue
        for _ in range(max_tries):
            order = rng.permutation(len(movable))
            new = list(ids)
            for target, source in zip(movable, order, strict=True):
                new[target] = ids[movable[source]]
            k = sum(a != b for a, b in zip(ids, new, strict=True))
            if k > 0:
                break
        else:
            continue
        positions = rng.choice(movable, size=k, replace=False)
        replaced = list(ids)
        for p in positions:
            replaced[int(p)] = sampler.draw(ids[int(p)], rng)
        orig.append(tuple(ids))
        perm.append(tuple(new))
        sub.append(tuple(replaced))
        changed.append(k)
        kept.append(index)
    if len(kept) < 8:
        raise InvalidInputError(f"only {len(kept)} sentences can be permuted; A6 needs at least 8")
    return Perturbed(tuple(orig), tuple(perm), tuple(sub), tuple(changed), tuple(kept))


def _cache_file(model: ConceptModel, sequences: Sequence[Sequence[int]]) -> Path:
    digest = hashlib.sha256(model.identity.key().encode())
    digest.update(json.dumps([list(s) for s in sequences]).encode())
    return activation_cache_dir() / "token-sequences" / f"final_norm-last-{digest.hexdigest()[:32]}.npy"


def context_vectors(
    model: ConceptModel, sequences: Sequence[Sequence[int]], batch_size: int = 64, cache: bool = True
) -> np.ndarray:
    """(n, d) output of the final norm at the last token of each token sequence (no padding: equal lengths batch).

    Cached on disk (a plain ``.npy`` keyed by the model identity and the token ids, published by rename) so a
    warm run of a suite repeats no forward pass.
    """
    path = _cache_file(model, sequences)
    if cache and path.exists():
        return np.load(path)
    out = _forward_final_norm(model, sequences, batch_size)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
    return out


def _by_length(sequences: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Batches of row indices whose sequences have equal length (no padding needed)."""
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(sequences):
        by_length.setdefault(len(seq), []).append(i)
    return [members[start : start + batch_size] for _, members in sorted(by_length.items())
            for start in range(0, len(members), batch_size)]


def _forward_final_norm(model: ConceptModel, sequences: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
    """Final-norm output at each sequence's last token, one nnsight trace per equal-length batch.

    The same trace serves a local and a remote model; the forward stops after the final norm (no unembedding)
    and only the last-token slice leaves the trace (for NDIF, that is the download).
    """
    if model.site_map.final_norm is None:
        raise NotApplicableError(f"{model.name} has no final norm; A6 reads the final context vector (the input of "
                                 "the LM head), which an encoder such as BERT does not have")
    nnsight = import_nnsight()
    traced = model.traced()
    envoy = model.envoy("final_norm")
    out = np.zeros((len(sequences), model.d_model))
    with torch.inference_mode():
        for rows in _by_length(sequences, batch_size):
            ids = torch.tensor([list(sequences[i]) for i in rows], device=model.device)
            with traced.trace(input_ids=ids, remote=model.remote) as tracer:
                hidden = envoy.output
                if isinstance(hidden, tuple):
                    hidden = hidden[0]
                last = nnsight.save(hidden[:, -1].float().cpu())
                tracer.stop()
            model.record_download(last)
            out[rows] = last.numpy()
    return out


def _cosine_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return 1.0 - num / np.maximum(den, 1e-12)


@renamed_keywords(n_boot="n_bootstrap")
def order_vs_content_test(
    delta_perm: np.ndarray,
    delta_sub: np.ndarray,
    *,
    ratio_threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Ratio of mean changes, effect 1 - ratio with a bootstrap CI, one-sided Wilcoxon p against the threshold."""
    delta_perm = np.asarray(delta_perm, dtype=np.float64)
    delta_sub = np.asarray(delta_sub, dtype=np.float64)
    n = delta_perm.size
    ratio = float(delta_perm.mean() / max(delta_sub.mean(), 1e-12))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    boot = 1.0 - delta_perm[idx].mean(axis=1) / np.maximum(delta_sub[idx].mean(axis=1), 1e-12)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    diff = ratio_threshold * delta_sub - delta_perm
    if np.allclose(diff, 0.0):
        p = 1.0
    else:
        p = float(scipy.stats.wilcoxon(diff, alternative="greater", zero_method="wilcox").pvalue)
    return {"ratio": ratio, "effect": 1.0 - ratio, "ci": (float(lo), float(hi)), "p": max(min(p, 1.0), 1e-300)}


def bag_features(model: ConceptModel, sequences: Sequence[Sequence[int]], decay: float) -> np.ndarray:
    """[sum_i decay^(T-2-i) e_{x_i} over non-final tokens, e_{x_last}] per sequence: (n, 2d)."""
    vocabulary = sorted({int(i) for seq in sequences for i in seq})
    table = embedding_rows(model, vocabulary)  # only the rows these sequences use (a remote model downloads those)
    where = {token: row for row, token in enumerate(vocabulary)}
    rows = []
    for seq in sequences:
        E = table[[where[int(i)] for i in seq]]
        weights = decay ** np.arange(len(seq) - 2, -1, -1, dtype=np.float64)
        rows.append(np.concatenate([weights @ E[:-1], E[-1]]))
    return np.stack(rows)


def leading_components(Y: np.ndarray, k: int) -> np.ndarray:
    """Scores of Y on its ``k`` leading principal components (the target of the bag-of-embeddings model)."""
    centred = Y - Y.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T


def aggregation_tests(
    model: ConceptModel,
    texts: Sequence[str],
    *,
    twin: ConceptModel | None = None,
    dataset: str = "",
    groups: Sequence[Any] | None = None,
    decay: float = 0.7,
    penalty: float = 1.0,
    n_components: int = 8,
    ratio_threshold: float = 0.5,
    n_permutations: int = 999,
    n_bootstrap: int = 1000,
    seed: int = 0,
    claim: str = "A6",
) -> tuple[ResultSet, dict[str, Any]]:
    """Both A6 tests on the model and (when given) its untrained twin; returns results and per-item details."""
    if model.site_map.final_norm is None:  # said before any work: an encoder has no final context vector
        raise NotApplicableError(f"{model.name} has no final norm; A6 reads the final context vector (the input of "
                                 "the LM head), which an encoder such as BERT does not have")
    tok = model.tokenizer
    encoded = tok(list(texts), add_special_tokens=True)["input_ids"]
    vocab = vocab_size(model)
    special = [int(i) for i in getattr(tok, "all_special_ids", [])]
    sampler = FrequencySampler(token_zipf(tok, vocab), exclude=special)
    pert = perturb(encoded, sampler, protected=special, seed=seed)
    kept = np.asarray(pert.kept)
    group_arr = np.asarray(list(groups) if groups is not None else range(len(texts)))[kept]
    results: list[TestResult] = []
    details: dict[str, Any] = {"n_changed": list(pert.n_changed), "n_sentences": len(kept)}
    for m, control in ((model, None), (twin, "untrained")):
        if m is None:
            continue
        label = control or "task"
        c0 = context_vectors(m, pert.original)
        dp = _cosine_change(c0, context_vectors(m, pert.permuted))
        ds = _cosine_change(c0, context_vectors(m, pert.substituted))
        ovc = order_vs_content_test(dp, ds, ratio_threshold=ratio_threshold, n_bootstrap=n_bootstrap, seed=seed)
        details[label] = {"delta_perm": dp.tolist(), "delta_sub": ds.tolist()}
        results.append(TestResult(
            key=TestKey(test="aggregation", dataset=dataset, method="permute_vs_substitute", site=FINAL_NORM,
                        position="last", control=control),
            claim=claim, statistic_name="ratio_perm_to_sub", statistic=ovc["ratio"],
            effect_size_name="one_minus_ratio", effect_size=ovc["effect"], ci_low=ovc["ci"][0],
            ci_high=ovc["ci"][1], p_value=ovc["p"], n=len(dp), n_groups=len(dp),
            extra={"site": "final_norm", "mean_delta_perm": float(dp.mean()), "mean_delta_sub": float(ds.mean()),
                   "ratio_threshold": ratio_threshold, "test": "one-sided paired Wilcoxon of "
                   f"{ratio_threshold} * delta_sub - delta_perm > 0", "n_bootstrap": n_bootstrap,
                   "mean_tokens_changed": float(np.mean(pert.n_changed)), "seed": seed},
        ))
        X = bag_features(m, pert.original, decay)
        Y = leading_components(c0, min(n_components, c0.shape[1]))
        rs, _ = probe_layers(
            RidgeRegressionProbe(penalty=penalty), X[None], Y, group_arr, dataset=dataset, layers=[None],
            claim=claim, position="last", control=control, scoring="r2", n_permutations=n_permutations,
            n_bootstrap=n_bootstrap, seed=seed,
        )
        r = rs[0]
        results.append(r.replace(
            test="aggregation", site=FINAL_NORM, method="bag_of_embeddings_ridge",
            extra={**dict(r.extra), "site": "final_norm", "decay": decay, "target": f"top {Y.shape[1]} PCs",
                   "null": "shuffled targets (refit)"},
        ))
    return ResultSet(results), details
