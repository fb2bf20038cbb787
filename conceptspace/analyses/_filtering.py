"""N7, filtering vs aggregation: how far is each sublayer from a data-independent linear filter?

Claim (7) of the seed paper: the Transformer is built from two operation types, filtering (data-independent)
and aggregation (data-dependent). The architectural half of that is an identity (MLPs and norms act position by
position; only attention mixes positions). The empirical half, tested here, is whether the trained sublayers
*behave* so: whether a position-wise sublayer is close to a fixed linear map and attention is not.

Data-dependence index of one sublayer (per block): fit its best input-independent linear filter, a ridge
regression (penalty chosen by a two-fold split of the training sequences from ``penalties``) of its output
at position t on its inputs at t, t-1, ..., t-lags (``lags = 0``, the battery's
choice: the best input-independent affine map of the position's own input; ``lags > 0``: a causal,
time-invariant filter, what attention would be if its pattern did not depend on the data, which on SmolLM2 with
a few thousand positions overfits more than it gains), on half of the sequences, and evaluate it on the other
half (two-fold cross-fitting, so every sequence is held out once):

    D_s(sequence j) = sum_t ||y_t - filter(x)_t||^2 / sum_t ||y_t - mean_train(y)||^2

relative to mean-ablation (replacing the output by its training mean): 0 = exactly a fixed linear filter, 1 = the
filter explains nothing the mean does not. The first ``max(lags, 1)`` positions of a sequence are left out of
both fit and evaluation (they lack a full lag window, and the first position's residual is an outlier in many
models), and so is any later position whose residual stream at the block (the input of either norm) is a
*massive activation*: a norm more than ``MASSIVE_FACTOR`` (10) times the median norm of the block's positions
(Sun et al. 2024, "Massive activations in large language models": a few tokens, usually the first, carry
residual norms ~100x the rest and act as attention sinks). No affine map can be fitted across a 100x range of a
norm's input, so one such token in a held-out sequence decided the whole index: in the full battery one of 48
sequences had one at position 1 (norm 17,646 against a median of 163 at block 15 of SmolLM2), its
attention-norm D was 134, and the block's mean gap -2.66 [-8.26, 0.15] was that token's (rule added after that
run, 2026-12-03; the positions left out are counted in ``extra["massive_positions"]``). The same positions are
left out for all four sublayers of the block, so their indices stay comparable.

Sublayers: ``attention`` (input: the attention norm's output), ``mlp`` (input: the MLP norm's output),
``attention_norm`` and ``mlp_norm`` (input: the residual stream they read).

Statistic (per block): the mean over sequences of g_j = D_attention(j) - max(D_mlp(j), D_attention_norm(j),
D_mlp_norm(j)): attention must be further from a filter than the *least* filter-like position-wise sublayer.
Null: sign flips of g_j (attention exchangeable with that sublayer; sequentially drawn Monte Carlo p); CI:
bootstrap over sequences, the variance the flips act on. The null battery (``null_seed``) flips the signs of
g_j with a seeded coin before anything is scored, so the observed statistic is a draw of its own null.

Text: sequences of ``sequence_tokens`` tokens built from the bundled sentence sets (seeded order, sentences
joined by a space, cut at the length): there is no held-out prose in the bundle, and these sets have licenses
and datasheets. The shuffled-input baseline permutes each sequence's tokens (word salad with the same tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from conceptspace.activations import memoized
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel
from conceptspace.models._nnsight import import_nnsight

SUBLAYERS = ("attention", "mlp", "attention_norm", "mlp_norm")
_NAMES = {
    "attention_norm": ("input_layernorm", "ln_1"),
    "attention": ("self_attn", "attn", "attention"),
    "mlp_norm": ("post_attention_layernorm", "ln_2"),
    "mlp": ("mlp",),
}
MAX_ROWS = 32
#: a residual norm above this many times the block's median norm marks a massive activation (left out)
MASSIVE_FACTOR = 10.0


# ------------------------------------------------------------------------------------------------ text
def build_sequences(model: ConceptModel, sentences: Sequence[str], n_sequences: int, length: int, seed: int) -> (
    list[list[int]]
):
    """``n_sequences`` token-id sequences of exactly ``length`` tokens (plus the tokenizer's special prefix,
    if any): seeded sentences joined by a space."""
    if len(sentences) < 2:
        raise InvalidInputError("filtering needs at least two sentences to build sequences from")
    if length < 8:
        raise InvalidInputError(f"sequence_tokens must be at least 8; got {length}")
    tok = model.tokenizer
    prefix = list(tok("", add_special_tokens=True)["input_ids"])
    pieces = [list(ids) for ids in tok([" " + s.strip() for s in sentences], add_special_tokens=False)["input_ids"]]
    pieces = [p for p in pieces if p]
    rng = np.random.default_rng([seed, 7001])
    order = list(rng.permutation(len(pieces)))
    out = []
    for _ in range(n_sequences):
        ids: list[int] = []
        while len(ids) < length:
            if not order:
                order = list(rng.permutation(len(pieces)))
            ids.extend(pieces[order.pop()])
        out.append(prefix + ids[:length])
    if len(out[0]) > model.max_length:
        raise InvalidInputError(f"sequences of {len(out[0])} tokens exceed the model's context {model.max_length}")
    return out


def shuffle_tokens(sequences: Sequence[Sequence[int]], seed: int, keep_prefix: int) -> list[list[int]]:
    """Each sequence's tokens permuted (the special prefix kept): the same tokens without their order."""
    rng = np.random.default_rng([seed, 7003])
    out = []
    for s in sequences:
        head, body = list(s[:keep_prefix]), np.asarray(s[keep_prefix:])
        out.append(head + body[rng.permutation(body.size)].tolist())
    return out


# ------------------------------------------------------------------------------------------ the trace
def sublayer_paths(model: ConceptModel, block: int) -> dict[str, str]:
    """Module paths of the four sublayers of a pre-norm block, or NotApplicableError (post-norm encoders)."""
    base = f"{model.site_map.layers}.{block}"
    children = {name for name, _ in model.hf_model.get_submodule(base).named_children()}
    out = {}
    for sub, names in _NAMES.items():
        found = next((n for n in names if n in children), None)
        if found is None:
            raise NotApplicableError(f"the filtering test reads each block's attention, MLP and their two norms; "
                                     f"block {base} of {model.name} has none of {names} (children: "
                                     f"{sorted(children)})")
        out[sub] = f"{base}.{found}"
    return out


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    pos = torch.arange(width)[None, :].expand(len(rows), width).contiguous()
    return ids, mask, pos


def read_sublayers(model: ConceptModel, sequences: Sequence[Sequence[int]], blocks: Sequence[int]) -> (
    dict[int, dict[str, tuple[list[np.ndarray], list[np.ndarray]]]]
):
    """Per block and sublayer: (inputs, outputs), one (T_j, d) array per sequence. Sequences are padded on the
    right (causal attention never lets a real position see a pad), one trace per batch."""
    nnsight = import_nnsight()
    traced = model.traced()
    # The envoys are resolved here, not inside the trace: the trace body is shipped to the worker (NDIF, or the
    # dry run's simulated server), which has no conceptspace, so it may name only torch, nnsight and envoys.
    envoys = {b: {sub: model.module_envoy(path) for sub, path in sublayer_paths(model, b).items()} for b in blocks}
    pad = getattr(model.tokenizer, "pad_token_id", None) or getattr(model.tokenizer, "eos_token_id", None) or 0
    store: dict[int, dict[str, tuple[list[np.ndarray], list[np.ndarray]]]] = {
        b: {s: ([], []) for s in SUBLAYERS} for b in blocks}
    for start in range(0, len(sequences), MAX_ROWS):
        rows = sequences[start:start + MAX_ROWS]
        ids, mask, pos = _pad_right(rows, int(pad))
        device = model.device
        with torch.inference_mode():
            with traced.trace(input_ids=ids.to(device), attention_mask=mask.to(device),
                              position_ids=pos.to(device), remote=model.remote) as tracer:
                saved = []
                for b in sorted(blocks):
                    e = envoys[b]
                    n1 = e["attention_norm"]
                    r_in, n1_out = n1.input, n1.output
                    a = e["attention"].output
                    a_out = a[0] if isinstance(a, tuple) else a
                    n2 = e["mlp_norm"]
                    r_mid, n2_out = n2.input, n2.output
                    m = e["mlp"].output
                    m_out = m[0] if isinstance(m, tuple) else m
                    saved.append([t.float().cpu() for t in (r_in, n1_out, a_out, r_mid, n2_out, m_out)])
                saved = nnsight.save(saved)
                tracer.stop()
        model.record_download(saved)
        for b, tensors in zip(sorted(blocks), saved, strict=True):
            r_in, n1_out, a_out, r_mid, n2_out, m_out = (t.numpy() for t in tensors)
            pairs = {"attention_norm": (r_in, n1_out), "attention": (n1_out, a_out),
                     "mlp_norm": (r_mid, n2_out), "mlp": (n2_out, m_out)}
            for sub, (x, y) in pairs.items():
                for i, row in enumerate(rows):
                    store[b][sub][0].append(np.asarray(x[i, : len(row)], dtype=np.float64))
                    store[b][sub][1].append(np.asarray(y[i, : len(row)], dtype=np.float64))
    return store


# -------------------------------------------------------------------------------------------- the index
def lagged(X: np.ndarray, lags: int, skip: int) -> np.ndarray:
    """Rows t = skip..T-1 of [x_t, x_{t-1}, ..., x_{t-lags}] (a causal filter's inputs)."""
    T = X.shape[0]
    return np.concatenate([X[skip - k: T - k] for k in range(lags + 1)], axis=1)


def _ridge_paths(Z: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centred ridge of Y on Z, for every penalty at once: (mean_z, mean_y, eigenvalues, eigenvectors,
    eigenvectors^T Z^T Y); W(lam) = V diag(1 / (s + lam * mean(s))) V^T Z^T Y."""
    mz, my = Z.mean(axis=0), Y.mean(axis=0)
    Zc = Z - mz
    s, V = np.linalg.eigh(Zc.T @ Zc)
    return mz, my, np.maximum(s, 0.0), V, V.T @ (Zc.T @ (Y - my))


def _fit(Z: np.ndarray, Y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mz, my, s, V, VtZY = _ridge_paths(Z, Y)
    W = V @ (VtZY / (s + penalty * s.mean() + 1e-12)[:, None])
    return mz, my, W


def choose_penalty(Z: Sequence[np.ndarray], Y: Sequence[np.ndarray], penalties: Sequence[float]) -> float:
    """The penalty (relative to the mean eigenvalue of the Gram matrix) with the least error over a two-fold
    split of the *training* sequences: the best affine map is tuned without seeing the held-out fold."""
    half = len(Z) // 2
    errors = np.zeros(len(penalties))
    for train, test in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        mz, my, s, V, VtZY = _ridge_paths(np.concatenate(Z[train]), np.concatenate(Y[train]))
        Zt, Yt = np.concatenate(Z[test]) - mz, np.concatenate(Y[test]) - my
        ZtV = Zt @ V
        for k, lam in enumerate(penalties):
            errors[k] += float(((Yt - ZtV @ (VtZY / (s + lam * s.mean() + 1e-12)[:, None])) ** 2).sum())
    return float(penalties[int(np.argmin(errors))])


def held_out_index(X: Sequence[np.ndarray], Y: Sequence[np.ndarray], folds: np.ndarray, *, lags: int,
                   penalties: Sequence[float], keep: Sequence[np.ndarray] | None = None) -> (
        tuple[np.ndarray, list[float]]):
    """(n,) D per sequence: held-out squared error of the ridge filter fitted on the other fold (its penalty
    chosen within that fold), over the error of the other fold's mean output (mean-ablation); and the chosen
    penalties. ``keep`` (one boolean (T_j,) mask per sequence): positions that may enter fit and evaluation; a
    row is used only if every position of its lag window is kept."""
    skip = max(lags, 1)
    Z = [lagged(x, lags, skip) for x in X]
    T = [y[skip:] for y in Y]
    if keep is not None:
        rows = [np.all(np.stack([k[skip - j: len(k) - j] for j in range(lags + 1)]), axis=0) for k in keep]
        Z = [z[r] for z, r in zip(Z, rows, strict=True)]
        T = [t[r] for t, r in zip(T, rows, strict=True)]
    out = np.full(len(X), np.nan)
    chosen = []
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        test = np.flatnonzero(folds == fold)
        lam = choose_penalty([Z[i] for i in train], [T[i] for i in train], penalties) if len(penalties) > 1 \
            else float(penalties[0])
        chosen.append(lam)
        mz, my, W = _fit(np.concatenate([Z[i] for i in train]), np.concatenate([T[i] for i in train]), lam)
        for i in test:
            pred = (Z[i] - mz) @ W + my
            base = float(((T[i] - my) ** 2).sum())
            out[i] = float(((T[i] - pred) ** 2).sum()) / max(base, 1e-30)
    return out, chosen


@dataclass(frozen=True)
class BlockIndex:
    """D per sublayer and sequence at one block (``D[sub]`` (n,)), the penalties chosen per fold, and the
    gap g (n,)."""

    D: dict[str, np.ndarray]
    penalties: dict[str, list[float]]
    #: positions after the first left out as massive activations (see module doc)
    massive_positions: int = 0

    @property
    def gap(self) -> np.ndarray:
        others = np.max(np.stack([self.D[s] for s in SUBLAYERS if s != "attention"]), axis=0)
        return self.D["attention"] - others  # type: ignore[no-any-return]


def measure_blocks(model: ConceptModel, sequences: Sequence[Sequence[int]], blocks: Sequence[int],
                   folds: np.ndarray, *, lags: int, penalties: Sequence[float]) -> dict[int, BlockIndex]:
    """The data-dependence index of every sublayer of ``blocks`` on ``model``.

    Memoized (:func:`~conceptspace.activations.memoized`) on the sequences, blocks, folds, lags and penalties:
    a warm run reads D and the chosen penalties (a few numbers per sequence) and runs neither the forwards nor
    the ridge fits, which are deterministic functions of the same inputs."""
    chosen = [int(b) for b in blocks]
    spec = {"tokens": np.concatenate([np.asarray(row, dtype=np.int64) for row in sequences]),
            "lengths": np.array([len(row) for row in sequences], dtype=np.int64), "blocks": chosen,
            "folds": np.asarray(folds, dtype=np.int64), "lags": lags, "penalties": [float(p) for p in penalties],
            "max_rows": MAX_ROWS, "massive_factor": MASSIVE_FACTOR}

    def compute() -> dict[str, np.ndarray]:
        measured = _measure_blocks(model, sequences, chosen, folds, lags=lags, penalties=penalties)
        out: dict[str, np.ndarray] = {}
        for b, index in measured.items():
            for sub in SUBLAYERS:
                out[f"D_{b}_{sub}"] = index.D[sub]
                out[f"penalty_{b}_{sub}"] = np.asarray(index.penalties[sub], dtype=np.float64)
            out[f"massive_{b}"] = np.asarray([index.massive_positions], dtype=np.int64)
        return out

    # version 2: massive-activation positions left out (and counted) since 2026-12-03
    arrays = memoized(model, "filtering.blocks", spec, compute, version="2")
    return {b: BlockIndex({sub: arrays[f"D_{b}_{sub}"] for sub in SUBLAYERS},
                          {sub: [float(p) for p in arrays[f"penalty_{b}_{sub}"]] for sub in SUBLAYERS},
                          int(arrays[f"massive_{b}"][0]))
            for b in chosen}


def _measure_blocks(model: ConceptModel, sequences: Sequence[Sequence[int]], blocks: Sequence[int],
                    folds: np.ndarray, *, lags: int, penalties: Sequence[float]) -> dict[int, BlockIndex]:
    """:func:`measure_blocks` without the memo: the forwards and the ridge fits."""
    store = read_sublayers(model, sequences, blocks)
    out = {}
    for b in blocks:
        keep = ordinary_positions(store[b]["attention_norm"][0], store[b]["mlp_norm"][0])
        fitted = {s: held_out_index(*store[b][s], folds, lags=lags, penalties=penalties, keep=keep)
                  for s in SUBLAYERS}
        massive = int(sum((~k[1:]).sum() for k in keep))
        out[b] = BlockIndex({s: f[0] for s, f in fitted.items()}, {s: f[1] for s, f in fitted.items()}, massive)
    return out


def ordinary_positions(*residuals: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One (T_j,) mask per sequence: False where any of the given residual streams (the norms' inputs) has a
    massive activation, a norm above ``MASSIVE_FACTOR`` times that stream's median norm over every position
    after the first of every sequence (labels play no part, so both folds may set the threshold)."""
    masks = [np.ones(len(r), dtype=bool) for r in residuals[0]]
    for stream in residuals:
        norms = [np.linalg.norm(r, axis=1) for r in stream]
        threshold = MASSIVE_FACTOR * float(np.median(np.concatenate([n[1:] for n in norms])))
        for mask, n in zip(masks, norms, strict=True):
            mask &= n <= threshold
    return masks


# ------------------------------------------------------------------------------------------ statistics
def sign_flip_draw(gaps: Sequence[np.ndarray], seed: int) -> Callable[[int, int], np.ndarray]:
    """``draw(offset, count)``: mean of sign-flipped gaps per row, flips numbered by draw (one generator per
    draw number, so a run does not depend on batch sizes); rows share the flips."""
    G = np.stack([np.asarray(g, dtype=np.float64) for g in gaps])
    n = G.shape[1]

    def draw(offset: int, count: int) -> np.ndarray:
        signs = np.stack([np.random.default_rng([seed, 7013, offset + b]).choice([-1.0, 1.0], size=n)
                          for b in range(count)])
        return (G @ signs.T) / n  # type: ignore[no-any-return]

    return draw


def null_signs(n: int, null_seed: int) -> np.ndarray:
    """The null battery's coin per sequence (attention and its rival swap labels where it shows -1)."""
    return np.random.default_rng([null_seed, 7019]).choice([-1.0, 1.0], size=n)
