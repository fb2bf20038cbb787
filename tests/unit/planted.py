"""A tiny Llama with a planted causal direction ``v`` and a planted null direction ``u``, for the causal tests.

Construction (d = 32, 2 blocks, word-level vocabulary, untied embeddings):

* every block's attention output and MLP down projections are zero, so each block is the identity on the
  residual stream and the activation at any layer is the token's embedding;
* token embeddings have no component along ``v`` or ``u``, except the concept words: ``pos*`` carry ``+c v``,
  ``neg*`` carry ``-c v``, ``nul*`` carry ``+c u``, ``nil*`` carry ``-c u``;
* the unembedding has no component along ``u`` anywhere; the target words ``good*`` have ``+k v`` and
  ``bad*`` have ``-k v`` on top of random rows.

So moving along ``v`` raises log P(good) - log P(bad) (the test must detect it), and moving along ``u``
changes only the activation norm, an even function of the step (the test must not detect it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

N_CONCEPT = 16
POSITIVE = [f"pos{i}" for i in range(N_CONCEPT)]
NEGATIVE = [f"neg{i}" for i in range(N_CONCEPT)]
NULL_POS = [f"nul{i}" for i in range(N_CONCEPT)]
NULL_NEG = [f"nil{i}" for i in range(N_CONCEPT)]
NEUTRAL = [f"neutral{i}" for i in range(40)]
GOOD = [f"good{i}" for i in range(6)]
BAD = [f"bad{i}" for i in range(6)]
TEMPLATE_WORDS = ["the", "word", "is", "a", "say"]
WORDS = TEMPLATE_WORDS + POSITIVE + NEGATIVE + NULL_POS + NULL_NEG + NEUTRAL + GOOD + BAD
D_MODEL = 32


@dataclass(frozen=True)
class Planted:
    folder: Path
    v: torch.Tensor
    u: torch.Tensor


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<unk>", "<pad>", "<eos>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(folder)


def make_planted_model(folder: Path, *, c: float = 3.0, k: float = 1.0, seed: int = 0) -> Planted:
    """Write the planted model into ``folder`` and return its directions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    vocab = 3 + len(WORDS)
    ids = {w: 3 + i for i, w in enumerate(WORDS)}
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(D_MODEL, 2, generator=generator)).Q
    v, u = basis[:, 0].contiguous(), basis[:, 1].contiguous()

    def off_vu(m: torch.Tensor) -> torch.Tensor:
        return m - (m @ v)[:, None] * v - (m @ u)[:, None] * u

    embed = off_vu(torch.randn(vocab, D_MODEL, generator=generator))
    for words, vector in ((POSITIVE, c * v), (NEGATIVE, -c * v), (NULL_POS, c * u), (NULL_NEG, -c * u)):
        for w in words:
            embed[ids[w]] += vector
    unembed = torch.randn(vocab, D_MODEL, generator=generator)
    unembed = unembed - (unembed @ u)[:, None] * u
    for words, sign in ((GOOD, 1.0), (BAD, -1.0)):
        for w in words:
            row = off_vu(torch.randn(1, D_MODEL, generator=generator))[0]
            unembed[ids[w]] = row + sign * k * v

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=D_MODEL,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        pad_token_id=1,
        eos_token_id=2,
        bos_token_id=2,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(embed)
        model.lm_head.weight.copy_(unembed)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    model.save_pretrained(folder)
    return Planted(folder, v, u)


def prompts(words: list[str]) -> list[str]:
    """One prompt per word, ending in it (the edited last token is the word)."""
    return [f"the word is {w}" for w in words]
