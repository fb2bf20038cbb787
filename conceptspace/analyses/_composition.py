"""N6b: do two-word contexts compose additively, less so for idioms? Measurement and statistics.

The claim (arXiv 2308.10874 v1, claim 3): in-context learning and generalization "are simply the result of
different contexts composing into different vectors". Its testable core for two-word contexts: what the model
predicts after an adjective-noun phrase AB is what A and B predict separately, combined additively in
log-probability,

    log p(t | AB) ~ log p(t | A) + log p(t | B) - log p(t),

the product-of-experts form (naive Bayes with A and B as independent evidence about t). The interaction
I(t) = log p(t | AB) - log p(t | A) - log p(t | B) + log p(t) is 0 where composition is additive. Idioms are the
phrases whose meaning is *not* built from the parts (red herring, cold feet), so if the model composes contexts
the way the claim says, and knows the idioms, their interaction is larger than that of literal phrases with the
same adjective (red apple, cold water). That comparison is the test: no difference (the model treats idioms as
composed, or treats everything as non-additive alike) fails the claim's prediction.

**Contexts.** A frame with one slot, ``{slot}``, read at its last token: A = the frame with `` <adjective>``,
B = with `` <noun>``, AB = with `` <adjective> <noun>``, and p(t) = the frame with the slot empty (the frame alone).
The default frames put the slot *inside* the sentence ("The term{slot} is a kind of", "Speaking of{slot}, that
is a"), so the next token is read after the same words in all four contexts: its syntactic type (a category noun,
an adjective) does not change with what fills the slot, while its meaning does (SmolLM2: "The term herring is a
kind of" -> fish; "The term red herring is a kind of" -> mis(leading), rhetorical, fallacy; "The term red apple is
a kind of" -> fruit). A frame ending at the slot ("Here is a red") would compare the noun expected after an
adjective with the punctuation expected after a noun: a syntactic interaction that idioms and literal phrases
share and that would swamp the semantic one. Two frames of different structure are averaged so that no single
frame's quirks decide the result.

**Token counts.** Each word enters every context as the same tokens: its space-prefixed tokenization
(`` red``, `` herring``), in A, B and AB alike (the default frames put a space before the slot's words, so a
byte-level BPE never merges across the word boundary). Multi-token words are therefore longer contexts, handled
identically in the three contexts; a phrase whose AB context does not have exactly (tokens of A) + (tokens of B)
- (tokens of the frame alone) tokens under this model's tokenizer is left out and counted
(``extra["excluded_token_merge"]``). Matching each idiom with a literal phrase on the adjective holds A's tokens
fixed across the two classes.

**Targets and the per-phrase scalar.** For each phrase and frame, the targets are the ``top_k`` most probable
next tokens after AB (what the phrase makes the model say); the phrase's scalar is the mean |I(t)| over them
(nats), averaged over frames. Literal I(t) keeps the normalisation term (an additive model is only defined up to
it); the class comparison is unaffected by anything common to both classes.

**Statistic.** Delta = mean scalar of idioms - mean scalar of compositional phrases. **Null**: class labels
permuted within adjective groups (the matched design: an idiom and its literal partner swap labels), drawn
sequentially. **Effect** = Delta - null mean. **Interval**: the matched groups (adjectives) resampled with
replacement, the statistic recomputed; the same item-level variance the permutation null draws from.

**Frequency control.** Idioms are fixed expressions: log p(B | A) (the noun after the adjective, in the first
frame's prefix) is higher for them, and a model could show more interaction for any frequent collocation. The
control "frequency" is the part of Delta that this covariate accounts for in the ANCOVA scalar ~ class + log p(B|A)
(gamma * (mean covariate of idioms - of compositional phrases), gamma the pooled within-class slope): Delta minus
it is the class effect at equal collocation strength, and the paired difference "test minus frequency" is that
adjusted effect on the same resamples. The verdict's ``beat = ["frequency"]`` thus requires the class difference
to survive the adjustment; "explained by frequency" when it does not.

**Twins.** The same statistic on the untrained twins and the spectrum-matched twin, same phrases, permutations and
resamples: a difference that a random network also shows comes from the strings (token counts, token identity),
not from learned meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conceptspace.activations import memoized_record
from conceptspace.analyses._icl import next_token_logprobs
from conceptspace.concepts import load_concepts
from conceptspace.errors import InvalidInputError
from conceptspace.models import ConceptModel

SLOT = "{slot}"
#: the default frames (slot inside the sentence; see the module doc)
FRAMES = ("The term{slot} is a kind of", "Speaking of{slot}, that is a")
#: the label name of the class predicted to interact more
IDIOM = "idiom"


# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Phrases:
    """Adjective-noun phrases: the two words, the class (True = idiom) and the adjective group (matched pairs
    share it; permutations and resamples respect it)."""

    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    idiom: np.ndarray  # (n,) bool
    group: np.ndarray  # (n,) int

    @property
    def n(self) -> int:
        return len(self.adjectives)

    @property
    def texts(self) -> list[str]:
        return [f"{a} {b}" for a, b in zip(self.adjectives, self.nouns, strict=True)]

    def subset(self, rows: np.ndarray) -> Phrases:
        rows = np.asarray(rows, dtype=np.int64)
        _, group = np.unique(self.group[rows], return_inverse=True)
        return Phrases(tuple(self.adjectives[i] for i in rows), tuple(self.nouns[i] for i in rows),
                       self.idiom[rows].copy(), group.astype(np.int64))


def make_phrases(adjectives: Sequence[str], nouns: Sequence[str], idiom: Sequence[bool] | np.ndarray) -> Phrases:
    """Validated phrases, grouped by adjective: every word one non-empty word, both classes present."""
    adjectives, nouns = [str(a).strip() for a in adjectives], [str(b).strip() for b in nouns]
    flags = np.asarray(idiom, dtype=bool)
    if not (len(adjectives) == len(nouns) == flags.size):
        raise InvalidInputError(f"{len(adjectives)} adjectives, {len(nouns)} nouns, {flags.size} labels: give one "
                                "adjective, noun and class per phrase")
    for word in (*adjectives, *nouns):
        if not word or any(c.isspace() for c in word) or SLOT in word:
            raise InvalidInputError(f"{word!r} is not a single word: A and B must each be one word (no spaces)")
    check_classes(flags)
    _, group = np.unique(np.asarray(adjectives), return_inverse=True)
    return Phrases(tuple(adjectives), tuple(nouns), flags, group.astype(np.int64))


def check_classes(idiom: np.ndarray, *, minimum: int = 2) -> None:
    n_idiom = int(np.sum(idiom))
    n_comp = int(np.size(idiom) - n_idiom)
    if n_idiom < minimum or n_comp < minimum:
        raise InvalidInputError(f"need at least {minimum} idioms and {minimum} compositional phrases; got {n_idiom} "
                                f"and {n_comp} (a class is empty or nearly so: add phrases or raise max_items)")


def load_phrases(dataset: str, max_items: int | None, seed: int, null_seed: int | None = None) -> Phrases:
    """The phrases of a binary concept set with ``adjective`` and ``noun`` columns and an ``idiom`` label (the
    bundled ``phrase_composition``): a seeded subset of whole matched pairs (``pair`` column; else whole adjective
    groups) up to ``max_items`` phrases; under ``null_seed`` the class labels are permuted within adjective groups
    (the null battery: the claim must then come out unsupported)."""
    cs = load_concepts(dataset)
    names = list(cs.label_names or [])
    if cs.kind != "binary" or IDIOM not in names:
        raise InvalidInputError(f"{dataset} must be a binary set with an {IDIOM!r} class (like phrase_composition); "
                                f"it is {cs.kind} with classes {names}")
    columns = set(cs.data.column_names)
    if not {"adjective", "noun"} <= columns:
        raise InvalidInputError(f"{dataset} needs 'adjective' and 'noun' columns; it has {sorted(columns)}")
    phrases = make_phrases(cs.column("adjective"), cs.column("noun"), cs.labels == names.index(IDIOM))
    units = np.asarray(cs.column("pair") if "pair" in columns else phrases.group)
    if max_items is not None:
        if max_items < 4:
            raise InvalidInputError(f"max_items must be >= 4 (two phrases per class); got {max_items}")
        rows = _whole_units(units, max_items, seed)
        phrases = phrases.subset(rows)
    if null_seed is not None:
        phrases = Phrases(phrases.adjectives, phrases.nouns,
                          phrases.idiom[within_group_permutations(phrases.group, 1, null_seed, 0)[0]],
                          phrases.group)
    check_classes(phrases.idiom)
    return phrases


def _whole_units(units: np.ndarray, max_items: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 6620])
    chosen: list[int] = []
    for unit in rng.permutation(np.unique(units)):
        members = np.flatnonzero(units == unit).tolist()
        if len(chosen) + len(members) > max_items:
            continue
        chosen.extend(members)
    return np.array(sorted(chosen), dtype=np.int64)


def check_frames(frames: Sequence[str]) -> list[str]:
    """Each frame holds ``{slot}`` exactly once (the slot's words are inserted with a leading space)."""
    out = [str(f) for f in frames]
    if not out:
        raise InvalidInputError("give at least one frame, e.g. 'The term{slot} is a kind of'")
    for frame in out:
        if frame.count(SLOT) != 1:
            raise InvalidInputError(f"frame {frame!r} must contain {SLOT} exactly once (where the words go)")
        if not frame.replace(SLOT, "").strip():
            raise InvalidInputError(f"frame {frame!r} has no words besides the slot: p(t) needs the frame alone")
    if len(set(out)) != len(out):
        raise InvalidInputError("a frame is listed twice")
    return out


def fill(frame: str, words: str) -> str:
    """The frame with ``words`` in its slot, after one space (empty ``words``: the frame alone)."""
    return frame.replace(SLOT, f" {words}" if words else "")


# -------------------------------------------------------------------------------------------- measurement
def interactions(logp_empty: np.ndarray, logp_a: np.ndarray, logp_b: np.ndarray, logp_ab: np.ndarray,
                 top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per phrase (rows), the mean |I(t)| and the mean I(t) over the ``top_k`` most probable tokens after AB.

    ``logp_empty`` (V,) the frame alone; ``logp_a``/``logp_b``/``logp_ab`` (n, V) next-token log-probabilities."""
    ab = np.asarray(logp_ab, dtype=np.float64)
    if not 1 <= top_k <= ab.shape[1]:
        raise InvalidInputError(f"top_k must be between 1 and the vocabulary size {ab.shape[1]}; got {top_k}")
    targets = np.argpartition(-ab, top_k - 1, axis=1)[:, :top_k]
    take = np.take_along_axis
    inter = (take(ab, targets, 1) - take(np.asarray(logp_a, dtype=np.float64), targets, 1)
             - take(np.asarray(logp_b, dtype=np.float64), targets, 1) + np.asarray(logp_empty)[targets])
    return np.abs(inter).mean(axis=1), inter.mean(axis=1)


@dataclass(frozen=True)
class Measured:
    """What one model says about the phrases: the per-phrase mean |I| (averaged over frames), per frame, the
    signed mean I, the frequency proxy log p(B | A), and which phrases kept a consistent tokenization."""

    scalar: np.ndarray  # (n,)
    by_frame: np.ndarray  # (F, n)
    signed: np.ndarray  # (n,)
    log_p_noun: np.ndarray  # (n,)
    consistent: np.ndarray  # (n,) bool


def _n_tokens(model: ConceptModel, texts: list[str]) -> np.ndarray:
    ids = model.tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)


def measure(model: ConceptModel, phrases: Phrases, frames: Sequence[str], top_k: int, *, max_rows: int = 512,
            frequency: bool = True) -> Measured:
    """Batched forwards per frame (the frame alone, every distinct adjective, noun and phrase in the slot; one
    batch per token count, so that short contexts are not padded to the longest), last position, full
    vocabulary; plus, with ``frequency`` (the trained model only: the controls do not use it), log p(B | A).
    Memoized (:func:`~conceptspace.activations.memoized_record`): a warm run reads the small per-phrase arrays."""
    frames = check_frames(frames)
    spec = {"adjectives": list(phrases.adjectives), "nouns": list(phrases.nouns), "frames": list(frames),
            "top_k": top_k, "max_rows": max_rows, "frequency": frequency}
    return memoized_record(model, "composition.measure", spec, Measured,
                           lambda: _measure(model, phrases, frames, top_k, max_rows, frequency), version="1")


def _measure(model: ConceptModel, phrases: Phrases, frames: list[str], top_k: int, max_rows: int,
             frequency: bool) -> Measured:
    """:func:`measure`'s forwards and reductions (no memo)."""
    words = sorted({*phrases.adjectives, *phrases.nouns, *phrases.texts})
    row = {w: i + 1 for i, w in enumerate(words)}
    a_rows = np.array([row[a] for a in phrases.adjectives])
    b_rows = np.array([row[b] for b in phrases.nouns])
    ab_rows = np.array([row[t] for t in phrases.texts])
    by_frame, signed = [], []
    consistent = np.ones(phrases.n, dtype=bool)
    for frame in frames:
        texts = [fill(frame, ""), *(fill(frame, w) for w in words)]
        counts = _n_tokens(model, texts)
        consistent &= counts[ab_rows] == counts[a_rows] + counts[b_rows] - counts[0]
        logp = _by_length(model, texts, counts, max_rows)
        mean_abs, mean_signed = interactions(logp[0], logp[a_rows], logp[b_rows], logp[ab_rows], top_k)
        by_frame.append(mean_abs)
        signed.append(mean_signed)
    stacked = np.vstack(by_frame)
    noun = (noun_log_prob(model, phrases, frames[0].split(SLOT)[0], max_rows=max_rows) if frequency
            else np.full(phrases.n, np.nan))
    return Measured(stacked.mean(axis=0), stacked, np.mean(signed, axis=0), noun, consistent)


def _by_length(model: ConceptModel, texts: list[str], counts: np.ndarray, max_rows: int) -> np.ndarray:
    """Next-token log-probabilities (n, V) of ``texts``, one forward per token count (each row's numbers do not
    depend on its batch: rows are padded with explicit positions, ARCHITECTURE.md)."""
    out: np.ndarray | None = None
    for length in np.unique(counts):
        rows = np.flatnonzero(counts == length)
        logp = next_token_logprobs(model, [texts[i] for i in rows], max_rows=max_rows)[0]
        if out is None:
            out = np.empty((len(texts), logp.shape[1]))
        out[rows] = logp
    assert out is not None
    return out


def noun_log_prob(model: ConceptModel, phrases: Phrases, prefix: str, *, max_rows: int = 512) -> np.ndarray:
    """log p(B | prefix + " " + A), summed over B's tokens (teacher-forced: one row per token of B)."""
    tok = model.tokenizer
    prompts: list[str] = []
    targets: list[int] = []
    owner: list[int] = []
    for i, (a, b) in enumerate(zip(phrases.adjectives, phrases.nouns, strict=True)):
        context = f"{prefix} {a}".strip()
        ids = tok(f" {b}", add_special_tokens=False)["input_ids"]
        for j, token in enumerate(ids):
            prompts.append(context + tok.decode(ids[:j]))
            targets.append(int(token))
            owner.append(i)
    logp = next_token_logprobs(model, prompts, max_rows=max_rows)[0]
    per_token = logp[np.arange(len(prompts)), np.asarray(targets)]
    return np.bincount(np.asarray(owner), weights=per_token, minlength=phrases.n)


# --------------------------------------------------------------------------------------------- statistics
def within_group_permutations(group: np.ndarray, count: int, seed: int, offset: int) -> np.ndarray:
    """(count, n) permutations that move every phrase within its adjective group; batch ``offset`` is seeded
    from (seed, offset), so draws are numbered and reproducible whatever the batch sizes."""
    group = np.asarray(group)
    rng = np.random.default_rng([seed, 6637, offset])
    keys = group.astype(np.float64)[None, :] + rng.random((count, group.size))
    order = np.argsort(keys, axis=1, kind="stable")
    slots = np.argsort(group, kind="stable")
    perm = np.empty_like(order)
    perm[:, slots] = order
    return perm


def group_weights(group: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """(B, n) multiplicity weights: each replicate resamples the adjective groups with replacement (matched
    pairs stay together). The same seed gives the same resamples for the model and every control."""
    group = np.asarray(group)
    n_groups = int(group.max()) + 1
    rng = np.random.default_rng([seed, 6653])
    picks = rng.integers(0, n_groups, size=(n_bootstrap, n_groups))
    counts = np.stack([np.bincount(p, minlength=n_groups) for p in picks]) if n_bootstrap else np.zeros((0, n_groups))
    return counts[:, group].astype(np.float64)


def _class_means(values: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w1 = weights * labels
    w0 = weights * (1.0 - labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w1 * values).sum(axis=1) / w1.sum(axis=1), (w0 * values).sum(axis=1) / w0.sum(axis=1)


def class_difference(scalar: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Delta = weighted mean of idioms - of compositional phrases, per row of ``labels`` (m, n) 0/1 (and of
    ``weights`` (m, n), default 1). NaN where a class has no weight."""
    y = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    w = np.ones_like(y) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    m1, m0 = _class_means(np.asarray(scalar, dtype=np.float64)[None, :], y, w)
    return m1 - m0  # type: ignore[no-any-return]


def frequency_part(scalar: np.ndarray, covariate: np.ndarray, labels: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """The part of Delta the covariate accounts for in the ANCOVA scalar ~ class + covariate: gamma * (covariate
    mean of idioms - of compositional phrases), gamma the pooled within-class slope. Delta minus it is the
    ANCOVA class coefficient (exactly: with a class term, OLS residuals sum to zero within each class)."""
    y = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    w = np.ones_like(y) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    d = np.asarray(scalar, dtype=np.float64)[None, :]
    f = np.asarray(covariate, dtype=np.float64)[None, :]
    d1, d0 = _class_means(d, y, w)
    f1, f0 = _class_means(f, y, w)
    dc = d - np.where(y > 0, d1[:, None], d0[:, None])
    fc = f - np.where(y > 0, f1[:, None], f0[:, None])
    sxx = (w * fc * fc).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.where(sxx > 0, (w * dc * fc).sum(axis=1) / np.where(sxx > 0, sxx, 1.0), 0.0)
    return gamma * (f1 - f0)  # type: ignore[no-any-return]
