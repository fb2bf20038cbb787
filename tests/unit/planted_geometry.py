"""Tiny word-level Llamas whose weights carry (or lack) the structure a concept-space claim names, and concept
files in their own words, for the verdict-level planted tests (tests/unit/test_planted_verdicts.py).

Every model here has a word-level vocabulary (so any sentence of its words is a valid text, and every word is one
token), untied input and output embeddings set by the test, and blocks that are the identity on the residual
stream unless a test plants something in them (attention and MLP output projections zeroed): the activation of a
word at any block is then its input embedding, and what the test plants is all there is to find.

Word names are letters only: the analogy protocol's candidate vocabulary keeps alphabetic words only.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

SPECIALS = ["<unk>", "<pad>", "<eos>"]
#: the words of the templates (``the word is {word}``) and sentence frames
FILLER = ["the", "word", "is", "a"]
TEMPLATE = "the word is {word}"


def word_names(prefix: str, n: int) -> list[str]:
    """``n`` distinct alphabetic words ``prefix`` + two letters (``cataa``, ``catab``, ...)."""
    letters = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=2))
    return [prefix + s for s in itertools.islice(letters, n)]


def _tokenizer(folder: Path, vocab_words: Sequence[str]) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *vocab_words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(folder)


def write_model(
    folder: Path,
    words: Sequence[str],
    *,
    d_model: int = 32,
    embed: torch.Tensor | None = None,
    unembed: torch.Tensor | None = None,
    edit: Callable[[Any], None] | None = None,
    n_layers: int = 2,
    seed: int = 0,
    initializer_range: float = 0.02,
) -> Path:
    """Write a tiny Llama over ``FILLER + words`` into ``folder``.

    ``embed`` / ``unembed``: (len(words), d_model) rows for the words (other tokens keep random N(0, 1) rows);
    ``None`` keeps random rows there too. Blocks are the identity (output projections zero) and ``edit(model)``
    may then plant weights in them. Rows are unit-variance (not the 0.02 of an initialiser) so the RMSNorms see
    ordinary scales. ``initializer_range`` goes into the config, which is what an untrained twin is drawn from
    (the planted weights themselves are set explicitly).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    vocab_words = [*FILLER, *words]
    _tokenizer(folder, vocab_words)
    vocab = len(SPECIALS) + len(vocab_words)
    first = len(SPECIALS) + len(FILLER)
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(vocab, d_model, generator=g)
    U = torch.randn(vocab, d_model, generator=g)
    if embed is not None:
        E[first:] = embed
    if unembed is not None:
        U[first:] = unembed
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=2 * d_model,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=64, tie_word_embeddings=False, pad_token_id=1, eos_token_id=2,
                         bos_token_id=2, rms_norm_eps=1e-6, initializer_range=initializer_range)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(E)
        model.lm_head.weight.copy_(U)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        if edit is not None:
            edit(model)
    model.save_pretrained(folder)
    return folder


def orthonormal(d_model: int, k: int, seed: int) -> torch.Tensor:
    """(k, d_model) orthonormal rows."""
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d_model, k, generator=g)).Q.T.contiguous()


def noise(n: int, d_model: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """(n, d_model) seeded N(0, scale^2) rows: the part of a word's vector that carries no planted structure."""
    return scale * torch.randn(n, d_model, generator=torch.Generator().manual_seed(seed))


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """A concept file in the model's own words, for ``load_user_concepts`` (the user-file code path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
