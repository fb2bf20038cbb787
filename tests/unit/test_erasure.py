"""LEACE erasure: the fresh-probe check and the prediction change vs random subspaces, on a planted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from conceptspace.activations._extract import extract
from conceptspace.analyses.causal._erasure import LeaceTransformer, erasure_test, fit_leace, random_subspaces
from conceptspace.analyses.causal._inputs import prepare_prompts
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError
from conceptspace.models._load import load_model
from tests.unit.planted import BAD, GOOD, NEGATIVE, NEUTRAL, NULL_NEG, NULL_POS, POSITIVE, make_planted_model, prompts

FAST = {"probe": RidgeClassifier(), "n_permutations": 19, "n_bootstrap": 200, "n_random": 20}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    info = make_planted_model(Path(tmp_path_factory.mktemp("planted")))
    return info, load_model(str(info.folder))


def _concept(model, positive, negative):  # type: ignore[no-untyped-def]
    texts = prompts(positive) + prompts(negative)
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))].astype(int)
    X = extract(model, texts, sites=["layer.0"], cache=False, progress=False)["layer.0"]
    return texts, X, y


def test_leace_in_a_pipeline_takes_a_probe_to_chance():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    X = rng.normal(size=(200, 10))
    X[:, 3] += 2.5 * y
    X[:, 5] -= 1.0 * y
    raw = cross_val_score(RidgeClassifier(), X, y, cv=5, scoring="balanced_accuracy").mean()
    erased = cross_val_score(
        make_pipeline(LeaceTransformer(), RidgeClassifier()), X, y, cv=5, scoring="balanced_accuracy"
    ).mean()
    assert raw > 0.9
    assert abs(erased - 0.5) < 0.1
    eraser = fit_leace(X, y)
    class_means = [eraser(torch.as_tensor(X[y == c], dtype=torch.float32)).mean(0) for c in (0, 1)]
    torch.testing.assert_close(class_means[0], class_means[1], atol=1e-5, rtol=0)


def test_planted_concept_erasure_is_detected(planted):
    _, model = planted
    texts, X, y = _concept(model, POSITIVE, NEGATIVE)
    result = erasure_test(
        model,
        X,
        y,
        site="layer.0",
        prompts=texts,
        targets=(GOOD, BAD),
        name="planted",
        off_target_prompts=prompts(NEUTRAL[:6]),
        **FAST,
    )
    assert result.probe_before > 0.9
    assert abs(result.probe_after - 0.5) <= 0.1
    after = result.results.filter(method="LEACE+RidgeClassifier")[0]
    assert after.p_value > 0.05  # no linear signal left to find
    main = result.results.filter(method="LEACE")[0]
    assert main.p_value == pytest.approx(1 / 21) and main.ci_low > 0
    assert result.rank == 1
    control = result.results.filter(control="random_subspace")[0]
    assert control.p_value > 0.05
    assert len(result.results.correct("fdr_bh")) == 4


def test_erasing_a_concept_nothing_reads_is_not_detected(planted):
    _, model = planted
    texts, X, y = _concept(model, NULL_POS, NULL_NEG)
    result = erasure_test(model, X, y, site="layer.0", prompts=texts, targets=(GOOD, BAD), name="null", **FAST)
    assert result.probe_before > 0.9  # the null concept is perfectly readable ...
    main = result.results.filter(method="LEACE")[0]
    assert main.p_value > 0.1  # ... but erasing it moves predictions no more than a random subspace does


def test_same_seed_same_numbers(planted):
    _, model = planted
    texts, X, y = _concept(model, POSITIVE[:8], NEGATIVE[:8])
    kwargs = {**FAST, "n_random": 4, "n_permutations": 5, "n_splits": 4}
    a = erasure_test(model, X, y, site=0, prompts=texts, targets=(GOOD, BAD), seed=2, **kwargs)
    b = erasure_test(model, X, y, site=0, prompts=texts, targets=(GOOD, BAD), seed=2, **kwargs)
    assert a.results == b.results
    np.testing.assert_array_equal(a.change_random, b.change_random)


def test_projection_edit_matches_a_plain_torch_hook(tiny_models):
    model = tiny_models["llama"]
    prepared = prepare_prompts(model, ["The capital of France is", "Dogs bark"], "all")
    basis = random_subspaces(model.d_model, 2, 1, seed=0)  # (1, d, 2)
    bias = torch.randn(1, model.d_model, generator=torch.Generator().manual_seed(1))
    edits = Edits.projections(basis, basis.transpose(1, 2), bias)
    out = run_edits(model, prepared, "layer.2", edits, (3,), keep_full=True)
    mask = prepared.edit_mask[..., None].float()
    U, b0 = basis[0], bias[0]

    def hook(mod, inp, o):  # type: ignore[no-untyped-def]
        return o - mask * (((o - b0) @ U) @ U.T)

    handle = model.hf_model.model.layers[2].register_forward_hook(hook)
    try:
        with torch.no_grad():
            b = prepared.batch
            logits = model.hf_model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids)
    finally:
        handle.remove()
    assert out.full_logp is not None
    torch.testing.assert_close(out.full_logp[0], logits.logits[:, -1].log_softmax(-1), atol=1e-5, rtol=1e-5)


def test_random_subspaces_are_orthonormal_and_seeded():
    a = random_subspaces(16, 3, 4, seed=5)
    torch.testing.assert_close(a, random_subspaces(16, 3, 4, seed=5))
    gram = a.transpose(1, 2) @ a
    torch.testing.assert_close(gram, torch.eye(3).expand(4, 3, 3), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"X": np.zeros((4, 31))}, "d=32"),
        ({"y": np.linspace(0, 1, 4)}, "class labels"),
        ({"prompts": []}, "no prompts"),
        ({"site": "layer.7"}, "out of range"),
        ({"targets": (["good0 bad0"], BAD)}, "2 tokens"),
    ],
)
def test_bad_input_says_what_to_fix(planted, change, message):
    _, model = planted
    args = {
        "X": np.random.default_rng(0).normal(size=(4, 32)),
        "y": np.array([0, 1, 0, 1]),
        "prompts": ["the word is pos0"],
        "targets": (GOOD, BAD),
        "site": "layer.0",
    }
    args.update(change)
    with pytest.raises(InvalidInputError, match=message):
        erasure_test(model, args.pop("X"), args.pop("y"), **args, **FAST)
