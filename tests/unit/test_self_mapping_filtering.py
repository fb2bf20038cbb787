"""N5 (self_mapping) and N7 (filtering) on tiny planted models through the runner: the planted positive comes
out "supported", its null-battery run (and the mismatched model) does not; the statistics' CIs and p-values are
calibrated on pure noise at the function level."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conceptspace.analyses import _filtering as fl
from conceptspace.analyses import _self_mapping as sm
from conceptspace.analyses.kinds import filtering, self_mapping
from conceptspace.stats import SequentialPlan, sequential_null
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import NOT_SUPPORTED, SUPPORTED
from tests.unit.planted_ops import PLANTED_SUITE_HEADER, make_filter_model, make_self_map_model, sentences

SUITE = PLANTED_SUITE_HEADER + """\
[claims.{claim}]
min_effect = {min_effect}
margin = {margin}
beat = {beat}

[[analysis]]
id = "planted"
claim = "{claim}"
kind = "{kind}"
datasets = ["truth_is_universal/animal_class"]  # its texts are replaced by planted sentences
{params}
"""


@pytest.fixture
def planted_text(monkeypatch):
    fake = SimpleNamespace(texts=sentences(80))
    for module in (self_mapping, filtering):
        monkeypatch.setattr(module, "load_concepts", lambda name: fake)


def _run(folder, claim, kind, params, *, min_effect, margin, beat, null_seed=None):
    text = SUITE.format(model=folder, claim=claim, kind=kind, params=params, min_effect=min_effect, margin=margin,
                        beat=beat)
    outcome = run_suite(parse_suite(text, "planted.toml").for_run(), progress=False, null_seed=null_seed)
    assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
    return outcome


N5_PARAMS = 'layers = [0, 1]\nmax_items = 24'
N7_PARAMS = 'layers = [0, 1]\nn_sequences = 64\nsequence_tokens = 24'


@pytest.fixture(scope="module")
def self_map_folder(tmp_path_factory):
    return make_self_map_model(tmp_path_factory.mktemp("self-map"))


@pytest.fixture(scope="module")
def filter_folder(tmp_path_factory):
    return make_filter_model(tmp_path_factory.mktemp("filter"))


def test_planted_self_map_is_supported_and_beats_the_lexical_baseline(self_map_folder, planted_text):
    outcome = _run(self_map_folder, "N5", "self_mapping", N5_PARAMS, min_effect=0.5, margin=0.1,
                   beat='["lexical"]')
    (verdict,) = outcome.verdicts
    assert verdict.verdict == SUPPORTED, verdict.reason
    primary = next(r for r in outcome.results if r.extra["role"] == "primary")
    assert primary.site == "layer.1" and primary.statistic > 0.9
    lexical = next(r for r in outcome.results if r.control == "lexical")
    assert lexical.extra["role"] == "baseline" and lexical.statistic < 0.3
    assert primary.extra["paired"]["lexical"]["ci_low"] > 0.5


def test_planted_self_map_under_the_null_battery_is_not_supported(self_map_folder, planted_text):
    outcome = _run(self_map_folder, "N5", "self_mapping", N5_PARAMS, min_effect=0.5, margin=0.1,
                   beat='["lexical"]', null_seed=1)
    (verdict,) = outcome.verdicts
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason
    primary = next(r for r in outcome.results if r.extra["role"] == "primary")
    assert primary.ci_low <= 0.0 <= primary.ci_high or abs(primary.effect_size) < 0.2


def test_a_random_model_is_not_a_self_map_beyond_its_last_token(tmp_path, planted_text, tiny_model_dirs):
    """A random tied network predicts its last input token, so its context vector is that token's embedding:
    S is high, but so is the lexical baseline, which explains it."""
    outcome = _run(tiny_model_dirs["llama"], "N5", "self_mapping", 'layers = [2]\nmax_items = 16',
                   min_effect=0.5, margin=0.1, beat='["lexical"]')
    (verdict,) = outcome.verdicts
    assert verdict.verdict != SUPPORTED, verdict.reason


def test_planted_filter_model_puts_aggregation_in_attention(filter_folder, planted_text):
    outcome = _run(filter_folder, "N7", "filtering", N7_PARAMS, min_effect=0.2, margin=0.0, beat="[]")
    (verdict,) = outcome.verdicts
    assert verdict.verdict == SUPPORTED, verdict.reason
    primary = next(r for r in outcome.results if r.extra["role"] == "primary")
    assert primary.extra["index_mlp"] < 0.05 and primary.extra["index_attention"] > 0.3
    assert any(r.control == "shuffled_input" and r.extra["role"] == "baseline" for r in outcome.results)


def test_planted_filter_model_under_the_null_battery_is_not_supported(filter_folder, planted_text):
    outcome = _run(filter_folder, "N7", "filtering", N7_PARAMS, min_effect=0.2, margin=0.0, beat="[]",
                   null_seed=3)
    (verdict,) = outcome.verdicts
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason


def test_the_ridge_filter_recovers_a_linear_filter_and_not_a_data_dependent_map():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((30, 6)) for _ in range(20)]
    A0, A1 = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    linear = [x @ A0 + np.vstack([np.zeros((1, 6)), x[:-1]]) @ A1 for x in X]
    gated = [x * (x @ rng.standard_normal((6, 1)) > 0) for x in X]  # depends on the input's content
    folds = np.arange(20) % 2
    assert fl.held_out_index(X, linear, folds, lags=1, penalties=[1e-6, 1.0])[0].max() < 1e-3
    assert fl.held_out_index(X, gated, folds, lags=1, penalties=[1e-6, 1.0])[0].mean() > 0.2
    assert fl.held_out_index(X, linear, folds, lags=0, penalties=[1e-6])[0].mean() > 0.2  # a lag it cannot see


def test_a_massive_activation_is_left_out_instead_of_deciding_the_index():
    """A norm (y = x / ||x||) is near-affine over ordinary inputs; one held-out position with a 100x norm made
    its D explode (SmolLM2, full battery: D 134 in one sequence). With the position left out, D stays small,
    and the mask flags exactly that position."""
    rng = np.random.default_rng(1)
    X = [rng.standard_normal((20, 8)) + 4.0 for _ in range(12)]
    X[5][7] *= 100.0  # a massive activation in one sequence
    Y = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in X]
    folds = np.arange(12) % 2
    keep = fl.ordinary_positions(X)
    assert [int((~k).sum()) for k in keep] == [0] * 5 + [1] + [0] * 6 and not keep[5][7]
    raw = fl.held_out_index(X, Y, folds, lags=0, penalties=[1e-3])[0]
    masked = fl.held_out_index(X, Y, folds, lags=0, penalties=[1e-3], keep=keep)[0]
    assert raw[5] > 5.0 and masked.max() < 0.5, (raw[5], masked.max())
    lagged_keep = fl.held_out_index(X, Y, folds, lags=1, penalties=[1e-3], keep=keep)[0]
    assert np.all(np.isfinite(lagged_keep)) and lagged_keep.max() < 1.0


def _coverage(draw_case, n_cases: int = 200) -> tuple[float, float]:
    covered = rejected = 0
    for case in range(n_cases):
        observed, draw, boot = draw_case(case)
        out = sequential_null(draw, [observed], SequentialPlan.fixed(199))
        effect = boot - out.null_mean[0]
        low, high = np.quantile(effect, [0.025, 0.975])
        covered += low <= 0.0 <= high
        rejected += out.p_value[0] < 0.05
    return covered / n_cases, rejected / n_cases


def test_filtering_gap_ci_and_p_are_calibrated_on_noise():
    def case(i):
        gaps = np.random.default_rng([i, 11]).standard_normal(40)
        boot_rows = np.random.default_rng([i, 12]).integers(0, 40, (400, 40))
        return float(gaps.mean()), fl.sign_flip_draw([gaps], i), gaps[boot_rows].mean(axis=1)

    cover, reject = _coverage(case)
    assert 0.91 <= cover <= 0.98 and 0.01 <= reject <= 0.08, (cover, reject)


def test_self_mapping_ci_and_p_are_calibrated_on_noise():
    def case(i):
        rng = np.random.default_rng([i, 21])
        K = rng.gamma(2.0, 1.0, (24, 24)) + 1.0  # exchangeable: the own vector is no better than another's
        token = rng.gamma(2.0, 0.1, 24)
        boot_rows = rng.integers(0, 24, (400, 24))
        return sm.statistic(K, token), sm.permutation_draw([K], token, i), sm.bootstrap_statistic(K, token, boot_rows)

    cover, reject = _coverage(case)
    assert 0.91 <= cover <= 0.98 and 0.01 <= reject <= 0.08, (cover, reject)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_cached_feed_of_a_tokens_embedding_is_that_token(tiny_models, arch):
    """The key/value-cached step with a token's own embedding gives the plain forward of context + token."""
    import torch

    from conceptspace.models._weights import embedding_rows

    model = tiny_models[arch]
    encoded = [list(ids) for ids in model.tokenizer(["The queen and", "Dogs bark, cats meow and birds"])["input_ids"]]
    feeder = sm.Feeder(model, encoded)
    token = feeder.first.argmax(-1).numpy()
    fed = feeder.step(torch.from_numpy(embedding_rows(model, token)))
    again = feeder.step(torch.from_numpy(embedding_rows(model, token)))  # the cache was cropped back
    for i, ids in enumerate(encoded):
        with torch.inference_mode():
            plain = model.hf_model(input_ids=torch.tensor([[*ids, int(token[i])]])).logits[0, -1].log_softmax(-1)
        assert torch.allclose(fed[i], plain, atol=1e-4) and torch.allclose(again[i], plain, atol=1e-4)
