"""Tokenizers and tiny checkpoints that tests build offline, one per way of writing digits.

The Hub is unreachable, so besides the real Qwen2.5 files we train three small tokenizers with
the ``tokenizers`` library on LLMTIME-like text, each standing for a family of real ones:

* ``digit_splitting``: SentencePiece-style (Metaspace dummy prefix) with every digit its own
  token, like Llama-2, Mistral, Phi-3 and Gemma -> the ``compact`` layout;
* ``digit_merging``: GPT-2-style byte-level BPE that merges digit runs ("25") but has ``" 5"``
  tokens -> the ``spaced`` layout;
* ``digit_runs``: Llama-3-style pre-tokenisation into runs of at most three digits that never
  take a leading space -> the ``digit_spaced`` layout.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from lora_forecast.llmtime import LLMTimeCodec, written_text
from lora_forecast.models.tokenizer import qwen_tokenizer, tokenizer_files_dir

WORDS = "the quick brown fox jumps over the lazy dog forecast series value time step".split()  # noqa: SIM905


def _corpus(layout: str) -> list[str]:
    rng = np.random.default_rng(0)
    codec = LLMTimeCodec(1.0)
    texts = [codec.encode(rng.uniform(0, 20, size=(20, 2))) for _ in range(200)]
    return texts + [written_text(t, layout) for t in texts] + [" ".join(WORDS)] * 10


@lru_cache(maxsize=1)
def digit_splitting() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "</s>"])
    tok.train_from_iterator(_corpus("compact"), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="</s>")


def _byte_level(pre: pre_tokenizers.PreTokenizer, layout: str, eos: str,
                size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=[eos],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(layout), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos)


@lru_cache(maxsize=1)
def digit_merging() -> PreTrainedTokenizerFast:
    return _byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False), "spaced",
                       "<|endoftext|>", 600)


@lru_cache(maxsize=1)
def digit_runs() -> PreTrainedTokenizerFast:
    split = pre_tokenizers.Split(
        Regex(r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+| ?\p{L}+"), behavior="isolated")
    pre = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                   use_regex=False)])
    return _byte_level(pre, "digit_spaced", "<|eot_id|>", 800)


TOKENIZERS = {"qwen2.5": qwen_tokenizer, "digit_splitting": digit_splitting,
              "digit_merging": digit_merging, "digit_runs": digit_runs}
LAYOUT_OF = {"qwen2.5": "compact", "digit_splitting": "compact", "digit_merging": "spaced",
             "digit_runs": "digit_spaced"}

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, max_position_embeddings=4096)
# family (HF model_type) -> (config class, extra settings, the tokenizer it is paired with)
FAMILIES: dict[str, tuple[type[PretrainedConfig], dict, str]] = {
    "qwen2": (Qwen2Config, dict(tie_word_embeddings=True), "qwen2.5"),
    "qwen3": (Qwen3Config, dict(head_dim=32, tie_word_embeddings=True), "digit_merging"),
    "llama": (LlamaConfig, dict(tie_word_embeddings=False), "digit_runs"),
    "mistral": (MistralConfig, dict(sliding_window=None), "digit_splitting"),
    "phi3": (Phi3Config, dict(), "digit_splitting"),
    "gemma": (GemmaConfig, dict(head_dim=16), "digit_splitting"),
    "gemma2": (Gemma2Config, dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=4096),
               "digit_merging"),
    # a 64-key window below the tests' 96-token windows, one sliding and one global layer
    "gemma3_text": (Gemma3TextConfig, dict(head_dim=16, query_pre_attn_scalar=16,
                                           sliding_window=64,
                                           layer_types=["sliding_attention", "full_attention"]),
                    "digit_splitting"),
}


def save_tiny_checkpoint(folder: Path, family: str, seed: int = 0) -> Path:
    """A random-init ``family`` model of :data:`SMALL` size and its tokenizer, saved as a
    pretrained checkpoint folder (what ``model.name_or_path`` points at)."""
    config_cls, extra, tokenizer_name = FAMILIES[family]
    tokenizer = TOKENIZERS[tokenizer_name]()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = config_cls(**SMALL, **extra, vocab_size=len(tokenizer), bos_token_id=pad,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    if tokenizer_name == "qwen2.5":
        for path in tokenizer_files_dir().iterdir():
            if path.is_file():
                shutil.copy(path, folder / path.name)
    else:
        tokenizer.save_pretrained(folder)
    return folder
