"""N6 (attention_pattern) on tiny models: the edit is exact where it must be (record mode is the model's own
attention; a mean over one sequence is that sequence), a model whose attention ignores the data comes out
"supported" through the runner, its null-battery run and a model with sharp content-dependent attention do not,
the positive control's rule, and bad inputs fail with errors that say what to change."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conceptspace.analyses import RunContext, registry
from conceptspace.analyses import _attention_pattern as ap
from conceptspace.analyses.kinds import attention_pattern
from conceptspace.errors import InvalidInputError, NotApplicableError
from conceptspace.models import load_model
from conceptspace.stats import SequentialPlan, sequential_null
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED
from tests.unit.planted_ops import PLANTED_SUITE_HEADER, _config, _tokenizer, make_filter_model, sentences

SUITE = PLANTED_SUITE_HEADER + """\
[claims.N6]
min_effect = 0.8
margin = 0.0
beat = []

[[analysis]]
id = "planted"
claim = "N6"
kind = "attention_pattern"
primary = "layer@0.5"
datasets = ["truth_is_universal/animal_class"]  # its texts are replaced by planted sentences
layers = [1]
n_sequences = 24
sequence_tokens = 16
"""


def make_uniform_attention_model(folder: Path, seed: int = 0) -> Path:
    """A tiny Llama whose queries are zero: every position attends uniformly to itself and the past whatever the
    tokens, so its pattern is data-independent by construction while its values (and output) are not."""
    from transformers import LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_config(initializer_range=0.2))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.zero_()
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def planted_text(monkeypatch):
    monkeypatch.setattr(attention_pattern, "load_concepts", lambda name: SimpleNamespace(texts=sentences(80)))


@pytest.fixture(scope="module")
def uniform_folder(tmp_path_factory):
    return make_uniform_attention_model(tmp_path_factory.mktemp("uniform"))


@pytest.fixture(scope="module")
def sharp_folder(tmp_path_factory):
    return make_filter_model(tmp_path_factory.mktemp("sharp"), sharpness=12.0)


def _run(folder, null_seed=None):
    outcome = run_suite(parse_suite(SUITE.format(model=folder), "planted.toml").for_run(), progress=False,
                        null_seed=null_seed)
    assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
    return outcome


def _primary(outcome):
    return next(r for r in outcome.results if r.extra["role"] == "primary")


# ------------------------------------------------------------------------------------------ the edit itself
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_record_mode_is_the_models_own_attention_and_the_implementation_is_restored(tiny_models, arch):
    model = tiny_models[arch]
    ids = torch.randint(5, 300, (3, 12), generator=torch.Generator().manual_seed(1))
    before = model.hf_model.config._attn_implementation
    with torch.inference_mode():
        reference = model.hf_model(input_ids=ids).logits
    with ap.pattern_edit(model) as edit:
        edit.mode, edit.blocks = "record", frozenset(range(model.n_layers))
        with torch.inference_mode():
            edited = model.hf_model(input_ids=ids).logits
        assert model.hf_model.config._attn_implementation == ap.ATTENTION_NAME
    assert torch.allclose(reference, edited, atol=1e-5)
    assert model.hf_model.config._attn_implementation == before
    with pytest.raises(RuntimeError, match="boom"), ap.pattern_edit(model):
        raise RuntimeError("boom")
    assert model.hf_model.config._attn_implementation == before


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_means_over_one_sequence_are_that_sequence(tiny_models, arch):
    """Both folds hold the same sequence: its mean pattern and mean output are its own, so neither edit changes
    anything; with two different sequences, mean-ablation does (a random tiny model's pattern is near uniform,
    so its mean pattern changes little: that case is the planted tests' job)."""
    model = tiny_models[arch]
    seq = np.random.default_rng(2).integers(5, 300, 14)
    same = ap.run_conditions(model, np.stack([seq, seq]), np.array([0, 1]), ap.plans([1], model.n_layers))
    for name in ("mean_pattern@1", "ablate@1", "mean_pattern@all", "ablate@all"):
        assert np.abs(same.kl[name]).max() < 1e-5, name
        assert np.allclose(same.loss[name], same.loss["clean"], atol=1e-4), name
    other = np.random.default_rng(3).integers(5, 300, 14)
    different = ap.run_conditions(model, np.stack([seq, other]), np.array([0, 1]), ap.plans([1], model.n_layers))
    assert different.kl["ablate@all"].mean() > 1e-4
    assert np.abs(different.loss["ablate@all"] - same.loss["clean"]).max() > 1e-3


# ------------------------------------------------------------------------------------- planted through runs
def test_attention_that_ignores_the_data_is_supported(uniform_folder, planted_text):
    outcome = _run(uniform_folder)
    (verdict,) = outcome.verdicts
    assert verdict.verdict == SUPPORTED, verdict.reason
    primary = _primary(outcome)
    assert primary.site == "layer.1" and primary.statistic == pytest.approx(1.0, abs=1e-4)
    assert primary.extra["kl_mean_pattern"] < 1e-6 < 1e-3 < primary.extra["kl_ablate"]
    assert primary.extra["copy_check"]["state"].startswith("not informative")  # a bag of tokens does not copy
    assert "not_testable" not in primary.extra
    roles = {(r.site, r.control): r.extra["role"] for r in outcome.results}
    assert roles[("layer.1", "induction")] == "baseline" and roles[("unembed", None)] == "exploratory"
    assert roles[("layer.1", "untrained")] == roles[("layer.1", "spectrum_matched")] == "control"


def test_attention_that_ignores_the_data_under_the_null_battery_is_not_supported(uniform_folder, planted_text):
    outcome = _run(uniform_folder, null_seed=2)
    (verdict,) = outcome.verdicts
    assert verdict.verdict == NOT_SUPPORTED, verdict.reason
    assert _primary(outcome).ci_high < 0.8


def test_sharp_content_dependent_attention_is_not_supported(sharp_folder, planted_text):
    """Sharp query-key products pick different keys in every sequence: a fixed pattern changes the output about
    as much as removing the attention output does."""
    outcome = _run(sharp_folder)
    (verdict,) = outcome.verdicts
    primary = _primary(outcome)
    assert verdict.verdict == NOT_SUPPORTED, (verdict.reason, primary.statistic)
    assert primary.ci_high < 0.8 and primary.extra["kl_mean_pattern"] > 0.1 * primary.extra["kl_ablate"]


# ------------------------------------------------------------------------------------ the positive control
def test_the_copy_check_needs_varied_offsets_lost_and_a_fixed_offset_kept():
    A = ap.Advantage
    passed = ap.CopyCheck(varied=A(8.0, 0.3), fixed=A(8.0, 6.0))
    blind = ap.CopyCheck(varied=A(8.0, 6.0), fixed=A(8.0, 6.0))  # the edit left data-dependent copying alone
    wrecked = ap.CopyCheck(varied=A(8.0, 0.3), fixed=A(8.0, 0.1))  # the edit removes copying a fixed pattern can do
    mute = ap.CopyCheck(varied=A(0.05, 0.05), fixed=A(0.04, 0.04))
    assert passed.not_testable() is None and passed.describe()["state"] == "passed"
    assert "positive control failed" in str(blind.not_testable()) and blind.describe()["state"] == "failed"
    assert "not specific" in str(wrecked.not_testable()) and wrecked.describe()["state"] == "failed"
    assert mute.not_testable() is None and mute.describe()["state"].startswith("not informative")


def test_a_failed_positive_control_makes_the_claim_not_testable(uniform_folder, planted_text, monkeypatch):
    """The planted positive again, with the copy check forced to "a copying model kept its advantage": the
    verdict must say the run cannot test the claim, whatever R is."""
    monkeypatch.setattr(ap, "advantage", lambda *args: ap.Advantage(8.0, 6.0))
    (verdict,) = _run(uniform_folder).verdicts
    assert verdict.verdict == NOT_TESTABLE and "positive control failed" in verdict.reason


def test_the_control_edits_every_block_or_those_after_the_primary():
    blocks = attention_pattern.AttentionPatternAnalysis._control_blocks
    assert blocks("all", "layer.15", [3, 15, 27, "all"], 30) == list(range(30))
    assert blocks("after_primary", "layer.15", [3, 15, 27, "all"], 30) == list(range(16, 30))
    assert blocks("after_primary", "unembed", [3, 15, 27, "all"], 30) == list(range(30))


def test_induction_sequences_repeat_a_block_of_varying_length(tiny_models):
    model = tiny_models["llama"]
    exact, permuted, mask = ap.induction_sequences(model, 40, 24, 0, min_period=6, max_period=12)
    assert exact.shape == permuted.shape and mask.shape == (40, exact.shape[1] - 1)
    periods = set()
    for row, perm, m in zip(exact, permuted, mask, strict=True):
        m_len = int(m.sum()) + 1
        periods.add(m_len)
        assert np.array_equal(row[-m_len:], row[-2 * m_len:-m_len])  # the second copy repeats the block
        assert sorted(perm[-m_len:]) == sorted(row[-m_len:]) and np.array_equal(perm[:-m_len], row[:-m_len])
        assert len(set(row[:-m_len].tolist())) == row.size - m_len  # filler and block: no token twice
    assert len(periods) > 3  # the copy offset varies, so no fixed pattern encodes it


def test_recovered_fraction_ci_and_p_are_calibrated_when_the_pattern_recovers_nothing():
    covered = rejected = 0
    for case in range(200):
        rng = np.random.default_rng([case, 31])
        c = rng.gamma(4.0, 0.25, 30)
        a = rng.standard_normal(30) * 0.5  # the fixed pattern recovers nothing on average
        out = sequential_null(ap.sign_flip_draw([(a, c)], case), [ap.ratio(a, c)], SequentialPlan.fixed(199))
        boot = ap.bootstrap_ratio(a, c, rng.integers(0, 30, (400, 30))) - out.null_mean[0]
        low, high = np.quantile(boot, [0.025, 0.975])
        covered += low <= 0.0 <= high
        rejected += out.p_value[0] < 0.05
    assert 0.90 <= covered / 200 <= 0.99 and 0.01 <= rejected / 200 <= 0.09, (covered, rejected)


# ------------------------------------------------------------------------------------------------ bad input
def _context(model, **changes):
    return RunContext(model=model, twin=None, claim="N6", n_permutations=9, n_bootstrap=9, **changes)


def test_bad_inputs_say_what_to_change(tiny_models, tiny_model_dirs, planted_text):
    kind = registry()["attention_pattern"]
    model = tiny_models["llama"]
    base = dict(datasets=["x"], layers=[1], sequence_tokens=16)
    with pytest.raises(InvalidInputError, match="even number"):
        kind.run(_context(model), kind.Params(**base, n_sequences=7))
    with pytest.raises(InvalidInputError, match="min_period"):
        kind.run(_context(model), kind.Params(**base, n_sequences=8, min_period=10, max_period=12))
    with pytest.raises(InvalidInputError, match=r"primary site layer\.2"):
        kind.run(_context(model, primary_site="layer.2"), kind.Params(**base, n_sequences=8))
    with pytest.raises(NotApplicableError, match="not a causal language model"):
        kind.run(_context(tiny_models["bert"]), kind.Params(**base, n_sequences=8))
    remote = load_model(str(tiny_model_dirs["llama"]), remote="local")
    with pytest.raises(NotApplicableError, match="remote"):
        kind.run(_context(remote), kind.Params(**base, n_sequences=8))
    with pytest.raises(InvalidInputError, match="primary must not be the last block"):
        kind.run(_context(model, primary_site="layer.2"), kind.Params(**{**base, "layers": [2]}, n_sequences=8,
                                                                       positive_control="after_primary"))
    with pytest.raises(InvalidInputError, match="positive_control must be"):
        kind.run(_context(model), kind.Params(**base, n_sequences=8, positive_control="late"))
    with pytest.raises(InvalidInputError, match="both folds"):
        ap.run_conditions(model, np.zeros((4, 8), dtype=np.int64) + 5, np.zeros(4, dtype=int), [])
