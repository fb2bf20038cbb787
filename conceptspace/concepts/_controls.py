"""Control versions of a concept set: what a probe "finds" on these is the floor a real concept must beat.

- ``shuffled_labels``: labels permuted (within groups, or whole groups exchanged, so group structure survives);
- ``control_task``: Hewitt & Liang (2019): each word type gets a random label, same label distribution over types;
- ``frequency_matched_words``: every word replaced by a random word of the same corpus frequency (``wordfreq``),
  so a frequency direction cannot pass for the concept;
- ``random_concept_set``: TCAV-style random set of the same size and label layout.

Every control is a pure function of (set, seed): same seed, same control. Each returns a new ``ConceptSet``
whose name and notes say which control and seed built it.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptspace.concepts._schema import ConceptSet
from conceptspace.concepts._validation import render_template, template_fields
from conceptspace.errors import DatasetError
from datasets import Dataset  # type: ignore[attr-defined]  # mypy sees the data folder datasets/ (HF ships no py.typed)

SHUFFLE_MODES = ("auto", "global", "within", "between")


# ---------------------------------------------------------------------------------------------- helpers
def _rebuild(concept_set: ConceptSet, changes: dict[str, list[Any]], *, name: str, note: str) -> ConceptSet:
    """A copy of ``concept_set`` with some columns replaced (all other columns and the metadata kept)."""
    columns = {column: concept_set.column(column) for column in concept_set.data.column_names}
    columns.update(changes)
    data = Dataset.from_dict(columns)
    return concept_set.replace(name=name, data=data, notes=(*concept_set.notes, note))


def _with_labels(concept_set: ConceptSet, labels: np.ndarray, *, name: str, note: str) -> ConceptSet:
    if concept_set.kind == "continuous":
        return _rebuild(concept_set, {"value": [float(v) for v in labels]}, name=name, note=note)
    changes: dict[str, list[Any]] = {"label": [int(v) for v in labels]}
    if concept_set.kind == "pairs":
        assert concept_set.label_names is not None
        changes["relation"] = [concept_set.label_names[int(v)] for v in labels]
    return _rebuild(concept_set, changes, name=name, note=note)


def _rng(seed: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return np.random.default_rng(int(seed))


# ---------------------------------------------------------------------------------------------- label controls
def _shuffle_mode(labels: np.ndarray, groups: list[str]) -> str:
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    if all(len(rows) == 1 for rows in members.values()):
        return "global"
    if all(len({labels[i] for i in rows}) == 1 for rows in members.values()):
        return "between"
    return "within"


def shuffled_labels(concept_set: ConceptSet, seed: int, *, mode: str = "auto") -> ConceptSet:
    """Permute the labels (or values) with a seeded RNG, respecting groups.

    ``within``: labels are permuted among the rows of each group (every group keeps its label counts).
    ``between``: each group keeps one label for all its rows and groups of equal size exchange labels (row-level
    label counts are preserved exactly). ``global``: a plain permutation. ``auto`` picks ``global`` when every
    group is one row, ``between`` when labels are constant within groups (entities), else ``within``.
    """
    if mode not in SHUFFLE_MODES:
        raise DatasetError(f"mode={mode!r}: choose one of {', '.join(SHUFFLE_MODES)}")
    rng = _rng(seed)
    labels = concept_set.labels
    groups = concept_set.groups
    chosen = _shuffle_mode(labels, groups) if mode == "auto" else mode
    new = labels.copy()
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    if chosen == "global":
        new = labels[rng.permutation(len(labels))]
    elif chosen == "within":
        for rows in members.values():
            index = np.asarray(rows)
            new[index] = labels[index[rng.permutation(len(index))]]
    else:
        if any(len({labels[i] for i in rows}) > 1 for rows in members.values()):
            raise DatasetError(f"{concept_set.name!r}: mode='between' needs one label per group; use 'within'")
        by_size: dict[int, list[str]] = defaultdict(list)
        for g, rows in members.items():
            by_size[len(rows)].append(g)
        for same_size in by_size.values():
            source = [same_size[j] for j in rng.permutation(len(same_size))]
            for target_group, source_group in zip(same_size, source, strict=True):
                new[np.asarray(members[target_group])] = labels[members[source_group][0]]
    note = f"control: labels shuffled ({chosen}, seed={seed})"
    return _with_labels(concept_set, new, name=f"{concept_set.name}#shuffled[seed={seed}]", note=note)


def null_labels(concept_set: ConceptSet, seed: int) -> ConceptSet:
    """The set under the null of the ``--null`` battery: labels (or values) permuted respecting groups
    (:func:`shuffled_labels`, ``mode="auto"``), under the set's own name so that every test keeps its key.

    Why keep the name: a null run must produce the same tests as the real run, only without the signal, so the
    verdict rules, controls and report see exactly the battery they judge on real labels. The note says what
    was done; directions derived from these labels (mass-mean, probe weights) become data-drawn placebos.
    """
    shuffled = shuffled_labels(concept_set, seed)
    return shuffled.replace(name=concept_set.name, notes=(*concept_set.notes, f"null battery: labels permuted "
                                                          f"respecting groups (seed={seed})"))


def control_task(concept_set: ConceptSet, seed: int) -> ConceptSet:
    """Hewitt & Liang (2019) control task: a random label per word type, with the same distribution over types.

    Each type's (first-seen) true label is collected, these are permuted across types, and every row of a type
    takes its type's new label, so the control is as learnable by memorizing types as the real task is, but
    carries no concept. Types are the words (``a`` for pairs) of word-level sets, otherwise the groups.
    """
    rng = _rng(seed)
    labels = concept_set.labels
    types = concept_set.words if concept_set.is_word_level else concept_set.groups
    assert types is not None
    order: list[str] = []
    first: dict[str, int] = {}
    for i, t in enumerate(types):
        if t not in first:
            first[t] = i
            order.append(t)
    type_labels = labels[[first[t] for t in order]]
    permuted = type_labels[rng.permutation(len(order))]
    new_label = dict(zip(order, permuted, strict=True))
    new = np.asarray([new_label[t] for t in types], dtype=labels.dtype)
    note = f"control: Hewitt-Liang control task over {len(order)} types (seed={seed})"
    return _with_labels(concept_set, new, name=f"{concept_set.name}#control_task[seed={seed}]", note=note)


# ---------------------------------------------------------------------------------------------- word controls
@functools.lru_cache(maxsize=4)
def reference_vocabulary(lang: str = "en") -> tuple[tuple[str, ...], np.ndarray]:
    """wordfreq's word list for ``lang`` (alphabetic ASCII words of 2+ letters), sorted by Zipf frequency."""
    import wordfreq

    freqs = wordfreq.get_frequency_dict(lang)
    entries = sorted(
        (round(math.log10(f) + 9.0, 2), w) for w, f in freqs.items() if f > 0 and len(w) >= 2 and w.isascii()
        and w.isalpha()
    )
    words = tuple(w for _, w in entries)
    zipf = np.asarray([z for z, _ in entries], dtype=np.float64)
    return words, zipf


def zipf_frequencies(words: Sequence[str], lang: str = "en") -> np.ndarray:
    """Zipf frequency (log10 per billion words) of each word or phrase, from ``wordfreq``; 0 when unknown."""
    import wordfreq

    return np.asarray([wordfreq.zipf_frequency(w, lang) for w in words], dtype=np.float64)


def frequency_matched_rows(words: Sequence[str], labels: Sequence[int] | np.ndarray, *, bin_width: float = 0.5,
                           seed: int = 0, lang: str = "en") -> np.ndarray:
    """Sorted row indices of a subset whose classes have the same word-frequency histogram.

    Zipf frequencies (``wordfreq``) are binned by ``bin_width``; in each bin every class keeps the same number of
    words (the smallest class count there, drawn at random with ``seed``); bins some class lacks are dropped.
    Why: categories that differ in frequency (pronouns vs fruit) cluster by frequency alone, since token
    vectors carry it; matched classes leave the categories' meaning as the only systematic difference.
    """
    labels = np.asarray(labels)
    if len(words) != labels.shape[0]:
        raise DatasetError(f"{len(words)} words for {labels.shape[0]} labels")
    classes = np.unique(labels)
    bins = np.floor(zipf_frequencies(list(words), lang) / bin_width).astype(np.int64)
    rng = np.random.default_rng([seed, 4409])
    keep: list[int] = []
    for b in np.unique(bins):
        members = [np.flatnonzero((bins == b) & (labels == c)) for c in classes]
        take = min(m.size for m in members)
        for m in members:
            keep.extend(rng.choice(m, take, replace=False).tolist() if take else [])
    if not keep:
        raise DatasetError("no frequency bin holds a word of every class: the classes cannot be matched on "
                                "frequency (use wider bins or other classes)")
    return np.array(sorted(keep), dtype=np.int64)


def _match_case(original: str, candidate: str) -> str:
    return candidate.capitalize() if original[:1].isupper() else candidate


def _pick_matched(
    targets: np.ndarray,
    excluded: set[str],
    rng: np.random.Generator,
    lang: str,
    tolerance: float,
) -> list[str]:
    """For each target Zipf value a distinct vocabulary word within ``tolerance`` (widened only if exhausted)."""
    vocab, zipf = reference_vocabulary(lang)
    used: set[int] = set()
    picks: list[str] = [""] * len(targets)
    for item in rng.permutation(len(targets)):
        tol = tolerance
        chosen = -1
        while chosen < 0:
            lo = bisect.bisect_left(zipf, targets[item] - tol - 1e-9)
            hi = bisect.bisect_right(zipf, targets[item] + tol + 1e-9)
            if hi > lo:
                for _ in range(64):
                    j = int(rng.integers(lo, hi))
                    if j not in used and vocab[j] not in excluded:
                        chosen = j
                        break
                if chosen < 0:
                    free = [j for j in range(lo, hi) if j not in used and vocab[j] not in excluded]
                    if free:
                        chosen = free[int(rng.integers(len(free)))]
            if chosen < 0:
                if lo == 0 and hi == len(vocab):
                    raise DatasetError("the reference vocabulary is too small for this many matched words")
                tol *= 2
        used.add(chosen)
        picks[item] = vocab[chosen]
    return picks


def _sides(concept_set: ConceptSet) -> list[str]:
    if not concept_set.is_word_level:
        raise DatasetError(
            f"{concept_set.name!r} is a sentence-level set; word controls need a word column (or pairs). For "
            f"sentences use random_concept_set(..., pool=<texts>)"
        )
    return ["a", "b"] if concept_set.kind == "pairs" else ["word"]


def _render_words(concept_set: ConceptSet, new_words: dict[str, list[str]]) -> dict[str, list[Any]]:
    """Columns for ``concept_set`` with its words replaced: texts re-rendered through the template, new spans."""
    template = concept_set.template
    if template is None:
        raise DatasetError(f"{concept_set.name!r} has no template; cannot place replacement words into texts")
    fields = [f for f in template_fields(template, concept_set.name) if f != "word"]
    extra = {f: concept_set.column(f) for f in fields}
    changes: dict[str, list[Any]] = {}
    targets = {"word": ("text", "span_start", "span_end"), "a": ("text", "span_start", "span_end"),
               "b": ("text_b", "span_b_start", "span_b_end")}
    for side, words in new_words.items():
        text_col, start_col, end_col = targets[side]
        rendered = [
            render_template(template, {**{f: extra[f][i] for f in fields}, "word": w}) for i, w in enumerate(words)
        ]
        changes[side] = list(words)
        changes[text_col] = [r[0] for r in rendered]
        changes[start_col] = [r[1] for r in rendered]
        changes[end_col] = [r[2] for r in rendered]
    changes["group"] = list(new_words["a" if "a" in new_words else "word"])
    return changes


def frequency_matched_words(
    concept_set: ConceptSet, seed: int, *, lang: str = "en", tolerance: float = 0.05
) -> ConceptSet:
    """Replace every word by a distinct random word of matched Zipf frequency (per item), keeping the labels.

    Candidates come from ``wordfreq``'s list for ``lang``, excluding the set's own words; a word is drawn within
    ``tolerance`` Zipf units of the original (widened only when no unused candidate is left). Original words
    are kept in ``matched_from`` (``matched_from_b`` for pairs) so the match can be audited.
    """
    rng = _rng(seed)
    sides = _sides(concept_set)
    originals = {side: [str(w) for w in concept_set.column(side)] for side in sides}
    excluded = {piece.lower() for words in originals.values() for w in words for piece in [w, *w.split()]}
    new_words: dict[str, list[str]] = {}
    deviations: list[float] = []
    for side in sides:
        targets = zipf_frequencies(originals[side], lang)
        picks = _pick_matched(targets, excluded, rng, lang, tolerance)
        excluded.update(picks)
        new_words[side] = [_match_case(o, p) for o, p in zip(originals[side], picks, strict=True)]
        deviations.extend(np.abs(zipf_frequencies(picks, lang) - targets).tolist())
    changes = _render_words(concept_set, new_words)
    changes["matched_from"] = originals[sides[0]]
    if len(sides) == 2:
        changes["matched_from_b"] = originals["b"]
    outside = sum(d > tolerance + 1e-9 for d in deviations)
    note = (
        f"control: frequency-matched words (wordfreq {lang}, seed={seed}); mean |dZipf| "
        f"{float(np.mean(deviations)):.3f}, {outside} of {len(deviations)} beyond {tolerance}"
    )
    return _rebuild(concept_set, changes, name=f"{concept_set.name}#freq_matched[seed={seed}]", note=note)


def random_concept_set(
    concept_set: ConceptSet,
    seed: int,
    *,
    pool: Sequence[str] | ConceptSet | None = None,
    lang: str = "en",
    min_zipf: float = 3.0,
) -> ConceptSet:
    """TCAV-style random concept set: as many random items as ``concept_set``, with the same labels.

    Word-level sets draw distinct words uniformly from ``wordfreq``'s common words (Zipf >= ``min_zipf``,
    the set's own words excluded) and render them through the template; frequencies are NOT matched (that is
    ``frequency_matched_words``). Sentence sets need a ``pool`` of texts (or another ConceptSet) to draw from.
    """
    rng = _rng(seed)
    n = len(concept_set)
    name = f"{concept_set.name}#random[seed={seed}]"
    if pool is None and concept_set.is_word_level:
        sides = _sides(concept_set)
        vocab, zipf = reference_vocabulary(lang)
        own = {str(w).lower() for side in sides for w in concept_set.column(side)}
        start = bisect.bisect_left(zipf, min_zipf)
        candidates = [w for w in vocab[start:] if w not in own]
        if len(candidates) < n * len(sides):
            raise DatasetError(f"only {len(candidates)} words with Zipf >= {min_zipf}; need {n * len(sides)}")
        drawn = [candidates[j] for j in rng.choice(len(candidates), size=n * len(sides), replace=False)]
        new_words = {side: drawn[k * n : (k + 1) * n] for k, side in enumerate(sides)}
        note = f"control: random words (wordfreq {lang}, Zipf >= {min_zipf}, seed={seed})"
        return _rebuild(concept_set, _render_words(concept_set, new_words), name=name, note=note)
    if pool is None:
        raise DatasetError(
            f"{concept_set.name!r} is a sentence-level set: pass pool=<texts or ConceptSet> to draw from"
        )
    texts = pool.texts if isinstance(pool, ConceptSet) else [str(t) for t in pool]
    own_texts = set(concept_set.texts)
    candidates = sorted({t for t in texts if t not in own_texts})
    if len(candidates) < n:
        raise DatasetError(f"the pool has {len(candidates)} texts not in {concept_set.name!r}; need {n}")
    drawn = [candidates[j] for j in rng.choice(len(candidates), size=n, replace=False)]
    columns = {"text": drawn, "group": drawn}
    if concept_set.kind == "continuous":
        columns["value"] = concept_set.column("value")
    else:
        columns["label"] = concept_set.column("label")
    note = f"control: random texts drawn from a pool of {len(candidates)} (seed={seed})"
    data = Dataset.from_dict(columns)
    return concept_set.replace(name=name, data=data, template=None, notes=(*concept_set.notes, note))
