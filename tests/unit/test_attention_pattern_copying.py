"""N6's positive control on a tiny model that really copies: a hand-built two-head induction circuit.

The other N6 tests plant models that do not copy (a bag of tokens, sharp random attention), where the positive
control can only say "not informative", and force the control's failure by monkeypatching. Here a GPT-2 with
exact orthonormal subspaces (token, position, previous token, answer; all orthogonal to the all-ones vector, so
LayerNorm only rescales) copies repeated random tokens the way induction heads do:

* block 2, a previous-token head: queries read the position, keys read the position shifted by one, values move
  the token into the "previous token" subspace. Its pattern depends on positions only.
* block 3, an induction head: queries read the current token mapped into the previous-token subspace, keys read
  that subspace, values move the attended token into the answer subspace, which the unembedding reads. Its
  pattern depends on the tokens: it attends to the position after the previous occurrence of the current token.

So the copying advantage (loss on a permuted second copy minus loss on the exact one) is large; the mean pattern
of block 3 must remove it when the copy offset varies between sequences and keep it when the offset is fixed.
That is the control passing for the right reason, which a run can only show on a model that copies.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conceptspace.analyses import _attention_pattern as ap
from conceptspace.analyses.kinds import attention_pattern
from conceptspace.models import load_model
from conceptspace.suite import parse_suite
from conceptspace.suite._runner import run_suite
from conceptspace.theory import SUPPORTED
from tests.unit.planted_ops import SPECIALS, WORDS, _tokenizer, sentences
from tests.unit.test_attention_pattern import SUITE as N6_SUITE

D = 256
POSITIONS = 64


def make_induction_model(folder: Path, seed: int = 0, confidence: float = 0.25) -> Path:
    """The GPT-2 of the module docstring (4 blocks: 0-1 the identity, 2 previous-token, 3 induction).

    ``confidence`` scales the unembedding: at 0.25 the copied token's logit is ~3.5 above the others (advantage
    2.8 nats, like a language model's); at 1.0 (~14) the check still passes, but the fixed-offset arm keeps only
    51% (rule: 50%), because a confidently wrong prediction on the permuted copy inflates the clean advantage
    and the mean pattern's blur makes those predictions less wrong (measured 2026-12-03: kept 0.96 / 0.89 / 0.77
    / 0.63 / 0.51 at confidence 0.15 / 0.25 / 0.35 / 0.5 / 1.0; the varied arm keeps 0.22-0.24 throughout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    V = len(SPECIALS) + len(WORDS)
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(D, D, generator=g)
    raw[:, 0] = 1.0  # the first basis vector spans the all-ones direction; the rest are orthogonal to it
    basis = torch.linalg.qr(raw).Q[:, 1:].T  # (D - 1, D) orthonormal rows with zero mean
    tok, pos = basis[:V], basis[V:V + POSITIONS]
    prev, answer = basis[V + POSITIONS:2 * V + POSITIONS], basis[2 * V + POSITIONS:3 * V + POSITIONS]
    config = GPT2Config(vocab_size=V, n_positions=POSITIONS, n_embd=D, n_layer=4, n_head=1,
                        tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        layer_norm_epsilon=1e-6, pad_token_id=1, eos_token_id=2, bos_token_id=2)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    # LayerNorm of a zero-mean x is sqrt(D) x / |x|: 16 / sqrt(2) after the embeddings (token + position) and
    # 16 / sqrt(3) once the previous token is written; the value maps undo that scale.
    scale_2, scale_3 = D ** 0.5 / 2 ** 0.5, D ** 0.5 / 3 ** 0.5
    with torch.no_grad():
        model.transformer.wte.weight.copy_(tok)
        model.transformer.wpe.weight.copy_(pos)
        for block in model.transformer.h:
            for module in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                module.bias.zero_()
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()  # no MLP writes anything
        identity = torch.eye(D)
        heads = {
            2: (4.0 * pos.T @ pos, pos[:-1].T @ pos[1:], tok.T @ prev / scale_2),  # query pos p, key pos s + 1
            3: (6.0 * tok.T @ prev, prev.T @ prev, 3.0 * tok.T @ answer / scale_3),  # query token, key previous
        }
        for index, (query, key, value) in heads.items():
            attn = model.transformer.h[index].attn
            attn.c_attn.weight.copy_(torch.cat([query, key, value], dim=1))  # Conv1D: x @ W
            attn.c_proj.weight.copy_(identity)
        model.lm_head.weight.copy_(confidence * answer)
    model.save_pretrained(folder)
    return folder


#: test_attention_pattern's planted N6 suite, at the previous-token head's block and with the control's blocks named
SUITE = N6_SUITE.replace("layers = [1]\n", "layers = [2]\n") + 'positive_control = "{control}"\nevery_block = false\n'


@pytest.fixture(scope="module")
def induction_folder(tmp_path_factory):
    return make_induction_model(tmp_path_factory.mktemp("induction"))


@pytest.fixture
def planted_text(monkeypatch):
    monkeypatch.setattr(attention_pattern, "load_concepts", lambda name: SimpleNamespace(texts=sentences(80)))


def test_the_hand_built_model_copies_repeated_tokens(induction_folder):
    """The circuit works: at full confidence, on an exact second copy the model predicts the next token almost
    surely (loss < 0.1 nats), on a permuted one it is confidently wrong."""
    model = load_model(str(make_induction_model(induction_folder.parent / "confident", confidence=1.0)))
    exact, permuted, mask = ap.induction_sequences(model, 8, 16, 0, min_period=4, max_period=8)
    with torch.inference_mode():
        losses = []
        for ids in (exact, permuted):
            logits = model.hf_model(input_ids=torch.as_tensor(ids)).logits[:, :-1]
            nll = -torch.log_softmax(logits.double(), -1).gather(-1, torch.as_tensor(ids)[:, 1:, None])[..., 0]
            losses.append(ap.sequence_losses(nll.numpy(), mask))
    assert losses[0].max() < 0.1 and losses[1].mean() > 5.0


@pytest.mark.parametrize("control", ["after_primary", "all"])
def test_the_positive_control_passes_on_a_model_that_copies(induction_folder, planted_text, control):
    """The mean pattern of the induction head (alone, or with every block's) removes varied-offset copying and
    keeps fixed-offset copying: the check "passed", not "not informative", and the previous-token head at the
    primary block (a pattern of positions only) is recovered by its mean pattern: supported."""
    outcome = run_suite(parse_suite(SUITE.format(model=induction_folder, control=control), "planted.toml").for_run(),
                        progress=False)
    assert all(r.status == "ok" for r in outcome.records), [r.reason for r in outcome.records]
    primary = next(r for r in outcome.results if r.extra["role"] == "primary")
    check = primary.extra["copy_check"]
    assert check["state"] == "passed", check
    assert check["advantage_clean_nats"] > 2 * ap.COPY_MIN_NATS  # the clean model copies
    assert check["kept"] < 0.35 and check["fixed_offset_kept"] > 0.8  # well inside the rule (COPY_KEEP_MAX 0.5)
    (verdict,) = outcome.verdicts
    assert primary.site == "layer.2" and verdict.verdict == SUPPORTED, verdict.reason


def test_a_blind_edit_on_a_model_that_copies_makes_the_claim_not_testable(induction_folder, planted_text,
                                                                         monkeypatch):
    """The same copying model with the control's edit replaced by no edit at all (the clean attention kept):
    varied-offset copying survives the "mean pattern", so the check fails for real, not by a patched number."""
    real_plan = ap.control_plan
    monkeypatch.setattr(ap, "control_plan", lambda blocks: (ap.CONTROL, "record", real_plan(blocks)[2]))
    outcome = run_suite(parse_suite(SUITE.format(model=induction_folder, control="after_primary"),
                                    "planted.toml").for_run(), progress=False)
    (verdict,) = outcome.verdicts
    assert verdict.verdict == "not testable as run" and "positive control failed" in verdict.reason
    assert np.isfinite(next(r for r in outcome.results if r.extra["role"] == "primary").statistic)
