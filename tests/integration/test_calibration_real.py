"""Null calibration of the probe permutation test on real SmolLM2 activations (issue 4's acceptance test).

Pure-noise labels assigned per group (source sentence) to real last-token activations of all 30 blocks: the
fraction of tests called significant at alpha = 0.05 must be nominal, and after Holm correction across the 30
layers the family-wise rate must stay at or below 0.07. Seeded, so the numbers are the same on every run; they are
recorded in docs/STATISTICS.md.
"""

from __future__ import annotations

import json
import os

import numpy as np

from conceptspace.activations._extract import extract
from conceptspace.analyses.probes import calibrate_null
from conceptspace.concepts import load_concepts
from conceptspace.models import load_model

# ~3 minutes on an idle 2-core CPU (10 under load): outside the default CI run; `tox -e calibration` runs it
# (the tier is set in tests/conftest.py).


def _subset_by_group(groups: list[str], n_groups: int, seed: int) -> np.ndarray:
    unique = sorted(set(groups))
    chosen = set(np.random.default_rng(seed).choice(unique, size=n_groups, replace=False).tolist())
    return np.array([i for i, g in enumerate(groups) if g in chosen])


def test_noise_labels_on_real_activations_are_called_at_the_nominal_rate():
    concepts = load_concepts("truth_is_universal/inventors_polarity")
    rows = _subset_by_group(list(concepts.groups), n_groups=150, seed=0)
    texts = [concepts.texts[i] for i in rows]
    groups = np.asarray(concepts.groups)[rows]
    model = load_model("smollm2-135m")
    acts = extract(model, texts, sites=list(range(model.n_layers)), position="last", progress=False)
    X = acts.stack()
    assert X.shape == (30, len(texts), 576)
    result = calibrate_null(X, groups, n_label_sets=200, seed=0, n_permutations=999)
    summary = result.to_dict()
    if os.environ.get("CONCEPTSPACE_RECORD"):
        print(json.dumps(summary, indent=2))
    assert 0.02 <= result.false_positive_rate <= 0.08, summary
    assert result.familywise_rate <= 0.07, summary
    assert result.min_p_value >= 1 / 1000
