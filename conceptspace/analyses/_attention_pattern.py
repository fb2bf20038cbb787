"""N6, attention's association bias: how much of what attention contributes survives a data-independent pattern?

Claim (6) of the seed paper: context vectors are composed by aggregating the features of the sequence's tokens;
attention contributes "a potentially redundant association bias". Read operationally: if every head's attention
*pattern* (its (query, key) weights) is replaced by a fixed, input-independent pattern while the *values* stay
data-dependent, the model keeps most of what its attention contributes to next-token prediction.

Interventions at one block (every head of it at once; heads are not scanned one by one, which keeps the cost at
two extra forwards per block), or at every block at once (``every_block``):

* ``clean``: no change;
* ``mean_pattern``: each head's weights replaced by their mean over the *fitting* sequences, per (query, key)
  position (fixed-length, unpadded sequences make this well defined; the mean of causal stochastic rows is a
  causal stochastic row), and applied to the evaluated sequence's own values;
* ``ablate``: each head's output (weights @ values, before the output projection) replaced by its mean over the
  fitting sequences, per position: mean-ablation, what the block's attention gives without any data.

The means are fitted and evaluated by two-fold cross-fitting (each fold's sequences are edited with the other
fold's means; every sequence is held out once). Per held-out sequence j, with K the mean over its positions of
KL(clean next-token distribution || edited one), in nats: a_j = K_ablate - K_mean_pattern (the output change a
fixed pattern avoids) and c_j = K_ablate (the change removing the data from attention causes). The statistic is
the recovered fraction R = mean(a) / mean(c) (a ratio of means: a per-sequence ratio explodes where c_j is near
0). "The association bias is redundant" predicts R close to 1; R < 0 means the fixed pattern disturbs the output
*more* than mean-ablation (live values read through a pattern that does not fit them).

Why KL and not the next-token loss the issue first proposed (both are reported; the loss version is
``recovered_fraction_loss`` with the three losses beside): one block's attention is worth little loss on its own
in a 30-block model, and mean-ablating it can even *lower* the loss on a short text (measured on SmolLM2, block
15: -0.08 nats), so the loss ratio's denominator straddles 0 and R_loss ran from -0.1 to 9 across blocks. The KL
from the clean model is never negative, is 0 exactly when an edit changes nothing, and measures how much of the
model's *function* a fixed pattern keeps, which is the claim; the loss says whether the change happened to help.

Why the full (query, key) mean and not the mean along diagonals (per relative position): with fixed-length
sequences the full mean contains the relative-position mean as a special case and also keeps what depends on
absolute position (the attention sink at the first token), so it is the *most* a data-independent pattern can
do; a claim of redundancy should get that benefit.

Null and interval: sign flips of a_j (the mean pattern exchangeable with ablation: it recovers nothing), drawn
sequentially; CI: bootstrap over held-out sequences of the same ratio. The p-value is nearly always tiny (a fixed
pattern with live values recovers *something*); the claim is decided by the effect (R minus the null mean, which
is ~0) against ``min_effect`` and its CI. The null battery (``null_seed``) flips a_j with a seeded coin, so the
observed statistic is a draw of its own null and R collapses to ~0.

The positive control (an instrument check that can fail, in both directions): repeated random tokens. A
sequence is random filler, then a block A of m random tokens, then A again. Its twin has the same A and filler but
the second copy permuted: the same bag of tokens, so averaging over seen tokens (which a fixed pattern *can* do)
helps both equally, while copying helps only the exact repeat. The copying advantage is L(permuted second copy) -
L(exact second copy), measured clean and with the mean pattern at the control's blocks at once
(``positive_control``: every block, or the blocks after the primary one). Two arms:

* varied offsets (m drawn per sequence): no fixed pattern can copy, so the edit must lose the advantage; if the
  model copies (advantage >= ``COPY_MIN_NATS``) and the edit keeps >= ``COPY_KEEP_MAX`` of it, the edit did not
  remove data dependence ("the positive control failed");
* one offset for every sequence: the mean pattern now contains the copying diagonal, so an edit that removes
  *only* data dependence must keep the advantage; if it keeps < ``COPY_KEEP_MAX``, the edit disturbs the model
  beyond its patterns' data dependence (live values read through patterns fitted to other values, compounding
  over blocks), and losing the varied-offset advantage says nothing ("not specific").

Either failure puts ``not_testable`` on every result (verdict "not testable as run"). The first arm alone, as the
issue proposed it, passes for any edit that wrecks the model. Measured on SmolLM2 (12 sequences of 32 tokens):
with every block fixed the edit keeps 4% of the varied-offset advantage and 2% of the fixed-offset one (not
specific: the model is wrecked, second-copy loss 3.1 -> 15 nats); blocks 0-7 and 0-15 the same; blocks 8-15 keep
both (94%, 102%: no copying there); blocks 16-29, the ones after the primary, keep 17% and 93%: the edit removes
data-dependent copying and leaves positional copying alone. The battery uses ``after_primary``, chosen after
these measurements (said so in the suite). A model that does not copy (the tiny planted ones) gives the check
nothing to find; it says so in ``extra["copy_check"]`` and is judged as measured. Single-block edits leave
SmolLM2's copying alone whatever the offsets (second-copy loss 3.09 clean, 3.10 with block 15's mean pattern,
3.06 ablated), so a check at the primary block alone could not fail either way. Per edit, R on the exact repeats'
second copies is reported beside (``induction``); on SmolLM2 it is *not* below R on prose for single blocks
(0.35-0.69 vs -0.02-0.43).

Sites: ``layer.<b>`` for one block, ``unembed`` for every block at once (the loss is read at the output). The
twins repeat only the primary edit.

Text: prose-like sequences from the bundled sentence sets, built as in N7 (:func:`_filtering.build_sequences`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from conceptspace.activations import memoized
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel

ATTENTION_NAME = "conceptspace_attention_pattern"
COPY_MIN_NATS = 1.0
COPY_KEEP_MAX = 0.5
MAX_ROWS = 16
CONDITIONS = ("clean", "mean_pattern", "ablate")


# -------------------------------------------------------------------------------------- the attention edit
@dataclass
class _Edit:
    """What the registered attention function does on one model: record per-fold sums (clean runs), or
    replace the pattern / the output at ``blocks`` with the means of fold ``source``."""

    mode: str = "record"  # "record", "mean_pattern" or "ablate"
    blocks: frozenset[int] = frozenset()
    fold: int = 0  # the fold of the rows in the current batch (record) ...
    source: int = 0  # ... or whose means are applied (edits)
    weight_sums: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (fold, block) -> (H, T, T)
    output_sums: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (fold, block) -> (H, T, dh)
    counts: dict[int, int] = field(default_factory=dict)  # fold -> sequences recorded

    def mean_weights(self, block: int) -> torch.Tensor:
        return self.weight_sums[(self.source, block)] / self.counts[self.source]

    def mean_output(self, block: int) -> torch.Tensor:
        return self.output_sums[(self.source, block)] / self.counts[self.source]


_ACTIVE: dict[int, _Edit] = {}


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _pattern_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention with explicit softmax weights (query (B, H, T, dh), key/value (B, H_kv, T, dh)); records
    or swaps them as the model's active :class:`_Edit` says. Sequences are unpadded and of equal length, so the
    causal triangle is the whole mask (the mask function of this implementation name is none)."""
    edit = _ACTIVE[id(module.config)]
    block = int(module.layer_idx)
    groups = query.shape[1] // key.shape[1]
    k, v = _repeat_kv(key, groups), _repeat_kv(value, groups)
    T = query.shape[2]
    if key.shape[2] != T:
        raise InvalidInputError("the attention-pattern edit runs whole sequences without a key/value cache")
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    if edit.mode == "ablate" and block in edit.blocks:
        out = edit.mean_output(block).to(value.dtype).unsqueeze(0).expand(query.shape[0], -1, -1, -1)
        return out.transpose(1, 2).contiguous(), None
    if edit.mode == "mean_pattern" and block in edit.blocks:
        weights = edit.mean_weights(block).to(value.dtype).unsqueeze(0)
    else:
        scores = torch.matmul(query, k.transpose(2, 3)) * scale
        causal = torch.ones(T, T, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(weights, v)  # (B, H, T, dh)
    if edit.mode == "record":
        key_ = (edit.fold, block)
        w_sum, o_sum = weights.double().sum(dim=0), out.double().sum(dim=0)
        edit.weight_sums[key_] = edit.weight_sums[key_] + w_sum if key_ in edit.weight_sums else w_sum
        edit.output_sums[key_] = edit.output_sums[key_] + o_sum if key_ in edit.output_sums else o_sum
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _pattern_attention)


def require_local_causal(model: ConceptModel) -> None:
    """The edit swaps the attention function of the local Hugging Face model and reads next-token losses."""
    if model.remote or not model.weights_are_local:
        raise NotApplicableError("the attention-pattern test replaces the attention function inside the model, "
                                 f"which needs the weights locally; {model.name} is remote")
    if not model.is_causal or model.head_path() is None:
        raise NotApplicableError(f"the attention-pattern test scores next-token losses; {model.name} is not a "
                                 "causal language model")


@contextlib.contextmanager
def pattern_edit(model: ConceptModel) -> Iterator[_Edit]:
    """Switch ``model`` to the explicit attention function for the ``with`` block; the original implementation
    is restored afterwards, also on error."""
    require_local_causal(model)
    hf: Any = model.hf_model
    if not hasattr(hf, "set_attn_implementation"):
        raise NotApplicableError(f"{model.name} cannot switch its attention implementation (transformers' "
                                 "AttentionInterface), which the attention-pattern test needs")
    _register()
    original = hf.config._attn_implementation
    edit = _Edit()
    _ACTIVE[id(hf.config)] = edit
    try:
        hf.set_attn_implementation(ATTENTION_NAME)
        if hf.config._attn_implementation != ATTENTION_NAME:
            raise NotApplicableError(f"{model.name} does not dispatch attention through transformers' "
                                     "AttentionInterface, which the attention-pattern test needs")
        yield edit
    finally:
        with contextlib.suppress(Exception):
            hf.set_attn_implementation(original)
        hf.config._attn_implementation = original
        _ACTIVE.pop(id(hf.config), None)


# ---------------------------------------------------------------------------------------------- losses
def _token_logp(model: ConceptModel, rows: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (B, keep, V) of the last ``keep`` next-token predictions of equal-length unpadded rows,
    and their targets (B, keep)."""
    T = rows.shape[1]
    with torch.inference_mode():
        logits = model.hf_model(input_ids=rows.to(model.device), logits_to_keep=keep + 1).logits.float()
        return torch.log_softmax(logits[:, :-1], dim=-1).cpu(), rows[:, T - keep:]


def _batches(folds: np.ndarray) -> list[tuple[int, np.ndarray]]:
    out: list[tuple[int, np.ndarray]] = []
    for fold in (0, 1):
        rows = np.flatnonzero(folds == fold)
        out.extend((fold, rows[i:i + MAX_ROWS]) for i in range(0, rows.size, MAX_ROWS))
    return out


Plan = tuple[str, str, frozenset[int]]  # (name, mode, blocks)


def plans(blocks: Sequence[int], n_layers: int, *, every_block: Sequence[str] = ("mean_pattern", "ablate")) -> (
    list[Plan]
):
    """The edited runs: ``mean_pattern@b`` and ``ablate@b`` per block b, and ``<mode>@all`` (every block at
    once) for each mode in ``every_block``."""
    out: list[Plan] = [(f"{mode}@{b}", mode, frozenset([int(b)])) for b in blocks
                       for mode in ("mean_pattern", "ablate")]
    out += [(f"{mode}@all", mode, frozenset(range(n_layers))) for mode in every_block]
    return out


@dataclass(frozen=True)
class Runs:
    """Per-token next-token loss (nats) and KL(clean || run) (nats) of every run, (n, T-1) each (NaN where not
    scored); ``clean`` has KL 0."""

    loss: dict[str, np.ndarray]
    kl: dict[str, np.ndarray]


def run_conditions(model: ConceptModel, ids: np.ndarray, folds: np.ndarray, runs: Sequence[Plan], *,
                   keep_last: int | None = None) -> Runs:
    """The clean model (``clean``) and every planned edit, two-fold cross-fitted (each fold edited with the other
    fold's means). ``keep_last``: score only the last that many predictions (the unembedding is a fifth of the
    cost, and the induction probe reads only its second copy).

    Memoized (:func:`~conceptspace.activations.memoized`): a warm run reads the (n, T-1) loss and KL arrays."""
    if ids.ndim != 2 or ids.shape[1] < 4:
        raise InvalidInputError(f"the attention-pattern test needs equal-length sequences of >= 4 tokens; got "
                                f"shape {ids.shape}")
    if len(folds) != ids.shape[0] or set(np.unique(folds).tolist()) != {0, 1}:
        raise InvalidInputError("two-fold cross-fitting needs one fold (0 or 1) per sequence and both folds used")
    names = ["clean", *(name for name, _, _ in runs)]
    spec = {"ids": np.asarray(ids, dtype=np.int64), "folds": np.asarray(folds, dtype=np.int64),
            "runs": [[name, mode, sorted(int(b) for b in chosen)] for name, mode, chosen in runs],
            "keep_last": keep_last, "max_rows": MAX_ROWS}

    def compute() -> dict[str, np.ndarray]:
        out = _run_conditions(model, ids, folds, runs, keep_last)
        return {**{f"loss_{i}": out.loss[name] for i, name in enumerate(names)},
                **{f"kl_{i}": out.kl[name] for i, name in enumerate(names)}}

    arrays = memoized(model, "attention_pattern.runs", spec, compute, version="1")
    return Runs({name: arrays[f"loss_{i}"] for i, name in enumerate(names)},
                {name: arrays[f"kl_{i}"] for i, name in enumerate(names)})


def _run_conditions(model: ConceptModel, ids: np.ndarray, folds: np.ndarray, runs: Sequence[Plan],
                    keep_last: int | None) -> Runs:
    """:func:`run_conditions` without the memo: the clean and edited forwards."""
    tensor = torch.as_tensor(ids, dtype=torch.long)
    keep = ids.shape[1] - 1 if keep_last is None else max(1, min(int(keep_last), ids.shape[1] - 1))
    loss: dict[str, np.ndarray] = {}
    kl: dict[str, np.ndarray] = {}
    clean: dict[int, torch.Tensor] = {}
    with pattern_edit(model) as edit:
        edit.mode, edit.blocks = "record", frozenset(range(model.n_layers))
        loss["clean"], kl["clean"] = _pass(model, edit, tensor, folds, keep, clean)
        edit.counts = {f: int((folds == f).sum()) for f in (0, 1)}
        for name, mode, chosen in runs:
            edit.mode, edit.blocks = mode, chosen
            loss[name], kl[name] = _pass(model, edit, tensor, folds, keep, clean)
    return Runs(loss, kl)


def _pass(model: ConceptModel, edit: _Edit, ids: torch.Tensor, folds: np.ndarray, keep: int,
          clean: dict[int, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """One run over every batch: per-token losses and KL from the clean run (``clean`` is filled by the first
    pass, batch by batch)."""
    shape = (ids.shape[0], ids.shape[1] - 1)
    loss, kl = np.full(shape, np.nan), np.full(shape, np.nan)
    first = not clean
    for index, (fold, rows) in enumerate(_batches(folds)):
        edit.fold, edit.source = fold, 1 - fold
        logp, target = _token_logp(model, ids[torch.as_tensor(rows)], keep)
        if first:
            clean[index] = logp
        ref = clean[index]
        loss[rows, shape[1] - keep:] = (-logp.gather(-1, target[..., None])[..., 0]).double().numpy()
        kl[rows, shape[1] - keep:] = (ref.exp() * (ref - logp)).sum(-1).double().numpy()
    return loss, kl


# ------------------------------------------------------------------------------------------------ text
def induction_sequences(model: ConceptModel, n: int, length: int, seed: int, *, min_period: int,
                        max_period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact, permuted, second_copy_mask): ``n`` sequences of the tokenizer's prefix + ``length`` tokens:
    random filler, a random block A of m tokens (m uniform in [min_period, max_period] per sequence), then A
    again (``exact``) or A permuted (``permuted``: same tokens, no order to copy). The mask (n, T-1) marks the
    predictions of the second copy's tokens after its first (the ones copying can help)."""
    if not 2 <= min_period <= max_period or 2 * max_period > length:
        raise InvalidInputError(f"induction periods need 2 <= min_period <= max_period <= sequence_tokens / 2; got "
                                f"{min_period}, {max_period} for {length} tokens")
    tok = model.tokenizer
    prefix = list(tok("", add_special_tokens=True)["input_ids"])
    special = set(getattr(tok, "all_special_ids", []) or [])
    size = int(getattr(model.hf_model, "config").vocab_size)  # noqa: B009 (the module type hides config)
    vocab = np.array([i for i in range(len(tok)) if i not in special and i < size])
    rng = np.random.default_rng([seed, 7101])
    P = len(prefix)
    exact = np.zeros((n, P + length), dtype=np.int64)
    permuted = exact.copy()
    mask = np.zeros((n, P + length - 1), dtype=bool)
    for j in range(n):
        m = int(rng.integers(min_period, max_period + 1))
        body = rng.choice(vocab, size=length - m, replace=False)  # filler + A, no token twice
        block = body[length - 2 * m:]
        exact[j] = prefix + body.tolist() + block.tolist()
        permuted[j] = prefix + body.tolist() + block[rng.permutation(m)].tolist()
        start = P + length - m  # index of the second copy's first token
        mask[j, start: P + length - 1] = True  # predictions of tokens start+1 .. end
    return exact, permuted, mask


# ------------------------------------------------------------------------------------------- statistics
def sequence_losses(token_losses: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(n,) mean loss per sequence over the masked predictions (all when ``mask`` is None)."""
    if mask is None:
        return token_losses.mean(axis=1)  # type: ignore[no-any-return]
    return np.where(mask, token_losses, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Recovery:
    """Per held-out sequence: a = L_ablate - L_mean_pattern, c = L_ablate - L_clean, and the three losses."""

    clean: np.ndarray
    mean_pattern: np.ndarray
    ablate: np.ndarray

    @property
    def a(self) -> np.ndarray:
        return self.ablate - self.mean_pattern  # type: ignore[no-any-return]

    @property
    def c(self) -> np.ndarray:
        return self.ablate - self.clean  # type: ignore[no-any-return]

    @property
    def R(self) -> float:
        return ratio(self.a, self.c)

    def summary(self) -> dict[str, float]:
        return {"loss_clean": float(self.clean.mean()), "loss_mean_pattern": float(self.mean_pattern.mean()),
                "loss_ablate": float(self.ablate.mean()),
                "increase_mean_pattern_nats": float((self.mean_pattern - self.clean).mean()),
                "ablation_cost_nats": float(self.c.mean())}


def recovery(losses: dict[str, np.ndarray], where: int | str, mask: np.ndarray | None = None) -> Recovery:
    """The three losses per sequence with the edit at block ``where`` (or ``"all"``), over ``mask``."""
    return Recovery(sequence_losses(losses["clean"], mask), sequence_losses(losses[f"mean_pattern@{where}"], mask),
                    sequence_losses(losses[f"ablate@{where}"], mask))


def ratio(a: np.ndarray, c: np.ndarray) -> float:
    """mean(a) / mean(c); NaN when attention's output is worth nothing (mean(c) ~ 0), where R means nothing."""
    denominator = float(np.mean(c))
    return float(np.mean(a)) / denominator if abs(denominator) > 1e-9 else float("nan")


def bootstrap_ratio(a: np.ndarray, c: np.ndarray, boot_rows: np.ndarray) -> np.ndarray:
    """(B,) the ratio on each resample of sequences."""
    den = c[boot_rows].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(den) > 1e-9, a[boot_rows].mean(axis=1) / den, np.nan)  # type: ignore[no-any-return]


def sign_flip_draw(pairs: Sequence[tuple[np.ndarray, np.ndarray]], seed: int) -> Callable[[int, int], np.ndarray]:
    """``draw(offset, count)``: per row (a, c), mean(s * a) / mean(c) with sign flips s numbered by draw (one
    generator per draw number, so a run does not depend on batch sizes); rows share the flips."""
    A = np.stack([np.asarray(a, dtype=np.float64) for a, _ in pairs])
    den = np.array([float(np.mean(c)) for _, c in pairs])
    den = np.where(np.abs(den) > 1e-9, den, np.nan)
    n = A.shape[1]

    def draw(offset: int, count: int) -> np.ndarray:
        signs = np.stack([np.random.default_rng([seed, 7103, offset + b]).choice([-1.0, 1.0], size=n)
                          for b in range(count)])
        return (A @ signs.T) / n / den[:, None]  # type: ignore[no-any-return]

    return draw


def null_signs(n: int, null_seed: int) -> np.ndarray:
    """The null battery's coin per sequence (mean pattern and ablation swap where it shows -1)."""
    return np.random.default_rng([null_seed, 7107]).choice([-1.0, 1.0], size=n)


@dataclass(frozen=True)
class Advantage:
    """The copying advantage (mean over sequences of L(permuted 2nd copy) - L(exact 2nd copy), nats) of the clean
    model and with the mean pattern at the control's blocks, on one induction set."""

    clean: float
    mean_pattern: float

    @property
    def kept(self) -> float:
        return self.mean_pattern / self.clean if self.clean > 0 else float("nan")


@dataclass(frozen=True)
class CopyCheck:
    """The positive control. ``varied``: copy offsets drawn per sequence (no fixed pattern can copy), so the mean
    pattern must lose the advantage; ``fixed``: one offset for every sequence (the mean pattern contains the
    copying diagonal), so an edit that removes only data dependence must keep it. Both arms are needed: an edit
    that wrecks the model loses every advantage, and would pass the first arm alone."""

    varied: Advantage
    fixed: Advantage

    @property
    def copies(self) -> bool:
        return self.varied.clean >= COPY_MIN_NATS and self.fixed.clean >= COPY_MIN_NATS

    def not_testable(self) -> str | None:
        """The reason the run cannot attribute what the edit does to data dependence, or None."""
        if not self.copies:
            return None
        if not self.varied.kept < COPY_KEEP_MAX:
            return (f"the positive control failed: the model copies repeated random tokens (advantage "
                    f"{self.varied.clean:.2f} nats) and the mean pattern at the control's blocks keeps "
                    f"{self.varied.kept:.0%} of it (>= {COPY_KEEP_MAX:.0%}) although the copy offset varies, so a "
                    "fixed pattern did not remove data dependence here")
        if self.fixed.kept < COPY_KEEP_MAX:
            return (f"the positive control is not specific: the mean pattern at the control's blocks also removes "
                    f"copying that a fixed pattern can do (one copy offset for all sequences: {self.fixed.kept:.0%} of "
                    f"{self.fixed.clean:.2f} nats kept, < {COPY_KEEP_MAX:.0%}), so the edit disturbs the model beyond "
                    f"removing data dependence and its loss of varied-offset copying ({self.varied.kept:.0%} kept) "
                    "does not show that the test sees data dependence")
        return None

    def describe(self) -> dict[str, Any]:
        state = ("failed" if self.not_testable() else "passed" if self.copies else
                 f"not informative (the clean model does not copy: advantage < {COPY_MIN_NATS} nats)")
        return {"advantage_clean_nats": self.varied.clean, "advantage_mean_pattern_nats": self.varied.mean_pattern,
                "kept": self.varied.kept, "fixed_offset_advantage_clean_nats": self.fixed.clean,
                "fixed_offset_advantage_mean_pattern_nats": self.fixed.mean_pattern,
                "fixed_offset_kept": self.fixed.kept, "state": state}


CONTROL = "mean_pattern@control"


def control_plan(blocks: Sequence[int]) -> Plan:
    """The positive control's edit: the mean pattern at ``blocks`` at once."""
    if not blocks:
        raise InvalidInputError("the positive control edits at least one block; with positive_control = "
                                "'after_primary' the primary must not be the last block")
    return (CONTROL, "mean_pattern", frozenset(int(b) for b in blocks))


def advantage(exact: dict[str, np.ndarray], permuted: dict[str, np.ndarray], mask: np.ndarray) -> Advantage:
    """The copying advantage clean and under the control edit (losses from :func:`run_conditions` with
    :func:`control_plan`)."""
    clean = sequence_losses(permuted["clean"], mask) - sequence_losses(exact["clean"], mask)
    fixed = sequence_losses(permuted[CONTROL], mask) - sequence_losses(exact[CONTROL], mask)
    return Advantage(float(clean.mean()), float(fixed.mean()))
