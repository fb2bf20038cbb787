"""N5, the self-mapping: is the context vector a valid *input* token vector that stands for the next step?

Claim (5) of the seed paper: the Transformer is a self-mapping composition function; it folds a context into a
context vector whose proximity to token vectors reflects probability, so the vector it outputs lives in the
space it reads. Test (T5d of the notes): append to context x_i one soft input token, the context vector c_i read
at a layer (the last position's residual, or ``ln_f`` of it), rescaled to the median input-embedding norm, and
compare the next-step distribution with the model's own, p_ref_i = p(. | x_i, a_i) where a_i is the argmax
next token (KL(p_ref_i || q), nats).

Why this statistic. KL(c-feed) alone says nothing: the scale of KL differs between models and contexts, and a
random vector of that norm is so far from everything that beating it is cheap. The comparison that can fail is
the context vector *of another context*: if c_i carries no information about x_i's next step that acts
through the input embedding, c_j (j != i) does as well. With K the (n, n) matrix K_ij = KL(p_ref_i || q(x_i,
c_j)) and t_i = KL(p_ref_i || q(x_i, rescaled e_{a_i})) (the argmax token itself at the same norm):

    S = (mean_{i != j} K_ij - mean_i K_ii) / (mean_{i != j} K_ij - mean_i t_i)

the fraction of the way from another context's vector to the argmax token's own embedding that a context's own
vector goes: S = 1 means c_i is as good an input as the token it predicts, 0 no better than a mismatched one.
Null: contexts shuffled against vectors (K_i,pi(i) in place of K_ii; the placebo mean and t are fixed by the
data), Monte Carlo p sequentially drawn; CI: bootstrap over contexts (the same variance the null permutes).

Controls and baselines:

* **lexical**: the (rescaled) embedding of the context's own last input token, fed and scored the same way. A
  vector that is mostly the last token's embedding (early layers) is context-specific for a lexical reason
  that has nothing to do with composing a context; the context vector must beat it (paired, same resamples).
* **random**: a random vector of the same norm (KL reported; S_random in ``extra``).
* **untrained twins, spectrum twin**: the same S on each control model (same contexts and resamples).
* **null battery** (``null_seed``): the vectors are shuffled against the contexts before anything is scored, so
  the "own" vector of a context is another context's, and the observed S is a draw of its own null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from conceptspace.activations import extract, memoized
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel
from conceptspace.models._weights import embedding_rows, final_norm, vocab_size


# ------------------------------------------------------------------------------------------ the feeds
def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) of left-padded rows; positions count real tokens only, so a
    row's numbers do not depend on its batch (the toolkit's padding convention)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        start = width - len(row)
        ids[i, start:] = torch.tensor(list(row), dtype=torch.long)
        mask[i, start:] = 1
        pos[i, start:] = torch.arange(len(row))
    return ids, mask, pos


def _pad_id(model: ConceptModel) -> int:
    tok = model.tokenizer
    for attribute in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tok, attribute, None)
        if value is not None:
            return int(value)
    return 0


class Feeder:
    """The contexts run once with a key/value cache; each feed is one more input position per context.

    Why a cache and not one forward per (context, vector) pair: the test scores every context with every
    context's vector (n^2 feeds), and re-running each prefix would cost its length times more. The step runs
    the Hugging Face model on ``inputs_embeds`` (the soft token stands where a token's embedding would; learned
    position embeddings are still added by the model), then the cache is cropped back to the prefix. This
    needs the weights here: a remote (NDIF) model is not applicable.
    """

    def __init__(self, model: ConceptModel, encoded: Sequence[Sequence[int]]) -> None:
        if model.remote or not model.weights_are_local:
            raise NotApplicableError("the self-mapping test feeds vectors through a key/value cache, which needs "
                                     f"the weights locally; {model.name} is remote")
        self.hf = model.hf_model
        self.device, self.dtype = model.device, model.dtype
        ids, mask, pos = left_pad(encoded, _pad_id(model))
        self.width = int(ids.shape[1])
        with torch.inference_mode():
            out = self.hf(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                          position_ids=pos.to(self.device), use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        self.first = out.logits[:, -1].float().log_softmax(-1).cpu()
        self.mask = torch.cat([mask, torch.ones(len(encoded), 1, dtype=mask.dtype)], dim=1).to(self.device)
        self.pos = mask.sum(dim=1, keepdim=True).to(self.device)

    def step(self, vectors: torch.Tensor) -> torch.Tensor:
        """(n, V) next-step log-probabilities with ``vectors`` (n, d) as each context's next input vector."""
        with torch.inference_mode():
            out = self.hf(inputs_embeds=vectors.to(self.device, self.dtype)[:, None, :], attention_mask=self.mask,
                          position_ids=self.pos, cache=self.cache, use_cache=True, logits_to_keep=1)
            self.cache.crop(-1)  # back to the prefix (transformers 5: a negative count removes tokens)
        return out.logits[:, -1].float().log_softmax(-1).cpu()  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------- measurements
@dataclass(frozen=True)
class FeedScores:
    """What feeding vectors back measured on one model: per layer the (n, n) matrix K (row i: context i's
    reference, column j: vector j), the lexical matrix, and the token and random feeds' KL (n,)."""

    layers: tuple[int, ...]
    K: dict[int, np.ndarray]
    lexical: np.ndarray
    token: np.ndarray
    random: np.ndarray
    argmax: np.ndarray
    median_norm: float


def _rescale(X: np.ndarray, norm: float) -> torch.Tensor:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return torch.from_numpy((X / np.maximum(n, 1e-12) * norm).astype(np.float32))


def _apply_final_norm(model: ConceptModel, H: np.ndarray) -> np.ndarray:
    norm = final_norm(model)
    parameter = next(norm.parameters(), None)
    device = model.device if parameter is None else parameter.device
    with torch.inference_mode():
        x = torch.from_numpy(np.array(H, dtype=np.float32)).to(device, model.dtype)
        return norm(x).float().cpu().numpy()  # type: ignore[no-any-return]


def require_self_mapping(model: ConceptModel) -> None:
    """Feeding vectors back needs next-token logits (a causal LM head)."""
    if not model.is_causal or model.head_path() is None:
        raise NotApplicableError(f"the self-mapping test feeds a context vector back as an input token and reads "
                                 f"the next-token distribution; {model.name} has no causal LM head")


def measure_feeds(model: ConceptModel, texts: Sequence[str], layers: Sequence[int], *, vector: str, seed: int,
                  shuffle: np.ndarray | None = None, progress: bool = False) -> FeedScores:
    """Feed back, on ``model``: every layer's context vector (own and every other context's), the last input
    token's embedding (lexical), the argmax token's embedding and a random vector, all at the median
    input-embedding norm; KL of each next-step distribution from the model's own after the argmax token.

    ``shuffle`` (a permutation of the contexts): the null battery's replacement, vectors and lexical
    embeddings paired with the wrong contexts before anything is scored.

    Memoized (:func:`~conceptspace.activations.memoized`): a warm run reads the (n, n) matrices and KL vectors
    and feeds nothing."""
    require_self_mapping(model)
    if vector not in ("final_norm", "residual"):
        raise InvalidInputError(f"vector must be 'final_norm' (ln_f of the residual) or 'residual'; got {vector!r}")
    spec = {"texts": list(texts), "layers": [int(layer) for layer in layers], "vector": vector, "seed": seed,
            "shuffle": None if shuffle is None else np.asarray(shuffle, dtype=np.int64)}

    def compute() -> dict[str, np.ndarray]:
        scores = _measure_feeds(model, texts, layers, vector=vector, seed=seed, shuffle=shuffle, progress=progress)
        return {**{f"K_{layer}": matrix for layer, matrix in scores.K.items()}, "lexical": scores.lexical,
                "token": scores.token, "random": scores.random, "argmax": scores.argmax,
                "median_norm": np.array([scores.median_norm], dtype=np.float64)}

    arrays = memoized(model, "self_mapping.feeds", spec, compute, version="1")
    chosen = tuple(int(layer) for layer in layers)
    return FeedScores(chosen, {layer: arrays[f"K_{layer}"] for layer in chosen}, arrays["lexical"],
                      arrays["token"], arrays["random"], arrays["argmax"], float(arrays["median_norm"][0]))


def _measure_feeds(model: ConceptModel, texts: Sequence[str], layers: Sequence[int], *, vector: str, seed: int,
                   shuffle: np.ndarray | None, progress: bool) -> FeedScores:
    """:func:`measure_feeds` without the memo: the feeds themselves."""
    encoded = [list(ids) for ids in model.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    if any(not ids for ids in encoded):
        raise InvalidInputError("a context tokenizes to no tokens; drop empty texts")
    n, d = len(encoded), model.d_model
    median = float(np.median(np.linalg.norm(embedding_rows(model, np.arange(vocab_size(model))), axis=1)))
    feeder = Feeder(model, encoded)
    argmax = feeder.first.argmax(-1).numpy().astype(np.int64)
    ref = feeder.step(torch.from_numpy(embedding_rows(model, argmax)))  # = the model after its argmax token
    weights = ref.exp()

    def kl(vectors: torch.Tensor) -> np.ndarray:
        return (weights * (ref - feeder.step(vectors))).sum(-1).double().numpy()  # type: ignore[no-any-return]

    def matrix(vectors: torch.Tensor) -> np.ndarray:
        return np.stack([kl(vectors[j].expand(n, d)) for j in range(n)], axis=1)

    perm = np.arange(n) if shuffle is None else np.asarray(shuffle)
    token = kl(_rescale(embedding_rows(model, argmax), median))
    random = kl(_rescale(np.random.default_rng([seed, 5501]).standard_normal((n, d)), median))
    last_ids = np.array([ids[-1] for ids in encoded], dtype=np.int64)
    lexical = matrix(_rescale(embedding_rows(model, last_ids[perm]), median))
    sites = [f"layer.{i}" for i in layers]
    acts = extract(model, list(texts), sites=sites, position="last", progress=progress)
    K = {}
    for layer, site in zip(layers, sites, strict=True):
        H = np.asarray(acts[site], dtype=np.float32)
        C = _apply_final_norm(model, H) if vector == "final_norm" else H
        K[layer] = matrix(_rescale(C[perm], median))
    return FeedScores(tuple(layers), K, lexical, token, random, argmax, median)


# ------------------------------------------------------------------------------------------ statistics
def off_diagonal_row_means(K: np.ndarray) -> np.ndarray:
    n = K.shape[0]
    return (K.sum(axis=1) - np.diag(K)) / (n - 1)


def recovery(own: float, placebo: float, token: float) -> float:
    """S = (placebo - own) / (placebo - token): the fraction of the gap between another context's vector and
    the argmax token's own embedding closed by the context's own vector (denominator floored at 1e-9 nats)."""
    return (placebo - own) / max(placebo - token, 1e-9)


def statistic(K: np.ndarray, token: np.ndarray) -> float:
    return recovery(float(np.mean(np.diag(K))), float(off_diagonal_row_means(K).mean()), float(np.mean(token)))


def permutation_draw(matrices: Sequence[np.ndarray], token: np.ndarray, seed: int) -> Callable[[int, int], np.ndarray]:
    """``draw(offset, count)`` for :func:`~conceptspace.stats.sequential_null`: S of each matrix with the
    vectors paired by permutation number offset..offset+count-1 (one generator per permutation number, so a
    run is the same whatever the batch sizes)."""
    n = matrices[0].shape[0]
    placebo = [float(off_diagonal_row_means(K).mean()) for K in matrices]
    tok = float(np.mean(token))
    rows = np.arange(n)

    def draw(offset: int, count: int) -> np.ndarray:
        perms = np.stack([np.random.default_rng([seed, 4242, offset + b]).permutation(n) for b in range(count)])
        out = np.empty((len(matrices), count))
        for r, K in enumerate(matrices):
            own = K[rows[None, :], perms].mean(axis=1)
            out[r] = (placebo[r] - own) / max(placebo[r] - tok, 1e-9)
        return out

    return draw


def bootstrap_statistic(K: np.ndarray, token: np.ndarray, boot_rows: np.ndarray) -> np.ndarray:
    """(B,) S on contexts resampled with replacement (rows of ``boot_rows``): the same resamples for the model,
    its baselines and its controls, so their differences are paired."""
    diag = np.diag(K)[boot_rows].mean(axis=1)
    placebo = off_diagonal_row_means(K)[boot_rows].mean(axis=1)
    tok = token[boot_rows].mean(axis=1)
    return (placebo - diag) / np.maximum(placebo - tok, 1e-9)
