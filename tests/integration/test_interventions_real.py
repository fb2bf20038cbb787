"""Causal tests on SmolLM2-135M with a valence direction from vader_lexicon/polarity (numbers in docs/RESULTS.md).

Kept small for CI on a 2-core CPU: one layer, 8 prompts, 20 random placebo directions (+3 orthogonal),
two alphas (+-0.5 activation scales), a ridge classifier as the fresh probe with 10 permutations (logistic
refits for the permutation test took minutes here), 20 random subspaces, 50 random directions for TCAV.
Run with ``pytest -m integration -s`` to print the tables. The assertions check that the machinery works on
the real model (finite numbers, erasure to chance, valid p-values), not which way the science comes out.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from sklearn.linear_model import RidgeClassifier

from conceptspace.activations._extract import extract
from conceptspace.analyses.causal._derivatives import directional_derivative_test
from conceptspace.analyses.causal._erasure import erasure_test
from conceptspace.analyses.causal._inputs import as_targets, resolve_targets
from conceptspace.analyses.causal._steering import steering_test
from conceptspace.analyses.causal._strength_select import select_strengths
from conceptspace.analyses.probes._estimators import MassMeanProbe
from conceptspace.concepts import load_concepts
from conceptspace.models import load_model
from conceptspace.stats._results import ResultSet

SITE = "layer.10"
N_PER_CLASS = 60
POSITIVE = [" good", " great", " wonderful", " excellent", " amazing"]
NEGATIVE = [" bad", " terrible", " awful", " horrible", " boring"]
PROMPTS = [
    "The food was delicious and the service was",
    "We loved the hotel, the staff were friendly and the room was",
    "What a beautiful day, everything about the trip was",
    "The concert was fantastic and the crowd was",
    "The food was disgusting and the service was",
    "We hated the hotel, the staff were rude and the room was",
    "What a miserable day, everything about the trip was",
    "The concert was a disaster and the crowd was",
]
OFF_TARGET = ["The capital of France is", "Water is made of hydrogen and"]


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    model = load_model("smollm2-135m")
    cs = load_concepts("vader_lexicon/polarity")
    data = cs.data.to_pandas()
    tok = model.tokenizer
    data["single"] = [len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in data["word"]]
    data = data[data["single"] & (data["valence"].abs() >= 1.5)]
    chosen = []
    for label in (0, 1):  # strongest words of each class, deterministic
        part = data[data["label"] == label].assign(strength=lambda d: d["valence"].abs())
        chosen.append(part.sort_values(["strength", "word"], ascending=[False, True]).head(N_PER_CLASS))
    items = np.concatenate([c.index.to_numpy() for c in chosen])
    texts = [cs.texts[i] for i in items]
    y = np.asarray([cs.labels[i] for i in items])
    X = np.asarray(extract(model, texts, sites=[SITE], position="last", cache=False, progress=False)[SITE])
    direction = MassMeanProbe().fit(X, y).direction_  # from negative (0) towards positive (1)
    targets = resolve_targets(model, POSITIVE, NEGATIVE)
    return model, X, y, direction, targets


def test_steering_valence_direction_vs_placebos(setup):
    model, _, _, direction, targets = setup
    start = time.perf_counter()
    result = steering_test(
        model,
        direction,
        PROMPTS,
        targets,
        site=SITE,
        off_target_prompts=OFF_TARGET,
        strengths=(-0.5, 0.5),
        n_random=20,
        n_orthogonal=3,
        dataset="vader_valence",
    )
    print(f"\n[steering {time.perf_counter() - start:.1f}s]\n{result.summary()}")
    assert result.delta.shape == (24, 2, len(PROMPTS)) and np.isfinite(result.delta).all()
    assert result.scale > 0 and result.kl is not None and (result.kl >= 0).all()
    for row in result.results:  # p's floor is 1/(B+1) for the placebo draws actually taken (+/-u pairs, sequential)
        floor = 1 / (int(row.extra.get("n_permutations") or 20) + 1)
        assert floor - 1e-12 <= row.p_value <= 1
        assert not np.isfinite(row.ci_low) or row.ci_low <= row.effect_size <= row.ci_high


def _battery_c5() -> dict:  # type: ignore[type-arg]
    battery = Path(__file__).resolve().parents[2] / "probes" / "concept_space.toml"
    analyses = tomllib.loads(battery.read_text(encoding="utf-8"))["analysis"]
    return next(a for a in analyses if a["id"] == "c5_sentiment_steering")


def test_strength_grid_chosen_under_the_kl_cap_on_the_battery_prompts(setup):
    """The battery's selection (its held-out and off-target prompts, cap and candidates) on the real model, then
    the evaluation on 6 of its evaluation prompts at the chosen strengths: the evaluation's off-target KL at the
    concept is the selection's (same prompts, same absolute strengths), hence under the cap."""
    model, _, _, direction, targets = setup
    spec = _battery_c5()
    unit = torch.as_tensor(direction / np.linalg.norm(direction), dtype=torch.float32)
    start = time.perf_counter()
    selection = select_strengths(model, unit, spec["held_out_prompts"], spec["off_target_prompts"],
                                 as_targets(model, targets), site=SITE, candidates=spec["candidate_strengths"],
                                 kl_cap=spec["kl_cap"])
    print(f"\n[selection {time.perf_counter() - start:.1f}s] {selection.extra()}")
    assert selection.chosen is not None, selection.reason()
    assert selection.kl[selection.chosen] <= spec["kl_cap"]
    assert all(k > spec["kl_cap"] for k in selection.kl[selection.chosen + 1:])  # the largest under the cap
    assert selection.kl[-1] > selection.kl[0]  # larger steps cost more
    result = steering_test(model, direction, spec["prompts"][:6], targets, site=SITE,
                           off_target_prompts=spec["off_target_prompts"], strengths=selection.grid,
                           scale=selection.scale, n_random=4, n_orthogonal=0, n_permutations=20,
                           dataset="vader_valence")
    assert result.kl is not None and result.scale == pytest.approx(selection.scale)
    assert result.kl[0].mean(axis=1).max() == pytest.approx(selection.kl[selection.chosen], rel=1e-3, abs=1e-5)


def test_leace_erasure_of_valence(setup):
    model, X, y, _, targets = setup
    start = time.perf_counter()
    result = erasure_test(
        model,
        X,
        y,
        site=SITE,
        prompts=PROMPTS,
        targets=targets,
        off_target_prompts=OFF_TARGET,
        probe=RidgeClassifier(),
        n_permutations=10,
        n_random=20,
        dataset="vader_valence",
    )
    print(f"\n[erasure {time.perf_counter() - start:.1f}s]\n{result.summary()}")
    assert result.probe_before > 0.75  # valence of strong single-token words is linearly readable at layer 10
    # A fresh probe finds nothing after LEACE: not above chance (with 96 training items in d=576 a held-out
    # score can fall below chance, which is no signal either).
    assert result.probe_after < 0.62
    assert result.results.filter(method="LEACE+RidgeClassifier")[0].p_value > 0.05
    assert np.isfinite(result.change_leace).all() and result.change_random.shape == (20, len(PROMPTS))


def test_tcav_valence_direction(setup):
    model, _, _, direction, targets = setup
    start = time.perf_counter()
    result = directional_derivative_test(
        model, direction, PROMPTS, targets, site=SITE, n_random=50, dataset="vader_valence"
    )
    print(f"\n[tcav {time.perf_counter() - start:.1f}s]\n{result.summary()}")
    assert np.isfinite(result.derivatives).all() and result.random_scores.shape == (50,)
    family = ResultSet(result.results).correct("holm")
    assert all(r.p_adjusted is not None and r.p_adjusted >= r.p_value for r in family)


def test_edits_that_skip_the_blocks_before_the_site_match_the_trace(setup):  # type: ignore[no-untyped-def]
    """On SmolLM2 the prefix path runs each edited row from the edited block on; its log-probabilities equal the
    nnsight trace's (every block, every position) to float32 rounding, at the battery's C5 site and another."""
    from conceptspace.analyses.causal._inputs import prepare_prompts
    from conceptspace.analyses.causal._prefix import skipped_blocks
    from conceptspace.analyses.causal._trace import Edits, run_edits
    from conceptspace.models._sites import get_submodule, module_path, parse_site

    model, _, _, direction, _ = setup
    prepared = prepare_prompts(model, PROMPTS, "last")
    g = torch.Generator().manual_seed(0)
    deltas = torch.cat([torch.as_tensor(direction, dtype=torch.float32)[None], torch.randn(3, model.d_model,
                                                                                          generator=g)])
    edits = Edits.additive(deltas * 2.0)
    for site in ("layer.15", "layer.10"):
        module = get_submodule(model.hf_model, module_path(parse_site(site, model.site_map), model.site_map))
        assert skipped_blocks(model, module) == int(site.split(".")[1])
        ids = (1, 2, 3)
        fast = run_edits(model, prepared, site, edits, ids, reuse_prefix=True, keep_full=True, memo=False)
        slow = run_edits(model, prepared, site, edits, ids, reuse_prefix=False, keep_full=True, memo=False)
        assert fast.full_logp is not None and slow.full_logp is not None
        np.testing.assert_allclose(fast.full_logp.numpy(), slow.full_logp.numpy(), atol=5e-4)
        assert float((fast.full_logp[0] - fast.full_logp[1]).abs().max()) > 0.1  # the edits did move them
