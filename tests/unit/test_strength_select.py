"""C5's strength grid: chosen on held-out prompts under a declared off-target KL cap (issue 14).

The planted model (tests/unit/planted.py) has identity blocks, so the activation at any layer is the last token's
embedding and the scale of a prompt set is the median embedding norm of its last words; v moves the target score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conceptspace.analyses import _causal_runs as causal_runs
from conceptspace.analyses.causal._inputs import as_targets, unit_direction
from conceptspace.analyses.causal._strength_select import candidate_grid, is_monotone, select_strengths
from conceptspace.errors import InvalidInputError
from conceptspace.models import load_model
from conceptspace.theory import NOT_TESTABLE, SUPPORTED
from tests.unit import planted
from tests.unit.test_planted_verdicts import c5_concepts, primary_of, run, use_concepts, verdict_of

EVALUATION = planted.prompts(planted.NEUTRAL[:8])
HELD_OUT = planted.prompts(planted.NEUTRAL[8:14])
OFF_TARGET = planted.prompts(planted.NEUTRAL[32:38])
#: smaller than the battery's: on this model the off-target prompts' next-token distribution is the target words'
#: (v moves them on every prompt), so the mean KL passes 0.5 nats at 0.25 (0.66) and 0.125 is the largest under it
CANDIDATES = (0.03125, 0.0625, 0.125, 0.25)


def _quoted(words: list[str]) -> str:
    return "[" + ", ".join(f'"{w}"' for w in words) + "]"


def c5_selected_body(*, prompts: list[str] = EVALUATION, held_out: list[str] = HELD_OUT, kl_cap: float = 0.5) -> str:
    """The battery's C5 design on the planted model: the grid chosen on held-out prompts under ``kl_cap``."""
    return ('dataset = "vader_lexicon/polarity"\nlayer = 0.5\n'
            f"positive = {_quoted(planted.GOOD)}\nnegative = {_quoted(planted.BAD)}\n"
            f"prompts = {_quoted(prompts)}\nheld_out_prompts = {_quoted(held_out)}\n"
            f"off_target_prompts = {_quoted(OFF_TARGET)}\nkl_cap = {kl_cap}\n"
            f"candidate_strengths = {list(CANDIDATES)}\nn_random = 4\n")


@pytest.fixture(scope="module")
def planted_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    info = planted.make_planted_model(Path(tmp_path_factory.mktemp("select")))
    return info, load_model(str(info.folder))


@pytest.fixture(scope="module")
def damaged_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """planted.py's model whose every unembedding row also reads v (random weights, 8x the target words'): a step
    along v then moves every prompt's next-token distribution, and the KL grows steeply with the strength."""
    from transformers import LlamaForCausalLM

    info = planted.make_planted_model(Path(tmp_path_factory.mktemp("damaged")))
    model = LlamaForCausalLM.from_pretrained(info.folder)
    reads = torch.randn(model.config.vocab_size, generator=torch.Generator().manual_seed(3)) * 8.0
    with torch.no_grad():
        model.lm_head.weight += reads[:, None] * info.v[None, :]
    model.save_pretrained(info.folder)
    return info, load_model(str(info.folder))


def _select(model, v, held_out=HELD_OUT, **kwargs):  # type: ignore[no-untyped-def]
    options = {"site": "layer.0", "candidates": CANDIDATES, "kl_cap": 0.5}
    options.update(kwargs)
    target = as_targets(model, (planted.GOOD, planted.BAD))
    return select_strengths(model, unit_direction(v, model.d_model), held_out, OFF_TARGET, target, **options)


def test_candidate_grid_is_symmetric_with_two_magnitudes():
    assert candidate_grid(0.5) == [-0.5, -0.25, 0.25, 0.5]
    assert is_monotone([-2.0, -1.0, 1.0, 2.0]) and not is_monotone([-2.0, -3.0, 1.0, 2.0])


def test_a_held_out_prompt_sets_the_scale_and_can_change_the_grid(planted_model):
    info, model = planted_model
    base = _select(model, info.v, kl_cap=1e6)
    assert base.chosen == len(CANDIDATES) - 1  # no cap in effect: the largest candidate
    assert list(base.kl) == sorted(base.kl) and base.kl[0] < base.kl[-1]  # KL grows with the strength
    # held-out prompts ending in concept words (embedding + 3 v: a larger norm): the median
    # norm, hence every absolute strength, grows; with a cap at candidate 1's KL the grid must shrink
    larger = [f"the word is pos{i}" for i in range(len(HELD_OUT))]
    cap = base.kl[1]
    before, after = _select(model, info.v, kl_cap=cap), _select(model, info.v, held_out=larger, kl_cap=cap)
    assert after.scale > before.scale
    assert before.chosen == 1 and after.chosen is not None and after.chosen < 1
    assert after.kl[1] > cap


def test_the_evaluation_prompts_do_not_move_the_grid_and_run_at_its_strengths(tmp_path, monkeypatch, planted_model):
    """Two runs whose evaluation prompts differ in one prompt record the same selection; the evaluation's own
    off-target KL at the concept (same absolute strengths, same off-target prompts) equals the selection's."""
    info, _ = planted_model
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    first = primary_of(run(info.folder, "C5", c5_selected_body()))
    other = [*EVALUATION[:-1], "the word is pos3"]  # a different last prompt with a different norm
    second = primary_of(run(info.folder, "C5", c5_selected_body(prompts=other)))
    chosen = first.extra["strength_selection"]
    assert chosen == second.extra["strength_selection"]
    assert list(first.extra["alphas_relative"]) == list(chosen["chosen_grid"]) == list(second.extra["alphas_relative"])
    assert first.extra["activation_scale"] == pytest.approx(chosen["held_out_scale"])
    assert first.statistic != second.statistic  # the evaluation did change
    kl_eval = max(first.extra["off_target_kl_concept"])
    assert kl_eval <= chosen["kl_cap"]
    index = chosen["candidates"].index(chosen["chosen_max"])
    assert kl_eval == pytest.approx(chosen["off_target_kl_per_candidate"][index], rel=1e-4, abs=1e-6)
    assert isinstance(first.extra["evaluation_monotone"], bool)


def test_a_model_whose_off_target_kl_explodes_gets_a_grid_below_the_explosion(planted_model, damaged_model):
    info, model = planted_model
    _, damaged = damaged_model
    clean, hurt = _select(model, info.v), _select(damaged, info.v)
    assert clean.chosen == 2  # measured KL 0.17 at 0.125, 0.66 at 0.25
    assert hurt.kl[-1] > 10 * clean.kl[-1] and hurt.kl[-1] > 0.5  # the damage shows at the top
    assert hurt.chosen is not None and hurt.chosen < clean.chosen
    assert hurt.kl[hurt.chosen] <= 0.5 < hurt.kl[hurt.chosen + 1]
    assert max(abs(s) for s in hurt.grid) < CANDIDATES[hurt.chosen + 1]


def test_nothing_under_the_cap_is_not_testable_as_run(tmp_path, monkeypatch, planted_model):
    info, _ = planted_model
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    outcome = run(info.folder, "C5", c5_selected_body(kl_cap=1e-12))
    verdict, primary = verdict_of(outcome, "C5"), primary_of(outcome)
    assert verdict.verdict == NOT_TESTABLE, verdict.reason
    assert "kl_cap" in primary.extra["not_testable"] and "smaller candidate_strengths" in primary.extra["not_testable"]
    assert primary.extra["strength_selection"]["chosen_grid"] is None
    assert list(primary.extra["alphas_relative"]) == candidate_grid(CANDIDATES[0])  # shown at the smallest, flagged


def test_planted_direction_is_supported_under_the_selected_grid(tmp_path, monkeypatch, planted_model):
    info, _ = planted_model
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    outcome = run(info.folder, "C5", c5_selected_body())
    verdict, primary = verdict_of(outcome, "C5"), primary_of(outcome)
    assert verdict.verdict == SUPPORTED, verdict.reason
    assert primary.extra["evaluation_monotone"] is True
    assert primary.extra["strength_selection"]["chosen_max"] == 0.125
    controls = [r for r in outcome.results if r.control == "untrained" and r.method == primary.method]
    assert controls and all("strength_selection" in r.extra for r in controls)
    assert list(controls[0].extra["alphas_relative"]) == list(primary.extra["alphas_relative"])  # the model's grid


def test_an_inert_direction_under_the_selected_grid_is_not_supported(tmp_path, monkeypatch, planted_model):
    """u, which nothing reads, costs no KL (the largest candidate is chosen) and moves nothing beyond placebos."""
    info, _ = planted_model
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.NULL_POS, planted.NULL_NEG))
    outcome = run(info.folder, "C5", c5_selected_body())
    verdict, primary = verdict_of(outcome, "C5"), primary_of(outcome)
    assert verdict.verdict != SUPPORTED, verdict.reason
    assert not primary.significant
    assert primary.extra["strength_selection"]["chosen_max"] == CANDIDATES[-1]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"held_out": []}, "held_out_prompts must be a non-empty"),
    ({"kl_cap": 0.0}, "kl_cap is the mean off-target KL"),
    ({"kl_cap": -1.0}, "must be > 0"),
    ({"candidates": []}, "candidate_strengths must list"),
    ({"candidates": [0.5, -1.0]}, "distinct, finite and > 0"),
])
def test_bad_selection_input_says_what_to_fix(planted_model, kwargs, message):
    info, model = planted_model
    with pytest.raises(InvalidInputError, match=message):
        _select(model, info.v, **kwargs)


@pytest.mark.parametrize(("extra", "message"), [
    ('strengths = [-1.0, 1.0]\n', "either strengths"),
    ('held_out_prompts = []\n', "held_out_prompts is empty"),
])
def test_bad_suite_parameters_say_what_to_fix(tmp_path, monkeypatch, planted_model, extra, message):
    info, _ = planted_model
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    body = c5_selected_body().replace(f"held_out_prompts = {_quoted(HELD_OUT)}\n", "") + extra
    if "strengths" in extra:
        body += f"held_out_prompts = {_quoted(HELD_OUT)}\n"
    with pytest.raises(AssertionError, match=message):
        run(info.folder, "C5", body)


def test_held_out_prompts_overlapping_the_evaluation_are_refused(tmp_path, monkeypatch, planted_model):
    info, _ = planted_model
    use_concepts(monkeypatch, causal_runs, c5_concepts(tmp_path, planted.POSITIVE, planted.NEGATIVE))
    with pytest.raises(AssertionError, match="disjoint"):
        run(info.folder, "C5", c5_selected_body(held_out=[*HELD_OUT, EVALUATION[0]]))


def test_selection_kl_is_finite_and_non_negative(planted_model):
    info, model = planted_model
    selection = _select(model, info.v)
    assert np.all(np.isfinite(selection.kl)) and min(selection.kl) >= 0
    assert selection.n_held_out == len(HELD_OUT) and selection.n_off_target == len(OFF_TARGET)
