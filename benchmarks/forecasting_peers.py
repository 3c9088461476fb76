"""The forecasting benchmark's peers: what a user would pick (``model.generate()``) and the
reference study's loop. Both use the same LLMTIME grammar processor and greedy decoding as ours,
so all three must write identical tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessorList

from benchmarks.common import timer
from lora_forecast.forecasting import LLMTimeAlphabet, LLMTimeGrammar, LLMTimeLogitsProcessor
from lora_forecast.forecasting.decoding import left_pad
from lora_forecast.models.tokenizer import qwen_tokenizer


def grammar_and_prompts(contexts: np.ndarray, codec, horizon: int
                        ) -> tuple[LLMTimeGrammar, LLMTimeAlphabet, list[list[int]]]:
    """The forecaster's grammar (default ``max_int_digits``) and prompts, built the same way."""
    tokenizer = qwen_tokenizer()
    alphabet = LLMTimeAlphabet.from_tokenizer(tokenizer)
    grammar = LLMTimeGrammar(contexts.shape[2], codec.decimals, horizon, alphabet=alphabet,
                             eos_id=tokenizer.eos_token_id,
                             end_ids=(tokenizer.eos_token_id, tokenizer.pad_token_id))
    return grammar, alphabet, [alphabet.encode(codec.encode(c) + ";") for c in contexts]


@torch.no_grad()
def reference_forecast(model: torch.nn.Module, prompt: list[int], grammar: LLMTimeGrammar,
                       max_tokens: int | None = None) -> list[int]:
    """One system, no KV cache: recompute the whole sequence (full head) for every new token.

    Stops when the grammar is complete, or after ``max_tokens`` tokens (a timing sample).
    """
    ids = torch.tensor([prompt], device=model.device)  # (1, T)
    processor = LLMTimeLogitsProcessor(grammar, prompt_length=len(prompt))
    for _ in range(min(grammar.max_length, max_tokens or grammar.max_length)):
        logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]  # (1, V)
        token = processor(ids, logits).argmax(-1, keepdim=True)  # (1, 1)
        ids = torch.cat([ids, token], dim=1)
        processor.update(ids)
        if processor.done[0]:
            break
    return ids[0, len(prompt):].tolist()


def run_reference(model, contexts, codec, horizon: int,
                  max_tokens: int | None) -> tuple[list[str], float, int]:
    """Texts, wall seconds and generated tokens of the reference loop over ``contexts``."""
    grammar, alphabet, prompts = grammar_and_prompts(contexts, codec, horizon)
    texts, tokens = [], 0
    with timer(model.device) as elapsed:
        for prompt in prompts:
            generated = reference_forecast(model, prompt, grammar, max_tokens)
            tokens += len(generated)
            texts.append(alphabet.decode(generated))
    return texts, elapsed[0], tokens


def run_generate(model, contexts, codec, horizon: int) -> tuple[list[str], float, int]:
    """Texts, wall seconds and decode calls of ``model.generate()``: all systems in one batch,
    KV cache, greedy, the same grammar as a ``LogitsProcessor`` (full head, last position)."""
    grammar, alphabet, prompts = grammar_and_prompts(contexts, codec, horizon)
    tokenizer = qwen_tokenizer()
    input_ids, mask = left_pad(prompts, tokenizer.pad_token_id, model.device)
    width = input_ids.shape[1]
    processor = LLMTimeLogitsProcessor(grammar, prompt_length=width)
    with timer(model.device) as elapsed, torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                             use_cache=True, logits_processor=LogitsProcessorList([processor]),
                             max_new_tokens=grammar.max_length + 1,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    texts = [alphabet.decode([t for t in row if t not in grammar.end_ids])
             for row in out[:, width:].tolist()]
    return texts, elapsed[0], out.shape[1] - width - 1  # one call per new token but the first
