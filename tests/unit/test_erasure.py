"""LEACE erasure: the fresh-probe check and the prediction change vs random subspaces, on a planted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from concept_erasure import LeaceEraser, LeaceFitter
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from conceptspace.activations import extract
from conceptspace.analyses.causal import _erasure as erasure_module
from conceptspace.analyses.causal._erasure import (
    WHITENING_CACHE,
    LeaceTransformer,
    apply_eraser,
    erasure_test,
    fit_leace,
    random_subspaces,
)
from conceptspace.analyses.causal._inputs import prepare_prompts
from conceptspace.analyses.causal._trace import Edits, run_edits
from conceptspace.errors import InvalidInputError
from conceptspace.models import load_model
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


def _ill_conditioned(seed: int, d: int = 48, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Covariance condition number ~1e6 and a large common offset, like residual-stream activations."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = (rng.normal(size=(n, d)) * np.logspace(0, 3, d)) @ q.T + 1000.0 * rng.normal(size=d)
    X += np.outer(y, 3.0 * q[:, 0] + 300.0 * q[:, -1])
    return X, y


def _relative_gap(erased: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    gap = np.abs(erased[y == 1].mean(axis=0) - erased[y == 0].mean(axis=0)).max()
    return float(gap / np.abs(X).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_float64_fit_erases_ill_conditioned_data_where_a_float32_fit_does_not(seed):
    X, y = _ill_conditioned(seed)
    assert np.linalg.cond(np.cov(X.T)) > 5e5
    x32 = torch.as_tensor(X, dtype=torch.float32)
    float32_fit = LeaceEraser.fit(x32, torch.as_tensor(y, dtype=torch.float32)[:, None])
    # The control: the float32 fit (what this module used to do) leaves a class-mean gap above the bound.
    assert _relative_gap(float32_fit(x32).double().numpy(), X, y) > 1e-8
    assert _relative_gap(apply_eraser(fit_leace(X, y), X), X, y) < 1e-8


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_fit_leace_equals_concept_erasure_in_float64(n_classes):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(150, 20)) * np.logspace(0, 2, 20) + 5.0
    y = rng.integers(0, n_classes, 150)
    X[:, 2] += y
    codes = torch.as_tensor(np.unique(y, return_inverse=True)[1])
    z = codes.double()[:, None] if n_classes == 2 else torch.nn.functional.one_hot(codes).double()
    reference = LeaceEraser.fit(torch.as_tensor(X), z)
    ours = fit_leace(X, y)
    eye = torch.eye(20, dtype=torch.float64)
    torch.testing.assert_close(eye - ours.proj_left @ ours.proj_right, reference.P, atol=1e-10, rtol=0)
    assert ours.bias is not None and reference.bias is not None
    torch.testing.assert_close(ours.bias, reference.bias, atol=1e-12, rtol=0)
    assert ours.proj_left.dtype == torch.float64


def test_refits_on_the_same_features_reuse_the_label_free_part():
    X, y = _ill_conditioned(3, d=24, n=120)
    WHITENING_CACHE.clear()
    first = fit_leace(X, y)
    permuted = np.random.default_rng(0).permutation(y)
    cached = fit_leace(X, permuted)
    assert (WHITENING_CACHE.misses, WHITENING_CACHE.hits) == (1, 1)
    WHITENING_CACHE.clear()
    fresh = fit_leace(X, permuted)
    assert WHITENING_CACHE.misses == 1
    torch.testing.assert_close(cached.proj_left @ cached.proj_right, fresh.proj_left @ fresh.proj_right)
    # Different labels, different eraser: the cache holds nothing label-dependent.
    assert not torch.allclose(first.proj_left @ first.proj_right, cached.proj_left @ cached.proj_right)
    fit_leace(X + 1e-9, y)  # other bytes, other entry
    assert WHITENING_CACHE.misses == 2


def test_a_trace_increase_falls_back_to_concept_erasures_own_fit(monkeypatch):
    X, y = _ill_conditioned(4, d=16, n=80)
    monkeypatch.setattr(erasure_module, "_trace_grows", lambda *args: True)
    ours = fit_leace(X, y)
    reference = LeaceFitter.fit(torch.as_tensor(X), torch.as_tensor(y, dtype=torch.float64)[:, None]).eraser
    torch.testing.assert_close(ours.proj_left, reference.proj_left)


def test_apply_eraser_keeps_the_activations_dtype():
    X, y = _ill_conditioned(5, d=16, n=80)
    eraser = fit_leace(X, y)
    assert apply_eraser(eraser, X.astype(np.float32)).dtype == np.float32
    assert apply_eraser(eraser, X).dtype == np.float64
    transformer = LeaceTransformer().fit(X, y)
    np.testing.assert_array_equal(transformer.transform(X), apply_eraser(eraser, X))


def test_probe_only_erasure_needs_no_model_or_prompts():
    X, y = _ill_conditioned(6, d=24, n=120)
    result = erasure_test(None, X.astype(np.float32), y, site="layer.3", **FAST)
    assert [(r.key.test, r.site, r.key.detail) for r in result.results] == [
        ("erasure", "layer.3", ("probe_before",)),
        ("erasure", "layer.3", ("probe_after",)),
    ]
    assert result.probe_before > 0.8 and abs(result.probe_after - 0.5) <= 0.15
    assert result.change_leace is None and result.change_random is None and result.kl_leace is None
    assert result.erased.dtype == np.float32 and result.erased.shape == X.shape
    np.testing.assert_array_equal(result.erased, apply_eraser(result.eraser, X.astype(np.float32)))
    assert _relative_gap(apply_eraser(result.eraser, X), X, y) < 1e-8
    assert result.edit_norm_leace > 0 and result.edit_norm_random.shape == (FAST["n_random"],)
    assert "score change" not in result.summary()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": ["a prompt"]}, "both prompts and targets"),
        ({"targets": (["a"], ["b"])}, "both prompts and targets"),
        ({"off_target_prompts": ["x"]}, "off_target_prompts needs"),
        ({"prompts": ["a prompt"], "targets": (["a"], ["b"])}, "needs the model"),
        ({"site": 3}, "without a model, site must be"),
    ],
)
def test_probe_only_mode_errors_say_what_to_pass(kwargs, message):
    X, y = _ill_conditioned(7, d=8, n=40)
    args = {"site": "layer.3", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        erasure_test(None, X, y, **args, **FAST)


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
        dataset="planted",
        off_target_prompts=prompts(NEUTRAL[:6]),
        **{**FAST, "n_random": 40},  # a 95% rank interval needs >= 39 placebos
    )
    assert result.probe_before > 0.9
    assert abs(result.probe_after - 0.5) <= 0.1
    after = result.results.filter(method="LEACE+RidgeClassifier")[0]
    assert after.p_value > 0.05  # no linear signal left to find
    main = result.results.filter(method="LEACE")[0]
    assert main.p_value == pytest.approx(1 / 41) and main.ci_low > 0
    assert result.rank == 1
    assert result.erased.shape == X.shape and result.eraser.proj_left.dtype == torch.float64
    control = result.results.filter(control="random_subspace")[0]
    assert control.p_value > 0.05
    assert len(result.results.correct("fdr_bh")) == 4


def test_erasing_a_concept_nothing_reads_is_not_detected(planted):
    _, model = planted
    texts, X, y = _concept(model, NULL_POS, NULL_NEG)
    result = erasure_test(model, X, y, site="layer.0", prompts=texts, targets=(GOOD, BAD), dataset="null", **FAST)
    assert result.probe_before > 0.9  # the null concept is perfectly readable ...
    main = result.results.filter(method="LEACE")[0]
    assert main.p_value > 0.1  # ... but erasing it moves predictions no more than a random subspace does


def test_same_seed_same_numbers(planted):
    _, model = planted
    texts, X, y = _concept(model, POSITIVE[:8], NEGATIVE[:8])
    kwargs = {**FAST, "n_random": 4, "n_permutations": 5, "n_splits": 4}
    a = erasure_test(model, X, y, site=0, prompts=texts, targets=(GOOD, BAD), seed=2, **kwargs)
    b = erasure_test(model, X, y, site=0, prompts=texts, targets=(GOOD, BAD), seed=2, **kwargs)
    for x, z in zip(a.results, b.results, strict=True):  # NaN intervals (4 placebos) compare equal here
        assert x.key == z.key
        numbers = ("statistic", "effect_size", "ci_low", "ci_high", "p_value")
        np.testing.assert_array_equal([getattr(x, f) for f in numbers], [getattr(z, f) for f in numbers])
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


def _relabel(y):  # type: ignore[no-untyped-def]
    return lambda seed: np.random.default_rng(seed).permutation(y)


def test_planted_erasure_beats_erasers_of_relabellings_drawn_sequentially(planted):
    from conceptspace.stats import SequentialPlan

    _, model = planted
    texts, X, y = _concept(model, POSITIVE, NEGATIVE)
    plan = SequentialPlan(start=10, maximum=400, thresholds=(0.01,))
    result = erasure_test(model, X, y, site="layer.0", prompts=texts, targets=(GOOD, BAD), dataset="planted",
                          relabel=_relabel(y), plan=plan, **FAST)
    main = result.results.filter(method="LEACE", control=None)[0]
    assert main.extra["role"] == "primary" and main.extra["placebo"] == "relabelled_leace"
    assert 10 < main.extra["n_permutations"] <= 400 and main.p_value < 0.01 and main.ci_low > 0
    assert result.placebo_null.shape == (main.extra["n_permutations"],)
    reference = result.results.filter(method="LEACE_vs_random_subspaces")[0]
    assert reference.control == "random_subspace" and reference.extra["role"] == "control"
    assert [r.extra["role"] for r in result.results].count("primary") == 1
    assert main.key in result.replicates and reference.key in result.replicates


def test_erasing_a_concept_nothing_reads_is_not_beaten_by_relabellings(planted):
    _, model = planted
    texts, X, y = _concept(model, NULL_POS, NULL_NEG)
    result = erasure_test(model, X, y, site="layer.0", prompts=texts, targets=(GOOD, BAD), dataset="null",
                          relabel=_relabel(y), **{**FAST, "n_permutations": 60})
    main = result.results.filter(method="LEACE", control=None)[0]
    assert main.p_value > 0.1 and main.ci_low <= 0
