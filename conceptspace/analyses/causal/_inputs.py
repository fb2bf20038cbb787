"""Validated inputs shared by the causal tests: directions, placebo directions, target tokens, edit positions.

Why a separate module: steering, erasure and directional derivatives all need the same checks (a unit
direction of the model's width, target words that are single tokens, prompts padded so that a result does not
depend on the batch) and the same placebo draws. Doing them once, before any trace, keeps the trace bodies pure
torch (a remote NDIF worker runs them without conceptspace) and makes every error say what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from conceptspace.activations._extract import BatchInputs, build_batch, tokenize
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import ConceptModel
from conceptspace.models._sites import parse_site
from conceptspace.stats._results import TRAINED

Where = str | Sequence[tuple[int, int]]


def require_causal(model: ConceptModel, test: str) -> None:
    """Next-token tests need a language-model head; an encoder has none."""
    if not model.is_causal or model.head_path() is None:  # the path, not the weights: a lazy control stays unbuilt
        raise NotApplicableError(
            f"{test} measures next-token log-probabilities, so it needs a causal language model with an LM head; "
            f"{model.name} is not one (load a decoder such as 'smollm2-135m')"
        )


def check_site(model: ConceptModel, site: str | int) -> str:
    """The canonical site name; only residual-stream sites before the unembedding can be edited."""
    name = parse_site(site, model.site_map)
    return name


def unit_direction(direction: object, d_model: int, *, name: str = "direction") -> torch.Tensor:
    """``direction`` as a float32 unit vector of length ``d_model``, or an error that says what is wrong."""
    try:
        vector = torch.as_tensor(np.asarray(direction, dtype=np.float64)).flatten()
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{name} must be a numeric vector of length {d_model}: {error}") from None
    if vector.numel() != d_model:
        raise InvalidInputError(
            f"{name} has {vector.numel()} values but the model's residual stream has d={d_model}; "
            "use a direction fitted on this model's activations (e.g. a probe's direction_)"
        )
    if not bool(torch.isfinite(vector).all()):
        raise InvalidInputError(f"{name} contains NaN or inf values")
    norm = float(vector.norm())
    if norm == 0.0:
        raise InvalidInputError(f"{name} is the zero vector, which has no direction to test")
    return (vector / norm).to(torch.float32)


def random_directions(d_model: int, n: int, seed: int, *, orthogonal_to: torch.Tensor | None = None) -> torch.Tensor:
    """(n, d) unit placebo directions: isotropic Gaussian, optionally with ``orthogonal_to``'s span removed.

    Drawn from a private generator, so the same seed gives the same placebos whatever else ran before.
    """
    if n < 1:
        raise InvalidInputError(f"the number of placebo directions must be at least 1; got {n}")
    generator = torch.Generator().manual_seed(int(seed))
    draws = torch.randn(n, d_model, generator=generator, dtype=torch.float64)
    if orthogonal_to is not None:
        basis = torch.linalg.qr(orthogonal_to.reshape(-1, d_model).double().T).Q  # (d, k)
        draws = draws - (draws @ basis) @ basis.T
    return (draws / draws.norm(dim=1, keepdim=True)).to(torch.float32)


# ---------------------------------------------------------------------------------------------------------
# target tokens
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetTokens:
    """Token ids whose next-token log-probability a causal test reads.

    The score of one prompt is ``log P(positive set) - log P(negative set)`` (log-sum-exp over each set's
    log-probabilities), or ``log P(positive set)`` when ``negative`` is empty. A set difference rather than one
    token makes the score insensitive to edits that only sharpen or flatten the whole distribution.
    """

    positive: tuple[int, ...]
    negative: tuple[int, ...]
    positive_words: tuple[str, ...]
    negative_words: tuple[str, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        """Positive then negative ids: the columns a trace gathers."""
        return self.positive + self.negative

    def score(self, logp: torch.Tensor) -> torch.Tensor:
        """Score per row from gathered log-probabilities (rows, len(ids)) in :attr:`ids` order."""
        n_pos = len(self.positive)
        positive = torch.logsumexp(logp[:, :n_pos], dim=1)
        if not self.negative:
            return positive
        return positive - torch.logsumexp(logp[:, n_pos:], dim=1)

    def describe(self) -> dict[str, list[str]]:
        return {"positive": list(self.positive_words), "negative": list(self.negative_words)}


def _word_to_id(model: ConceptModel, word: str | int) -> tuple[int, str]:
    tokenizer = model.tokenizer
    vocab_size = int(model.output_vocab_size())  # type: ignore[arg-type]  # a shape: a lazy control stays unbuilt
    if isinstance(word, (int, np.integer)) and not isinstance(word, bool):
        token_id = int(word)
        if not 0 <= token_id < vocab_size:
            raise InvalidInputError(f"target token id {token_id} is outside the vocabulary 0..{vocab_size - 1}")
        return token_id, str(tokenizer.decode([token_id]))
    if not isinstance(word, str) or not word:
        raise InvalidInputError(f"target {word!r} must be a non-empty string or a token id")
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        hint = "" if word.startswith(" ") else f"; words after a space are usually one token: try {' ' + word!r}"
        raise InvalidInputError(
            f"target word {word!r} is {len(ids)} tokens {pieces}, but next-token tests need single-token "
            f"targets{hint}, or drop the word"
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and ids[0] == unk:
        raise InvalidInputError(f"target word {word!r} is not in the vocabulary (it maps to the unknown token)")
    return int(ids[0]), word


def resolve_targets(
    model: ConceptModel, positive: Sequence[str | int], negative: Sequence[str | int] = ()
) -> TargetTokens:
    """Map target words (or ids) to single token ids; multi-token or unknown words are errors, not dropped."""
    if isinstance(positive, str) or isinstance(negative, str):
        raise InvalidInputError("positive/negative targets must be lists of words, not one string: wrap it as [word]")
    if not positive:
        raise InvalidInputError("give at least one positive target word")
    pos = [_word_to_id(model, w) for w in positive]
    neg = [_word_to_id(model, w) for w in negative]
    overlap = {i for i, _ in pos} & {i for i, _ in neg}
    if overlap:
        raise InvalidInputError(f"token id(s) {sorted(overlap)} are in both the positive and the negative set")
    return TargetTokens(
        positive=tuple(i for i, _ in pos),
        negative=tuple(i for i, _ in neg),
        positive_words=tuple(w for _, w in pos),
        negative_words=tuple(w for _, w in neg),
    )


def as_targets(
    model: ConceptModel, targets: TargetTokens | tuple[Sequence[str | int], Sequence[str | int]]
) -> TargetTokens:
    """Accept a resolved :class:`TargetTokens` or a ``(positive_words, negative_words)`` pair."""
    if isinstance(targets, TargetTokens):
        return targets
    if isinstance(targets, tuple) and len(targets) == 2:
        return resolve_targets(model, targets[0], targets[1])
    raise InvalidInputError("targets must be TargetTokens or a (positive_words, negative_words) tuple")


# ---------------------------------------------------------------------------------------------------------
# prompts and the positions an edit touches
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedPrompts:
    """Prompts padded on the left (so the last column is every row's last real token) with an edit mask.

    ``edit_mask`` (n, seq) marks the positions an intervention changes: the last token, every real token, or a
    character span mapped to tokens. Position ids count real tokens only, so a prompt's numbers do not depend
    on the batch it is in.
    """

    texts: tuple[str, ...]
    batch: BatchInputs
    edit_mask: torch.Tensor
    where: str

    @property
    def n(self) -> int:
        return len(self.texts)


def prepare_prompts(model: ConceptModel, prompts: Sequence[str], where: Where = "last") -> PreparedPrompts:
    """Tokenize and left-pad ``prompts``; ``where`` is ``"last"``, ``"all"`` or one character span per prompt."""
    if isinstance(prompts, str):
        raise InvalidInputError("prompts must be a list of strings, not one string: wrap it as [prompt]")
    texts = list(prompts)
    if not texts:
        raise InvalidInputError("no prompts given: pass at least one prompt")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"prompt {index} is {text!r}; every prompt must be a non-blank string")
    spans = None
    label = where if isinstance(where, str) else "span"
    if isinstance(where, str):
        if where not in ("last", "all"):
            raise InvalidInputError(f"where must be 'last', 'all' or a list of (start, end) spans; got {where!r}")
    else:
        spans = [(int(a), int(b)) for a, b in where]
        if len(spans) != len(texts):
            raise InvalidInputError(f"{len(spans)} spans for {len(texts)} prompts: give one (start, end) per prompt")
    tokens = tokenize(model, texts, spans=spans)
    batch = build_batch(model, tokens, list(range(len(texts))), "left")
    width = batch.input_ids.shape[1]
    steps = torch.arange(width, device=batch.starts.device)[None, :]
    if where == "last":
        mask = steps == (width - 1)
        mask = mask.expand(len(texts), width)
    elif where == "all":
        mask = steps >= batch.starts[:, None]
    else:
        assert batch.span_first is not None and batch.span_stop is not None
        first = batch.starts + batch.span_first
        stop = batch.starts + batch.span_stop
        mask = (steps >= first[:, None]) & (steps < stop[:, None])
    return PreparedPrompts(tuple(texts), batch, mask.contiguous(), label)


def relative_strengths(strengths: Sequence[float]) -> np.ndarray:
    """Validated steering strengths (in units of the site's activation scale): finite, non-zero, distinct."""
    grid = np.asarray(list(strengths), dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise InvalidInputError("strengths must be a non-empty list of numbers")
    if not np.all(np.isfinite(grid)) or np.any(grid == 0):
        raise InvalidInputError(
            f"strengths must be finite and non-zero (strength 0 is the baseline, always run); got {strengths}"
        )
    if np.unique(grid).size != grid.size:
        raise InvalidInputError(f"strengths must be distinct; got {strengths}")
    return grid


def check_count(value: int, name: str, minimum: int) -> int:
    """A positive count with a floor, e.g. the number of placebo directions."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0 and math.isfinite(level)):
        raise InvalidInputError(f"level must be in (0, 1); got {level!r}")
    return float(level)


def model_kind(model: ConceptModel) -> str:
    """The key's ``model`` field: ``untrained`` for an untrained twin, ``spectrum_matched`` for the spectrum twin
    (:attr:`ConceptModel.control`), else ``trained``; a control model's tests never share keys with the model's."""
    return model.control or TRAINED
