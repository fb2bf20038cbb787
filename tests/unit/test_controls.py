"""Controls are matched and reproducible: label distributions kept, frequencies matched, same seed same set."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from scipy import stats

from conceptspace.concepts import (
    control_task,
    frequency_matched_words,
    load_concepts,
    random_concept_set,
    shuffled_labels,
    zipf_frequencies,
)
from conceptspace.errors import DatasetError


@pytest.fixture(scope="module")
def categories():  # function_vectors/categories: 819 common words in 8 classes
    return load_concepts("function_vectors/categories")


@pytest.fixture(scope="module")
def trilemma():  # cities appear in true and false statements: groups with mixed labels
    return load_concepts("trilemma_city_locations/true_false")


def test_shuffled_labels_preserve_distribution_within_groups(trilemma) -> None:
    control = shuffled_labels(trilemma, seed=3)
    assert "within" in control.notes[-1]
    original, shuffled = trilemma.labels, control.labels
    assert Counter(original.tolist()) == Counter(shuffled.tolist())
    per_group_before, per_group_after = defaultdict(Counter), defaultdict(Counter)
    for g, a, b in zip(trilemma.groups, original, shuffled, strict=True):
        per_group_before[g][a] += 1
        per_group_after[g][b] += 1
    assert per_group_before == per_group_after
    assert (original != shuffled).mean() > 0.2  # it really moved labels
    assert control.texts == trilemma.texts


def test_shuffled_labels_between_groups_keeps_groups_whole() -> None:
    polarity = load_concepts("truth_is_universal/animal_class_disj")  # one row per group -> global
    assert "global" in shuffled_labels(polarity, seed=0).notes[-1]
    places = load_concepts("repe_emotions")
    control = shuffled_labels(places, seed=1, mode="global")
    assert Counter(control.labels.tolist()) == Counter(places.labels.tolist())
    cats = load_concepts("function_vectors/categories")
    # group = word; words in two classes make some groups mixed -> 'within' in auto; force 'between' on a clean set
    clean = load_concepts("function_vectors/singular_plural")
    between = shuffled_labels(clean, seed=0, mode="global")
    assert len(between) == len(clean)
    with pytest.raises(DatasetError, match="one label per group"):
        shuffled_labels(cats, seed=0, mode="between")


def test_shuffled_labels_between_mode_on_entity_groups() -> None:
    art = load_concepts("world_models/art_year").replace(name="art")
    subset = art.replace(data=art.data.select(range(2000)))
    control = shuffled_labels(subset, seed=5, mode="between")
    before, after = subset.labels, control.labels
    assert sorted(before.tolist()) == sorted(after.tolist())
    by_group: dict[str, set[float]] = defaultdict(set)
    for g, v in zip(control.groups, after, strict=True):
        by_group[g].add(float(v))
    assert all(len(v) == 1 for v in by_group.values())


def test_shuffled_labels_same_seed_same_control(trilemma) -> None:
    a, b, c = (shuffled_labels(trilemma, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.labels, b.labels) and a.content_hash() == b.content_hash()
    assert not np.array_equal(a.labels, c.labels)


def test_control_task_one_label_per_type_same_distribution(categories) -> None:
    control = control_task(categories, seed=0)
    words = categories.words
    assert words is not None
    per_type: dict[str, set[int]] = defaultdict(set)
    for w, label in zip(words, control.labels, strict=True):
        per_type[w].add(int(label))
    assert all(len(v) == 1 for v in per_type.values())
    first = {}
    for w, label in zip(words, categories.labels, strict=True):
        first.setdefault(w, int(label))
    assert Counter(first.values()) == Counter(next(iter(v)) for v in per_type.values())
    agreement = (control.labels == categories.labels).mean()
    expected = sum((n / len(words)) ** 2 for n in Counter(categories.labels.tolist()).values())
    assert abs(agreement - expected) < 0.06  # chance agreement, not the true labels
    assert np.array_equal(control_task(categories, seed=0).labels, control.labels)
    assert not np.array_equal(control_task(categories, seed=1).labels, control.labels)


def test_frequency_matched_words_are_indistinguishable_in_frequency(categories) -> None:
    control = frequency_matched_words(categories, seed=0)
    original = zipf_frequencies(categories.words or [])
    matched = zipf_frequencies(control.words or [])
    ks = stats.ks_2samp(original, matched)
    print(f"\nfrequency-matched vs original (n={len(original)}): KS D={ks.statistic:.4f}, p={ks.pvalue:.4f}")
    assert ks.pvalue > 0.5
    assert np.median(np.abs(original - matched)) <= 0.05
    assert np.array_equal(control.labels, categories.labels)
    assert not set(map(str.lower, control.words or [])) & set(map(str.lower, categories.words or []))
    assert len(set(control.words or [])) == len(control)
    spans = control.spans
    assert spans is not None
    assert all(t[s:e] == w for t, (s, e), w in zip(control.texts, spans, control.words or [], strict=True))


def test_the_frequency_test_has_power_against_unmatched_words(categories) -> None:
    random_set = random_concept_set(categories, seed=0)
    ks = stats.ks_2samp(zipf_frequencies(categories.words or []), zipf_frequencies(random_set.words or []))
    print(f"\nrandom (unmatched) vs original: KS D={ks.statistic:.4f}, p={ks.pvalue:.2e}")
    assert ks.pvalue < 1e-3
    assert np.array_equal(random_set.labels, categories.labels) and len(random_set) == len(categories)


def test_frequency_matched_is_reproducible(categories) -> None:
    small = categories.replace(data=categories.data.select(range(0, 819, 7)))
    a, b, c = (frequency_matched_words(small, seed=s) for s in (11, 11, 12))
    assert a.words == b.words and a.content_hash() == b.content_hash()
    assert a.words != c.words


def test_frequency_matched_pairs_match_both_sides() -> None:
    pairs = load_concepts("google_analogy/family")
    control = frequency_matched_words(pairs, seed=2)
    for side in ("a", "b"):
        before = zipf_frequencies(pairs.column(side))
        after = zipf_frequencies([w.lower() for w in control.column(side)])
        assert np.max(np.abs(before - after)) <= 0.1 + 1e-9
    assert control.relations == pairs.relations and control.texts_b[0].endswith(control.column("b")[0])


def test_random_concept_set_reproducible_and_same_size(categories) -> None:
    a, b, c = (random_concept_set(categories, seed=s) for s in (4, 4, 5))
    assert a.texts == b.texts and a.texts != c.texts
    assert len(a) == len(categories) and a.label_counts() == categories.label_counts()


def test_random_concept_set_for_sentences_needs_a_pool() -> None:
    emotions = load_concepts("repe_emotions")
    with pytest.raises(DatasetError, match="pass pool="):
        random_concept_set(emotions, seed=0)
    pool = load_concepts("trilemma_city_locations/true_false")
    control = random_concept_set(emotions, seed=0, pool=pool)
    assert len(control) == len(emotions) and set(control.texts) <= set(pool.texts)
    assert control.label_counts() == emotions.label_counts()
    with pytest.raises(DatasetError, match="sentence-level"):
        frequency_matched_words(emotions, seed=0)
