"""N6b (composition of contexts vs idioms): the interaction, the statistics, a planted-positive and a null case.

The tiny random models know no idioms, so the planted cases replace the one model call of the measurement
(``next_token_logprobs``: next-token log-probabilities of a batch of prompts) by synthetic tables with a known
truth: every word w has a log-linear "expert" e_w over the vocabulary, a compositional phrase's context is the
product of its words' experts (additive logits), an idiom's adds a phrase-specific vector. Everything else runs as
in a suite on the tiny llama's tokenizer: contexts, the token-count check, the interaction, the Monte Carlo null,
effects, intervals, the frequency control, the twins and replicates.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from conceptspace.analyses import RunContext, registry
from conceptspace.analyses import _composition as comp
from conceptspace.concepts import load_concepts
from conceptspace.errors import DatasetError, InvalidInputError
from conceptspace.stats import SequentialPlan, sequential_null
from tests.unit.planted_ops import PLANTED_SUITE_HEADER

V = 512  # more columns than the tiny tokenizer has tokens (the frequency proxy indexes real token ids)
IDIOMS = {t for t, lab in zip(load_concepts("phrase_composition").column("word"),
                              load_concepts("phrase_composition").labels, strict=True) if lab == 1}


@pytest.fixture(autouse=True)
def _no_forward_memo(monkeypatch):
    """The planted cases swap the model's answers (synthetic tables) under one model identity; the forward memo
    would serve the first table's measurements to the next swap, so it is off here (tests/unit/test_forward_memo.py
    covers it)."""
    monkeypatch.setenv("CONCEPTSPACE_FORWARD_MEMO", "0")


@pytest.fixture(scope="module")
def pair(tiny_models):
    model = tiny_models["llama"]
    return model, model.untrained(1)


def _vector(name: str, scale: float) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).normal(0.0, scale, V)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())  # type: ignore[no-any-return]


def _slot_words(prompt: str) -> list[str] | None:
    for frame in comp.FRAMES:
        head, tail = frame.split(comp.SLOT)
        if prompt.startswith(head) and prompt.endswith(tail):
            return prompt[len(head):len(prompt) - len(tail)].split()
    return None  # a prompt of the frequency proxy (prefix + adjective [+ part of the noun])


def _fake_logprobs(idiom_strength: float):
    """A stand-in for the model: additive word experts; idioms (the bundled labels) add ``idiom_strength``-scaled
    phrase vectors. The frequency-proxy prompts get a text-seeded distribution."""

    def fake(model, prompts, max_rows=512):
        rows = []
        for prompt in prompts:
            words = _slot_words(prompt)
            if words is None:
                rows.append(_log_softmax(_vector(prompt, 1.0)))
                continue
            logits = _vector("frame", 1.0) + sum((_vector(w, 1.0) for w in words), np.zeros(V))
            if len(words) == 2 and " ".join(words) in IDIOMS:
                logits = logits + _vector(" ".join(words), idiom_strength)
            rows.append(_log_softmax(logits))
        return np.stack(rows)[None]

    return fake


def _context(model, twin, **kw):
    return RunContext(model=model, twin=twin, claim="N6b", n_permutations=199, n_bootstrap=200, **kw)


def _primary(output):
    (primary,) = [r for r in output.results if r.extra.get("role") == "primary"]
    return primary


# ---------------------------------------------------------------------------------------------- the measure
def test_additive_tables_have_no_interaction_and_a_phrase_vector_does():
    rng = np.random.default_rng(0)
    empty, a, b = rng.normal(size=V), rng.normal(size=(3, V)), rng.normal(size=(3, V))
    additive = a + b - empty  # log p(t|AB) = log p(t|A) + log p(t|B) - log p(t) exactly
    mean_abs, signed = comp.interactions(empty, a, b, additive, top_k=5)
    assert np.allclose(mean_abs, 0) and np.allclose(signed, 0)
    bumped = additive + np.where(np.arange(V) < 4, 2.0, 0.0)  # the phrase adds 2 nats to tokens 0-3
    mean_abs, signed = comp.interactions(empty, a, b, bumped, top_k=4)
    assert mean_abs.min() > 0 and np.all(signed <= 2.0 + 1e-12)
    with pytest.raises(InvalidInputError, match="top_k"):
        comp.interactions(empty, a, b, additive, top_k=V + 1)


def test_frequency_part_is_the_ancova_decomposition():
    rng = np.random.default_rng(1)
    y = np.repeat([1.0, 0.0], 30)
    f = rng.normal(size=60) + 0.8 * y
    d = 0.5 * y + 0.7 * f + rng.normal(scale=0.3, size=60)
    delta = comp.class_difference(d, y)[0]
    part = comp.frequency_part(d, f, y)[0]
    coef = np.linalg.lstsq(np.column_stack([np.ones(60), y, f]), d, rcond=None)[0]
    assert delta - part == pytest.approx(coef[1], abs=1e-10)  # Delta - frequency part = the class coefficient
    w = rng.integers(0, 3, size=60).astype(float)  # multiplicity weights (a bootstrap replicate)
    sw = np.sqrt(w)
    coef_w = np.linalg.lstsq(np.column_stack([np.ones(60), y, f]) * sw[:, None], d * sw, rcond=None)[0]
    assert (comp.class_difference(d, y, w) - comp.frequency_part(d, f, y, w))[0] == pytest.approx(coef_w[1], abs=1e-10)


def test_a_difference_that_collocation_strength_explains_is_caught_by_the_frequency_control():
    """Interaction driven by log p(B|A) alone, idioms being the stronger collocations: Delta is large, the part the
    covariate accounts for is nearly all of it, and the paired (adjusted) interval sits at 0."""
    rng = np.random.default_rng(2)
    group = np.repeat(np.arange(50), 2)
    y = np.tile([1.0, 0.0], 50)
    f = rng.normal(size=100) + 1.5 * y  # idioms: higher log p(noun | adjective)
    d = 0.8 * f + rng.normal(scale=0.2, size=100)  # no class effect beyond the covariate
    weights = comp.group_weights(group, 400, seed=0)
    labels = np.broadcast_to(y, weights.shape)
    delta = comp.class_difference(d, labels, weights)
    adjusted = delta - comp.frequency_part(d, f, labels, weights)
    assert np.quantile(delta, 0.025) > 0.8
    low, high = np.quantile(adjusted, [0.025, 0.975])
    assert low < 0 < high and high < 0.3


def test_permutations_and_resamples_keep_the_matched_groups():
    group = np.repeat([0, 1, 2, 3], [2, 2, 4, 2])
    perms = comp.within_group_permutations(group, 40, seed=0, offset=3)
    assert (group[perms] == group[None, :]).all()
    assert np.array_equal(perms, comp.within_group_permutations(group, 40, seed=0, offset=3))
    weights = comp.group_weights(group, 50, seed=0)
    for g in range(4):  # a group is resampled whole: its members share one weight
        assert (weights[:, group == g] == weights[:, group == g][:, :1]).all()
    assert weights.sum(axis=1).mean() == pytest.approx(10, rel=0.2)  # the sample size, on average


# ----------------------------------------------------------------------------------------- planted and null
def test_planted_idiom_interaction_is_found_beats_frequency_and_the_twin(pair, monkeypatch):
    model, twin = pair

    def fake(m, prompts, max_rows=512):
        return _fake_logprobs(3.0 if m is model else 0.0)(m, prompts, max_rows)

    monkeypatch.setattr(comp, "next_token_logprobs", fake)
    kind = registry()["composition"]
    out = kind.run(_context(model, twin), kind.Params(max_items=40))
    primary = _primary(out)
    assert len(primary.extra["excluded_token_merge"]) == 0  # byte-level BPE: the words never merge across the space
    assert primary.p_value < 0.01 and primary.ci_low > 0.5 and primary.effect_size > 1.0
    assert primary.extra["mean_abs_interaction_idiom"] > primary.extra["mean_abs_interaction_compositional"]
    untrained = next(r for r in out.results if r.control == "untrained")
    assert abs(untrained.effect_size) < 0.2  # no idioms planted in the twin: additive everywhere
    frequency = next(r for r in out.results if r.control == "frequency")
    paired = out.replicates[primary.key] - out.replicates[frequency.key]
    assert np.quantile(paired, 0.025) > 0.5  # the planted effect survives the frequency adjustment
    paired_twin = out.replicates[primary.key] - out.replicates[primary.key.counterpart("untrained")]
    assert np.quantile(paired_twin, 0.025) > 0.5


def test_null_battery_and_no_planted_signal_are_not_significant(pair, monkeypatch):
    model, twin = pair
    kind = registry()["composition"]
    monkeypatch.setattr(comp, "next_token_logprobs", _fake_logprobs(3.0))
    shuffled = _primary(kind.run(_context(model, twin, null_seed=4), kind.Params(max_items=40)))
    assert shuffled.extra["null_battery"] and shuffled.p_value > 0.05  # labels permuted within adjective groups
    monkeypatch.setattr(comp, "next_token_logprobs", _fake_logprobs(0.0))
    flat = _primary(kind.run(_context(model, twin), kind.Params(max_items=40)))
    assert flat.p_value > 0.05 and flat.ci_low < 0 < flat.ci_high and abs(flat.effect_size) < 0.1


def test_the_random_tiny_model_runs_the_real_measurement(pair):
    model, twin = pair
    kind = registry()["composition"]
    out = kind.run(_context(model, twin), kind.Params(max_items=12, top_k=5))
    primary = _primary(out)
    assert np.isfinite(primary.effect_size) and 0 < primary.p_value <= 1
    assert primary.extra["n_idiom"] == primary.extra["n_compositional"] == 6  # whole matched pairs
    assert {r.control for r in out.results} == {None, "frequency", "untrained"}


def test_pure_noise_is_significant_at_the_nominal_rate():
    """Calibration of the statistic's null: class labels carry nothing, 300 data sets of 55 matched pairs."""
    group = np.repeat(np.arange(55), 2)
    labels = np.tile([1.0, 0.0], 55)
    hits = []
    for seed in range(300):
        scalar = np.random.default_rng(seed).gamma(2.0, 1.0, size=110) + np.repeat(
            np.random.default_rng(1000 + seed).normal(size=55), 2)  # skewed, with a shared pair effect

        def draw(offset, count, scalar=scalar, seed=seed):
            return comp.class_difference(scalar, labels[comp.within_group_permutations(group, count, seed, offset)])

        out = sequential_null(draw, comp.class_difference(scalar, labels), SequentialPlan.fixed(199))
        hits.append(out.p_value[0] <= 0.05)
    rate = float(np.mean(hits))
    assert 0.01 <= rate <= 0.09, rate


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_say_what_to_fix():
    with pytest.raises(InvalidInputError, match="idioms"):
        comp.make_phrases(["red", "cold"], ["herring", "feet"], [True, True])  # the compositional class is empty
    with pytest.raises(InvalidInputError, match="single word"):
        comp.make_phrases(["red", "cold", "old", "big"], ["her ring", "feet", "hat", "box"], [1, 1, 0, 0])
    with pytest.raises(InvalidInputError, match="single word"):
        comp.make_phrases(["", "cold", "old", "big"], ["apple", "feet", "hat", "box"], [1, 1, 0, 0])
    with pytest.raises(InvalidInputError, match="exactly once"):
        comp.check_frames(["The term is a kind of"])
    with pytest.raises(InvalidInputError, match="frame alone"):
        comp.check_frames(["{slot}"])
    with pytest.raises(InvalidInputError, match="'idiom' class"):
        comp.load_phrases("vader_lexicon/polarity", None, 0)
    with pytest.raises(DatasetError, match="no bundled concept dataset"):
        comp.load_phrases("no_such_phrases", None, 0)
    with pytest.raises(InvalidInputError, match="max_items"):
        comp.load_phrases("phrase_composition", 2, 0)


def test_the_kind_refuses_other_primary_sites(pair):
    model, twin = pair
    kind = registry()["composition"]
    with pytest.raises(InvalidInputError, match="unembed"):
        kind.run(_context(model, twin, primary_site="layer.1"), kind.Params(max_items=12))


# ------------------------------------------------------------------------------------------ through the runner
SUITE = PLANTED_SUITE_HEADER + """\
[claims.N6b]
min_effect = 0.3
margin = 0.1
beat = ["frequency", "untrained"]

[[analysis]]
id = "n6b"
claim = "N6b"
kind = "composition"
primary = "unembed"
max_items = 40
"""


def _suite_run(folder, null_seed=None):
    from conceptspace.suite import parse_suite
    from conceptspace.suite._runner import run_suite

    outcome = run_suite(parse_suite(SUITE.format(model=folder), "planted.toml").for_run(), progress=False,
                        null_seed=null_seed)
    assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
    (verdict,) = [v for v in outcome.verdicts if v.claim == "N6b"]
    return outcome, verdict


def test_planted_composition_is_supported_through_the_runner_and_its_null_battery_is_not(tiny_model_dirs,
                                                                                          monkeypatch):
    from conceptspace.theory import SUPPORTED

    def fake(m, prompts, max_rows=512):  # idioms planted in the trained model only, never in a twin
        return _fake_logprobs(3.0 if m.control is None else 0.0)(m, prompts, max_rows)

    monkeypatch.setattr(comp, "next_token_logprobs", fake)
    outcome, verdict = _suite_run(tiny_model_dirs["llama"])
    (primary,) = [r for r in outcome.results if r.extra.get("role") == "primary"]
    assert verdict.verdict == SUPPORTED, verdict.reason
    assert {"frequency", "untrained"} <= set(primary.extra["paired"])
    assert {r.control for r in outcome.results} == {None, "frequency", "untrained", "spectrum_matched"}
    _, null_verdict = _suite_run(tiny_model_dirs["llama"], null_seed=1)
    assert null_verdict.verdict != SUPPORTED, null_verdict.reason
