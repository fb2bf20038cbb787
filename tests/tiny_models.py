"""Tiny random models of three architectures, saved as ordinary Hugging Face folders.

Unit tests load them through ``load_model(folder)``, the same path a user's own checkpoint takes, in well under
a second. They share one small byte-level BPE tokenizer trained here, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "The capital of France is Paris and the capital of Spain is Madrid.",
    "A queen and a king walked into the old castle by the sea.",
    "Dogs bark, cats meow, and birds sing in the morning.",
    "Paris is a city in France. Berlin is a city in Germany.",
    "The quick brown fox jumps over the lazy dog.",
]


def make_tokenizer(folder: Path, *, bert_style: bool = False):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<pad>", "<eos>", "[CLS]", "[SEP]"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    if bert_style:
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<eos>",
        padding_side="left" if not bert_style else "right",
    )
    if bert_style:
        fast.cls_token, fast.sep_token = "[CLS]", "[SEP]"
    fast.save_pretrained(folder)
    return fast


def make_tiny_model(folder: Path, architecture: str, *, seed: int = 0) -> Path:
    """Write a tiny random ``llama``, ``gpt2`` or ``bert`` model with its tokenizer into ``folder``."""
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(folder, bert_style=architecture == "bert")
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = LlamaForCausalLM(config)
    elif architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_positions=64,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    elif architecture == "bert":
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = BertModel(config)
    else:
        raise ValueError(architecture)
    model.save_pretrained(folder)
    return folder
