"""Tiny Llamas with a planted answer for N5 (self-mapping) and N7 (filtering vs aggregation).

Both use a word-level vocabulary of ``WORDS`` (so any sentence of these words is a valid context).

* ``make_self_map_model``: tied, orthonormal token embeddings; attention outputs zero; block 0's MLP maps the
  token vector e_t to e_sigma(t) (sigma a fixed derangement of the words), block 1 is the identity. So the model
  predicts sigma(last token), its context vector (ln_f of the last block) is a multiple of the predicted token's
  embedding, and fed back as an input it acts exactly like that token: S = 1, while the last input token's
  embedding (lexical) acts like the wrong token.
* ``make_filter_model``: the MLP is exactly affine (gate weight 0 with a large bias: silu(10) is constant), the
  attention has sharp content-dependent patterns (scaled query/key weights): attention is the only data-dependent
  sublayer, the planted positive of N7.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [f"w{i}" for i in range(40)]
SPECIALS = ["<unk>", "<pad>", "<eos>"]
D_MODEL = 64


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(folder)


def sentences(n: int, length: int = 8, seed: int = 0) -> list[str]:
    """``n`` seeded sentences of ``length`` planted words."""
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (length,), generator=g)) for _ in range(n)]


def _config(**changes: object):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig

    base = dict(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=D_MODEL, intermediate_size=D_MODEL,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                pad_token_id=1, eos_token_id=2, bos_token_id=2, rms_norm_eps=1e-6)
    base.update(changes)
    return LlamaConfig(**base)


def make_self_map_model(folder: Path, seed: int = 0) -> Path:
    from transformers import LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    vocab = len(SPECIALS) + len(WORDS)
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(D_MODEL, D_MODEL, generator=g)).Q
    E = Q[:vocab].contiguous()  # orthonormal rows
    first = len(SPECIALS)
    sigma = list(range(vocab))
    for k in range(len(WORDS)):  # a derangement of the words: w_k -> w_{k+7 mod 40}
        sigma[first + k] = first + (k + 7) % len(WORDS)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_config(tie_word_embeddings=True))
    scale = D_MODEL ** 0.5  # RMSNorm of a unit vector multiplies it by sqrt(d)
    silu = scale * torch.sigmoid(torch.tensor(scale))
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(E)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        mlp = model.model.layers[0].mlp
        mlp.gate_proj.weight.zero_()
        mlp.up_proj.weight.zero_()
        mlp.gate_proj.weight[:vocab] = E
        mlp.up_proj.weight[:vocab] = E
        down = torch.zeros(D_MODEL, D_MODEL)
        for t in range(vocab):
            down[:, t] = (E[sigma[t]] - E[t]) / (scale * silu)
        mlp.down_proj.weight.copy_(down)
    model.save_pretrained(folder)
    return folder


def make_filter_model(folder: Path, seed: int = 0, sharpness: float = 6.0) -> Path:
    from transformers import LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_config(mlp_bias=True, initializer_range=0.2))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(sharpness)
            layer.self_attn.k_proj.weight.mul_(sharpness)
            layer.mlp.gate_proj.weight.zero_()
            layer.mlp.gate_proj.bias.fill_(10.0)  # silu(10) ~ 10 for every input: the MLP is affine
    model.save_pretrained(folder)
    return folder


#: the [suite] table of a planted run through the runner (one twin seed and the spectrum twin, small B); a test
#: appends its claim and analysis and formats ``{model}`` (a tiny model's folder)
PLANTED_SUITE_HEADER = """\
[suite]
name = "planted"
model = "{model}"
seed = 0
twin_seeds = [0]
spectrum_twin = true
n_permutations = 99
max_permutations = 1599
n_bootstrap = 200

"""
