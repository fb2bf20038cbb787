"""LEACE on real SmolLM2-135M activations against concept-erasure's own float64 fit.

Residual-stream activations are ill-conditioned (a few massive dimensions; max |x| ~ 109 at layer 15), which
is where a float32 fit failed: it left a class-mean gap of 1.1e-2 and an in-sample logistic probe at 0.66 on
this very data. The reference here is ``concept_erasure.LeaceEraser`` fitted in float64 on the same items.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from concept_erasure import LeaceEraser
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from conceptspace.activations import extract
from conceptspace.analyses.causal._erasure import apply_eraser, erasure_test, fit_leace
from conceptspace.concepts import load_concepts
from conceptspace.models import load_model

SITE = "layer.15"
CONCEPTS = "truth_is_universal/animal_class_polarity"


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    model = load_model("smollm2-135m")
    cs = load_concepts(CONCEPTS)
    X = np.asarray(extract(model, cs.texts, sites=[SITE], position="last", cache=False, progress=False)[SITE])
    y = np.asarray(cs.labels)
    assert X.shape == (328, model.d_model) and X.dtype == np.float32
    return model, X, y, np.asarray(cs.groups)


def _class_mean_gap(erased: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(erased[y == 1].mean(axis=0) - erased[y == 0].mean(axis=0)).max())


def test_leace_matches_concept_erasure_float64_on_real_activations(setup):
    _, X, y, _ = setup
    scale = float(np.abs(X).max())
    X64 = X.astype(np.float64)
    reference = LeaceEraser.fit(torch.as_tensor(X64), torch.as_tensor(y, dtype=torch.float64)[:, None])
    expected = reference(torch.as_tensor(X64)).numpy()
    eraser = fit_leace(X, y)
    erased64 = apply_eraser(eraser, X64)
    erased32 = apply_eraser(eraser, X)  # applied in the activations' own dtype
    assert np.abs(erased64 - expected).max() <= 1e-4 * scale
    assert np.abs(erased32 - expected).max() <= 1e-4 * scale
    assert _class_mean_gap(erased64, y) < 1e-8 * scale
    in_sample = LogisticRegression(C=1.0, max_iter=2000).fit(erased64, y).score(erased64, y)
    assert abs(in_sample - 0.5) <= 0.02
    raw = LogisticRegression(C=1.0, max_iter=2000).fit(X64, y).score(X64, y)
    assert raw > 0.9  # the concept was linearly readable before erasure


def test_probe_only_erasure_test_on_real_activations(setup):
    model, X, y, groups = setup
    result = erasure_test(model, X, y, groups, site=SITE, probe=RidgeClassifier(), n_permutations=10, n_random=5)
    print(f"\n{result.summary()}")
    assert len(result.results) == 2 and result.change_leace is None
    assert result.probe_before > 0.7
    assert result.results[1].p_value > 0.05
    assert result.erased.dtype == np.float32 and _class_mean_gap(result.erased.astype(np.float64), y) < 1e-6
