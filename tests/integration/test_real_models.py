"""The bundled real models, end to end: loading, nnsight extraction against Hugging Face, twins, remote dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptspace.activations._extract import extract
from conceptspace.models import load_model
from conceptspace.theory import CLAIMS

SENTENCES = [
    "The capital of France is",
    "The salmon is a fish.",
    "A queen and a king walked into the old castle by the sea, and nobody noticed.",
    "Hello",
    "Thallium has the symbol Tl.",
]


@pytest.fixture(scope="module")
def smollm() -> object:
    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def minilm() -> object:
    return load_model("minilm-l6")


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_smollm2_is_the_real_pretrained_model(smollm):
    assert smollm.n_layers == 30 and smollm.d_model == 576 and smollm.is_causal
    assert smollm.parameter_count() == 134_515_008
    ids = smollm.tokenizer("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        logits = smollm.hf_model(**ids).logits[0, -1]
    assert smollm.tokenizer.decode(logits.argmax()) == " Paris"
    assert smollm.hf_model.lm_head.weight.data_ptr() == smollm.hf_model.model.embed_tokens.weight.data_ptr()


def test_smollm2_every_layer_matches_output_hidden_states(smollm):
    acts = extract(smollm, SENTENCES, sites="all", position="last", batch_size=4, progress=False)
    assert acts.sites[0] == "embed" and acts.sites[-1] == "final_norm" and len(acts.sites) == 32
    for index, text in enumerate(SENTENCES):
        ids = smollm.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            hidden = smollm.hf_model(**ids, output_hidden_states=True).hidden_states
        assert _relative(acts["embed"][index], hidden[0][0, -1].numpy()) <= 1e-6
        for layer in range(29):  # HF's hidden_states[i + 1] is block i's output, except the last (after the norm)
            assert _relative(acts[f"layer.{layer}"][index], hidden[layer + 1][0, -1].numpy()) <= 1e-4, layer
        assert _relative(acts["final_norm"][index], hidden[30][0, -1].numpy()) <= 1e-4


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_smollm2_batched_equals_single(smollm, padding_side):
    batched = extract(smollm, SENTENCES, sites=[0, 15, 29], position="mean", padding_side=padding_side, progress=False)
    for index, text in enumerate(SENTENCES):
        single = extract(smollm, [text], sites=[0, 15, 29], position="mean", cache=False, progress=False)
        for site in batched.sites:
            assert _relative(batched[site][index], single[site][0]) <= 1e-4, (site, index)


def test_smollm2_span_reads_a_word_inside_its_sentence(smollm):
    text = "A queen and a king walked."
    start = text.index(" queen")
    span_acts = extract(smollm, [text], sites=[10], position="span:mean", spans=[(start, start + 6)], progress=False)
    all_acts = extract(smollm, [text], sites=[10], position="all", progress=False)
    # " queen" is one token in SmolLM2's vocabulary: the span's mean is that token's vector
    token_index = smollm.tokenizer(text, return_offsets_mapping=True)["offset_mapping"].index((start, start + 6))
    np.testing.assert_allclose(span_acts["layer.10"][0], all_acts.tokens(0, "layer.10")[token_index], rtol=1e-5)


def test_smollm2_untrained_twin_is_a_real_control(smollm):
    twin = smollm.untrained(seed=0)
    trained = extract(smollm, SENTENCES[:2], sites=[12], progress=False)
    untrained = extract(twin, SENTENCES[:2], sites=[12], progress=False)
    assert trained.folder != untrained.folder
    assert not np.allclose(trained["layer.12"], untrained["layer.12"])
    assert twin.hf_model.lm_head.weight.data_ptr() == twin.hf_model.model.embed_tokens.weight.data_ptr()


def test_smollm2_remote_local_dry_run_is_identical():
    dry = load_model("smollm2-135m", remote="local")
    local = load_model("smollm2-135m")
    a = extract(dry, SENTENCES, sites=[12, "final_norm"], cache=False, progress=False)
    b = extract(local, SENTENCES, sites=[12, "final_norm"], cache=False, progress=False)
    np.testing.assert_array_equal(a["layer.12"], b["layer.12"])


def test_minilm_mean_pooling_matches_hugging_face(minilm):
    acts = extract(minilm, SENTENCES, sites=[-1], position="mean", progress=False)
    for index, text in enumerate(SENTENCES):
        ids = minilm.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            last = minilm.hf_model(**ids).last_hidden_state[0].mean(0)
        assert _relative(acts["layer.5"][index], last.numpy()) <= 1e-4
    assert minilm.site_map.final_norm is None and minilm.unembedding() is None


def test_smollm2_latitude_r2_interval_is_the_signal_worlds(smollm):
    """The signal world on real activations: 150 places (light-tailed latitudes) at layer 15, the nested probe as
    c4_latitude runs it. Its interval holds the effect and is narrower than the refit bootstrap's (which errs 1.5-2.1x
    wide in simulation; docs/STATISTICS.md); so is the paired world's interval of the difference with the lexical
    baseline (the bootstrap's pairing covered 0 in 1.000 of pure-noise data sets, the world's 0.94-0.95)."""
    from conceptspace.analyses.kinds.probe import lexical_features
    from conceptspace.analyses.probes._evaluation import probe_layers
    from conceptspace.analyses.probes._family import Arm, probe_family
    from conceptspace.analyses.probes._nested import NestedRidgeRegressionProbe
    from conceptspace.concepts import load_concepts
    from conceptspace.stats import SequentialPlan
    from conceptspace.stats._paired import paired_difference

    concepts = load_concepts("world_models/place_latitude")
    rows = np.sort(np.random.default_rng(0).choice(len(concepts.texts), 150, replace=False))
    y = np.asarray(concepts.labels, dtype=float)[rows]
    groups = np.asarray(concepts.groups)[rows]
    X = extract(smollm, [concepts.texts[i] for i in rows], sites=[15], position="last", progress=False).stack()
    embedding = lexical_features(smollm, concepts)[rows][None]  # the battery's lexical baseline: the word's tokens
    probe = NestedRidgeRegressionProbe(penalties=[0.01, 0.1, 1, 10, 100], inner_splits=3)
    r = probe_layers(probe, X, y, groups, dataset="latitude", n_permutations=199, n_bootstrap=100, seed=0)[0][0]
    assert r.extra["ci_method"] == "signal_world" and r.extra["world_draws"] == 400, r.extra
    assert r.ci_low < r.effect_size < r.ci_high
    boot_low, boot_high = r.extra["bootstrap_ci"]
    assert r.ci_high - r.ci_low < 0.5 * (boot_high - boot_low), (r.ci_low, r.ci_high, boot_low, boot_high)
    # "beats the lexical baseline" (the same probe on the place word's static embedding): the paired world, both
    # sides' worlds drawn with the same permutations, holds the difference and is narrower than the bootstrap's
    family = probe_family(probe, [Arm(None, X, y, ("layer.15",)), Arm("lexical", embedding, y, ("embed",),
                                                                      baseline=True)],
                          groups, dataset="latitude", primary="layer.15", plan=SequentialPlan.fixed(199),
                          n_bootstrap=100, seed=0)
    task, lexical = family.results[0], family.results[1]
    pair = task.extra["paired"]["lexical"]
    assert pair["method"] == "signal_world", task.extra
    assert pair["difference"] == pytest.approx(task.effect_size - lexical.effect_size)
    assert pair["ci_low"] < pair["difference"] < pair["ci_high"]
    boot = paired_difference(family.replicates[task.key], family.replicates[lexical.key])
    print("minus lexical:", pair["difference"], (pair["ci_low"], pair["ci_high"]), "bootstrap:",
          (boot["ci_low"], boot["ci_high"]))  # the measured intervals (pytest -rA)
    assert pair["ci_high"] - pair["ci_low"] < boot["ci_high"] - boot["ci_low"], (pair, boot)


def _numbers(doc: dict) -> dict:
    return {t["id"]: [t["statistic"], t["effect_size"], t["ci_low"], t["ci_high"], t["p"]] for t in doc["tests"]}


def test_readme_main_job_runs(tmp_path, capsys, monkeypatch):
    """The README's main job (quick battery) runs; through the remote dry run it gives the same numbers."""
    from conceptspace.cli import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "scripts/setup.sh" in line)
    argv = command.split(".venv/bin/conceptspace", 1)[1].split()
    assert argv[0] == "run"
    argv[1] = str(Path(__file__).resolve().parents[2] / argv[1])
    out_index = argv.index("--out") + 1
    argv[out_index] = str(tmp_path / "out")
    assert main([*argv, "--quick", "--quiet"]) == 0  # the same job, reduced battery: CI stays fast
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {v["claim"] for v in doc["verdicts"]} == set(CLAIMS)  # C1-C5, P5, A6 and the paper's N2, N3, N5, N7
    assert doc["quick"] is True and (tmp_path / "out" / "report.html").exists()
    # P5's must_fail controls: SmolLM2's twins clear its mid-depth logit-lens test on their own, so that primary
    # is set aside (the statistic is the residual stream's construction) and P5 is judged on its non-circular PMI
    # test alone ("1 of 1"): significant, but its paired margin over the twins misses 0.05 at the lower bound
    p5 = next(v for v in doc["verdicts"] if v["claim"] == "P5")
    assert p5["verdict"] == "inconclusive" and "1 of 1 significant" in p5["reason"], p5
    lens_twin = next(t for t in doc["tests"] if t["key"]["analysis"] == "p5_logit_lens"
                     and t["key"]["control"] == "untrained" and t["key"]["site"] == "layer.15"
                     and t["key"]["method"] == "cosine_vs_logp")
    assert lens_twin["ci_low"] >= 0.05, lens_twin  # the twin shows the effect itself: the reason it is set aside
    # C4's probes judge "beats the control" by the nested-CV interval of the paired difference, one per control
    for analysis in ("c4_truth", "c4_sentiment"):
        primary = next(t for t in doc["tests"] if t["key"]["analysis"] == analysis
                       and t["extra"].get("role") == "primary")
        paired = primary["extra"]["paired"]
        assert {"control_task", "untrained", "lexical", "spectrum_matched"} <= set(paired), paired
        assert all(v["method"] == "nested_cv" and v["ci_low"] < v["difference"] < v["ci_high"]
                   and len(v["bootstrap_ci"]) == 2 for v in paired.values()), paired
    # C4's latitude probe in --quick holds 48 places: too few for the signal world with a selected penalty, so its
    # R^2 interval is the bootstrap's and the row says why (the world on real activations: the test below)
    latitude = next(t for t in doc["tests"] if t["key"]["analysis"] == "c4_latitude"
                    and t["extra"].get("role") == "primary")
    assert latitude["extra"]["ci_method"] == "bootstrap", latitude
    assert "fewer than 100" in latitude["extra"]["signal_world_skipped"], latitude
    assert not any(v.get("method") == "signal_world" for v in latitude["extra"].get("paired", {}).values())
    # issue 13: a quick run can reach the verdicts a full run can; on the real labels it supports claims (measured
    # 2026-12-05: C2, C3, C5 and N6b)
    assert any(v["verdict"] == "supported" for v in doc["verdicts"]), [(v["claim"], v["verdict"])
                                                                       for v in doc["verdicts"]]
    assert "report:" in capsys.readouterr().out
    # Remote: the client holds a weightless skeleton; activations and weight rows come through serialised
    # traces. A fresh cache makes every extraction and weight read really go through them.
    monkeypatch.setenv("CONCEPTSPACE_CACHE", str(tmp_path / "fresh-cache"))
    argv[out_index] = str(tmp_path / "remote")
    assert main([*argv, "--quick", "--quiet", "--remote-dry-run"]) == 0
    remote = json.loads((tmp_path / "remote" / "results.json").read_text())
    assert remote["model"]["remote"] == "local" and remote["twin"]["remote"] is False
    # Remotely, kinds that run the model outside nnsight are "not applicable" and there is no spectrum twin (its
    # weights are not here); everything that ran in both must give the same numbers and verdicts.
    statuses = {a["id"]: a["status"] for a in remote["analyses"]}
    assert set(statuses.values()) <= {"ok", "not applicable"} and statuses["c4_truth"] == "ok", statuses
    ran = {a for a, status in statuses.items() if status == "ok"}
    local_numbers = {k: v for k, v in _numbers(doc).items() if k.split("/")[0] in ran and "spectrum" not in k}
    remote_numbers = {k: v for k, v in _numbers(remote).items() if "spectrum" not in k}
    assert local_numbers.keys() == remote_numbers.keys()
    for key, values in local_numbers.items():
        np.testing.assert_allclose(np.array(remote_numbers[key], dtype=float), np.array(values, dtype=float),
                                   rtol=1e-3, atol=1e-5, err_msg=key)
    claims_ran = {a["claim"] for a in remote["analyses"] if a["id"] in ran} - {
        a["claim"] for a in remote["analyses"] if a["id"] not in ran}
    by_claim = {v["claim"]: v["verdict"] for v in doc["verdicts"]}
    assert all(v["verdict"] == by_claim[v["claim"]] for v in remote["verdicts"] if v["claim"] in claims_ran)


def test_wheel_carries_datasets_and_probes(tmp_path):
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(root)], check=True
    )
    wheel = next(tmp_path.glob("conceptspace-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data_files = [n for n in names if n.startswith("conceptspace/bundled_datasets/")]
    assert any(n.endswith("LICENSE") for n in data_files) and any(n.endswith(".csv") for n in data_files)
    assert any(n.startswith("conceptspace/bundled_probes/") for n in names)
    assert not any(n.startswith("datasets/") for n in names)


_RESIDENT_AFTER_LOAD = """
from pathlib import Path
from conceptspace.models import load_model
model = load_model("smollm2-135m")
status = Path("/proc/self/status").read_text()
print(int(status.split("VmRSS:")[1].split()[0]) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc (Linux)")
def test_converting_the_gguf_leaves_no_more_memory_than_loading_the_copy(tmp_path):
    """The first process on a machine dequantizes the GGUF; it must then hold what every later process holds
    (it used to keep ~500 MB more, which put a fresh machine's first full battery over the 3 GB budget)."""
    env = {**os.environ, "CONCEPTSPACE_MODEL_CACHE": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1"}

    def resident_mb() -> int:
        done = subprocess.run([sys.executable, "-c", _RESIDENT_AFTER_LOAD], env=env, check=True, capture_output=True,
                              text=True)
        return int(done.stdout.strip().splitlines()[-1])

    converting = resident_mb()
    assert list((tmp_path / "models").rglob("model.safetensors")), "the first load wrote the float32 copy"
    loading = resident_mb()
    # the old code kept ~500 MB more; a fresh CI machine measured 647 vs 521 MB (here 462 vs 447), so the bound
    # leaves room for the machine's own spread and still fails the old behaviour
    assert converting <= loading + 250, (converting, loading)
