"""C1's design options: categories matched on word frequency, and a k chosen from the vectors alone."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.analyses.geometry._clustering import cluster
from conceptspace.concepts import frequency_matched_rows, load_concepts, zipf_frequencies
from conceptspace.errors import DatasetError


def test_frequency_matched_classes_share_one_histogram():
    # objects (the, stone 4.8, lamp 4.05), fruit (apple 4.76, banana 4.0, kumquat 1.86), animals (cat 4.78,
    # goat 4.02, aardvark 2.39): bins 4.5-5 and 4.0-4.5 hold one of each; "the" (7.7) and kumquat have no partner
    words = ["the", "stone", "lamp", "apple", "banana", "kumquat", "cat", "goat", "aardvark"]
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    rows = frequency_matched_rows(words, labels, seed=0)
    bins = np.floor(zipf_frequencies([words[i] for i in rows]) / 0.5)
    per_class = [sorted(bins[labels[rows] == c].tolist()) for c in (0, 1, 2)]
    assert per_class[0] == per_class[1] == per_class[2] == [8.0, 9.0]
    assert sorted(words[i] for i in rows) == ["apple", "banana", "cat", "goat", "lamp", "stone"]
    np.testing.assert_array_equal(rows, frequency_matched_rows(words, labels, seed=0))
    with pytest.raises(DatasetError, match="frequency"):
        frequency_matched_rows(["the", "of", "kumquat"], np.array([0, 0, 1]))


def test_bundled_noun_categories_are_matched_by_select_rows():
    from conceptspace.analyses.geometry import select_rows

    cs = load_concepts("function_vectors/categories")
    names = cs.label_names
    rows = select_rows(cs, classes=["animal", "fruit", "object"], match_frequency=True, seed=0)
    labels = np.asarray(cs.labels)[rows]
    assert set(labels.tolist()) == {names.index(c) for c in ("animal", "fruit", "object")}
    z = zipf_frequencies([cs.words[i] for i in rows])
    medians = [np.median(z[labels == c]) for c in np.unique(labels)]
    assert max(medians) - min(medians) < 0.5, medians
    unmatched = select_rows(cs, classes=["animal", "fruit", "object"], seed=0)
    zu, lu = zipf_frequencies([cs.words[i] for i in unmatched]), np.asarray(cs.labels)[unmatched]
    assert max(np.median(zu[lu == c]) for c in np.unique(lu)) - min(np.median(zu[lu == c]) for c in np.unique(lu)) \
        > 0.5  # the unmatched classes do differ (object words are more frequent than fruit)


def test_silhouette_k_finds_the_planted_number_of_clusters_without_labels():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)) * 4
    X = np.repeat(centres, 15, axis=0) + rng.standard_normal((60, 16))
    pred = cluster(X, 2, "kmeans_silhouette", seed=0)  # n_clusters is ignored
    assert np.unique(pred).size == 4
    noise = cluster(rng.standard_normal((60, 16)), 2, "kmeans_silhouette", seed=0)
    assert 2 <= np.unique(noise).size <= 12
