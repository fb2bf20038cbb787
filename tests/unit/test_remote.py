"""Remote execution without a network: the dry run holds weights apart, weights come through traces, a whole
suite gives the same numbers, and the untrained control can be chosen (own config, a stand-in, none)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conceptspace.analyses._aggregation import context_vectors
from conceptspace.errors import InvalidInputError, RemoteError
from conceptspace.models import _weights as weights
from conceptspace.models import load_model
from conceptspace.report import build_report, render_markdown
from conceptspace.suite._runner import run_suite
from conceptspace.suite._spec import parse_suite


@pytest.fixture(scope="module")
def pairs(tiny_model_dirs):
    """(local, dry run) of each tiny architecture."""
    return {arch: (load_model(str(folder)), load_model(str(folder), remote="local"))
            for arch, folder in tiny_model_dirs.items()}


def test_dry_run_client_holds_no_weights(pairs):
    local, dry = pairs["llama"]
    assert not dry.weights_are_local and local.weights_are_local
    assert dry.device.type == "cpu"
    with pytest.raises((NotImplementedError, RuntimeError, TypeError)):
        dry.embedding_matrix().numpy()  # a direct read fails here exactly as it would against NDIF
    assert dry.describe()["parameters"] == local.describe()["parameters"]
    assert dry.d_model == local.d_model and dry.n_layers == local.n_layers


def test_dry_run_twin_is_local_and_equals_the_local_twin(pairs):
    local, dry = pairs["llama"]
    twin_a, twin_b = local.untrained(3), dry.untrained(3)
    assert twin_b.weights_are_local and twin_b.remote is False
    for (name, a), (_, b) in zip(twin_a.hf_model.state_dict().items(), twin_b.hf_model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_weights_read_through_traces_equal_local_reads(pairs, arch):
    local, dry = pairs[arch]
    ids = [5, 17, 5, 300, 0]  # repeats are downloaded once and returned in order
    np.testing.assert_array_equal(weights.embedding_rows(dry, ids), weights.embedding_rows(local, ids))
    np.testing.assert_array_equal(weights.unembedding_rows(dry, ids), weights.unembedding_rows(local, ids))
    np.testing.assert_array_equal(weights.unembedding_matrix(dry), weights.unembedding_matrix(local))
    assert weights.vocab_size(dry) == weights.vocab_size(local)
    if arch == "bert":
        with pytest.raises(InvalidInputError, match="no final norm"):
            weights.final_norm(dry)
        with pytest.raises(InvalidInputError, match="no language-model head"):
            weights.output_head(dry)
        return
    W_dry, b_dry = weights.output_head(dry)
    W_local, b_local = weights.output_head(local)
    np.testing.assert_array_equal(W_dry, W_local)
    assert (b_dry is None) == (b_local is None)
    H = torch.randn(4, local.d_model)
    with torch.no_grad():
        expected = weights.final_norm(local)(H)
        got = weights.final_norm(dry)(H)
    torch.testing.assert_close(got, expected)
    if arch == "gpt2":  # LayerNorm: weight and bias both travel
        assert weights.final_norm(dry).bias is not None


def test_whole_matrix_is_downloaded_in_chunks_once_then_cached(pairs, monkeypatch, tmp_path):
    local, dry = pairs["llama"]
    calls: list[int] = []
    real_fetch = weights._fetch

    def counting(model, path, name, rows=None):  # type: ignore[no-untyped-def]
        calls.append(0 if rows is None else len(rows))
        return real_fetch(model, path, name, rows)

    monkeypatch.setattr(weights, "_fetch", counting)
    monkeypatch.setattr(weights, "CHUNK_BYTES", 4 * local.d_model * 64)  # 64 rows per download
    first = weights.unembedding_matrix(dry)
    vocab = weights.vocab_size(local)
    assert len(calls) == -(-vocab // 64) and max(calls) == 64
    np.testing.assert_array_equal(first, weights.unembedding_matrix(local))
    calls.clear()
    second = weights.unembedding_matrix(dry)  # from the on-disk cache: no trace at all
    assert calls == [] and np.array_equal(second, first)
    notes = list((weights._cache_folder(dry)).glob("*.json"))
    assert notes and not list(weights._cache_folder(dry).glob("*.tmp.npy"))


def test_bad_token_ids_are_refused(pairs):
    _, dry = pairs["llama"]
    with pytest.raises(InvalidInputError, match="token ids must lie in"):
        weights.embedding_rows(dry, [weights.vocab_size(dry)])
    assert weights.embedding_rows(dry, []).shape == (0, dry.d_model)


def test_context_vectors_through_traces_equal_the_local_forward(pairs):
    local, dry = pairs["llama"]
    sequences = [(1, 40, 41, 42), (1, 50, 51, 52), (1, 60, 61)]
    a = context_vectors(local, sequences, cache=False)
    b = context_vectors(dry, sequences, cache=False)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_twin_too_large_for_memory_is_refused_with_the_way_out(pairs, monkeypatch):
    from conceptspace.models import _model as models
    _, dry = pairs["llama"]
    monkeypatch.setattr(models, "_available_memory_bytes", lambda: 1024)
    with pytest.raises(RemoteError, match="--twin none"):
        dry.untrained(0)


SUITE = """\
[suite]
name = "remote_check"
model = "{model}"
seed = 0
n_permutations = 49
spectrum_twin = false  # a remote model has no spectrum twin (its weights are not here): compare like with like
n_bootstrap = 30

[claims.C2]
min_effect = 0.1
beat = ["untrained"]

[claims.C4]
min_effect = 0.1
beat = ["untrained", "lexical", "control_task"]

[claims.P5]
min_effect = 0.05
beat = ["untrained"]

[claims.A6]
min_effect = 0.5
beat = []

[[analysis]]
id = "probe"
claim = "C4"
kind = "probe"
dataset = "truth_is_universal/animal_class"
layers = [0, 1]
max_items = 40
controls = ["control_task", "untrained", "lexical"]

[[analysis]]
id = "relations"
claim = "C2"
kind = "relations"
dataset = "google_analogy/family"
sites = ["unembed", "layer.1"]

[[analysis]]
id = "proximity"
claim = "P5"
kind = "proximity"
dataset = "truth_is_universal/animal_class"
layers = [0, 1]
max_items = 24

[[analysis]]
id = "a6"
claim = "A6"
kind = "aggregation"
datasets = ["truth_is_universal/animal_class"]
max_items = 24
"""


def _numbers(outcome):  # type: ignore[no-untyped-def]
    return {r.test_id: (r.statistic, r.effect_size, r.ci_low, r.ci_high, r.p_value) for r in outcome.results}


def test_suite_through_the_remote_dry_run_gives_the_local_numbers(tiny_model_dirs, tmp_path, monkeypatch):
    suite = parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "remote_check.toml").for_run()
    local = run_suite(suite, progress=False)
    monkeypatch.setenv("CONCEPTSPACE_CACHE", str(tmp_path / "fresh"))  # nothing cached: every read is traced
    dry = run_suite(suite, remote="local", progress=False)
    assert all(r.status == "ok" for r in dry.records), [(r.spec.id, r.reason) for r in dry.records]
    a, b = _numbers(local), _numbers(dry)
    assert a.keys() == b.keys() and any(key.endswith("/untrained") for key in a)
    for key in a:
        np.testing.assert_allclose(np.array(b[key], dtype=float), np.array(a[key], dtype=float), rtol=1e-4,
                                   atol=1e-6, err_msg=key)
    assert [v.verdict for v in dry.verdicts] == [v.verdict for v in local.verdicts]
    assert dry.model["remote"] == "local" and dry.twin is not None and dry.twin["remote"] is False
    per_analysis = dry.timings["download_mb"]
    assert dry.timings["download_mb_total"] > 0 and all(per_analysis[a] > 0 for a in per_analysis)
    assert abs(sum(per_analysis.values()) - dry.timings["download_mb_total"]) < 0.01
    assert "download_mb" not in local.timings
    assert "remote dry run" in render_markdown(build_report(dry, with_figures=False))


def test_suite_without_twin_says_so_and_cannot_support_twin_claims(tiny_model_dirs):
    suite = parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "remote_check.toml").for_run()
    outcome = run_suite(suite, twin="none", progress=False)
    assert outcome.twin is None
    assert not any(r.key.model == "untrained" for r in outcome.results)
    assert any("--twin none" in c for c in outcome.caveats)
    for verdict in outcome.verdicts:
        if verdict.claim in ("C2", "C4", "P5"):
            assert verdict.verdict != "supported"
    assert "no untrained twin in this run" in render_markdown(build_report(outcome, with_figures=False))


def test_stand_in_twin_is_named(tiny_model_dirs):
    suite = parse_suite(SUITE.format(model=tiny_model_dirs["llama"]), "remote_check.toml").for_run()
    suite = dataclasses.replace(suite, analyses=suite.analyses[:1])
    outcome = run_suite(suite, twin=str(tiny_model_dirs["gpt2"]), progress=False)
    assert outcome.twin is not None and outcome.twin["twin_source"] == str(tiny_model_dirs["gpt2"])
    assert any("not a re-initialised" in c for c in outcome.caveats)
    assert any(r.control == "untrained" and r.key.model == "untrained" for r in outcome.results)


def test_download_ledger_counts_exactly_the_saved_slices(pairs):
    from conceptspace.activations._extract import extract

    local, dry = pairs["llama"]
    texts = ["The capital of France is Paris.", "Dogs bark.", "A queen and a king."]
    before = dry.downloaded_bytes
    extract(dry, texts, sites=[0, 1], position="last", cache=False, progress=False)
    assert dry.downloaded_bytes - before == len(texts) * 2 * dry.d_model * 4  # 3 texts x 2 sites x d x fp32
    before = dry.downloaded_bytes
    weights.embedding_rows(dry, [7, 7, 9])
    assert dry.downloaded_bytes - before == 2 * dry.d_model * 4  # unique rows only
    extract(local, texts, sites=[0], position="last", cache=False, progress=False)
    assert local.downloaded_bytes == 0


def test_layer_past_the_end_is_refused_not_wrapped(tiny_model_dirs):
    text = SUITE.format(model=tiny_model_dirs["llama"]).replace("layers = [0, 1]\nmax_items = 40",
                                                                 "layers = [0, 7]\nmax_items = 40")
    suite = parse_suite(text, "remote_check.toml").for_run()
    suite = dataclasses.replace(suite, analyses=suite.analyses[:1])
    outcome = run_suite(suite, twin="none", progress=False)
    record = outcome.records[0]
    assert record.status == "failed" and "layer 7 does not exist" in record.reason
    assert next(v for v in outcome.verdicts if v.claim == "C4").verdict == "not run"


def test_self_mapping_on_a_remote_model_is_not_applicable_before_any_download(pairs):
    """N5 needs the weights here; on NDIF it must say so before reading the embedding matrix (2 GB at 70B)."""
    from conceptspace.analyses import registry
    from conceptspace.analyses._base import RunContext
    from conceptspace.errors import NotApplicableError

    _, dry = pairs["llama"]
    kind = registry()["self_mapping"]
    params = kind.Params(**{**kind.smoke_params})
    before = dry.downloaded_bytes
    with pytest.raises(NotApplicableError, match="weights locally"):
        kind.run(RunContext(model=dry, twin=None, claim="N5"), params)
    assert dry.downloaded_bytes == before


def test_sublayer_reads_through_the_dry_run_equal_the_local_reads(pairs):
    """N7's trace body names only envoys: rebuilt on the simulated server without conceptspace (the conftest
    guard fails any body that ships a conceptspace object), its reads equal the local forward's."""
    from conceptspace.analyses._filtering import SUBLAYERS, read_sublayers

    local, dry = pairs["llama"]
    sequences = [(1, 40, 41, 42), (1, 50, 51)]
    a = read_sublayers(local, sequences, [0, 1])
    b = read_sublayers(dry, sequences, [0, 1])
    for block in (0, 1):
        for sub in SUBLAYERS:
            for x, y in zip(a[block][sub][0] + a[block][sub][1], b[block][sub][0] + b[block][sub][1], strict=True):
                np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
