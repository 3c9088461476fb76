"""A tiny GGUF checkpoint written offline, for the GGUF model source's tests.

A random-init Qwen2 of :data:`built_tokenizers.SMALL` size with the digit-merging byte-level
BPE tokenizer is written in F32 with ``gguf.GGUFWriter`` under the names llama.cpp uses, found
by ``gguf``'s own ``TensorNameMap`` (what transformers' GGUF loader maps back), plus the GPT-2
style vocabulary, merges and special ids llama.cpp's converter writes. No download.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from built_tokenizers import SMALL, digit_merging
from transformers import AutoModelForCausalLM, Qwen2Config


def _tokenizer_fields(writer: gguf.GGUFWriter) -> None:
    tokenizer = digit_merging()
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL
                            for t in tokens])
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_bos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.eos_token_id)


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2 with its tokenizer as an F32 GGUF file at ``path``."""
    tokenizer = digit_merging()
    eos = tokenizer.eos_token_id
    config = Qwen2Config(**SMALL, vocab_size=len(tokenizer), tie_word_embeddings=True,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny-qwen2")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _tokenizer_fields(writer)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied: llama.cpp writes token_embd only
            continue
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")),
                          tensor.float().numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
