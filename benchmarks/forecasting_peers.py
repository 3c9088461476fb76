"""The forecasting benchmark's peers: what a user would pick (``model.generate()``) and the
reference study's loop. Both use the same LLMTIME grammar processor and greedy decoding as ours,
so all three must write identical tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessorList

from benchmarks.common import timer
from lora_forecast.forecasting.decoding import left_pad
from lora_forecast.llmtime import LLMTimeFormat, LLMTimeGrammar, LLMTimeLogitsProcessor


def grammar_and_prompts(contexts: np.ndarray, fmt: LLMTimeFormat,
                        horizon: int) -> tuple[LLMTimeGrammar, list[list[int]]]:
    """The forecaster's grammar (its default ``max_int_digits=3``) and prompts."""
    return fmt.grammar(contexts.shape[2], horizon, 3), [fmt.prompt(c) for c in contexts]


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


def run_reference(model, contexts, fmt: LLMTimeFormat, horizon: int,
                  max_tokens: int | None) -> tuple[list[str], float, int]:
    """Texts, wall seconds and generated tokens of the reference loop over ``contexts``."""
    grammar, prompts = grammar_and_prompts(contexts, fmt, horizon)
    texts, tokens = [], 0
    with timer(model.device) as elapsed:
        for prompt in prompts:
            generated = reference_forecast(model, prompt, grammar, max_tokens)
            tokens += len(generated)
            texts.append(fmt.decode_ids(generated))
    return texts, elapsed[0], tokens


def run_generate(model, contexts, fmt: LLMTimeFormat, horizon: int) -> tuple[list[str], float, int]:
    """Texts, wall seconds and decode calls of ``model.generate()``: all systems in one batch,
    KV cache, greedy, the same grammar as a ``LogitsProcessor`` (full head, last position)."""
    grammar, prompts = grammar_and_prompts(contexts, fmt, horizon)
    eos, pad = fmt.tokens.eos_id, fmt.tokens.pad_id
    input_ids, mask = left_pad(prompts, pad, model.device)
    width = input_ids.shape[1]
    processor = LLMTimeLogitsProcessor(grammar, prompt_length=width)
    with timer(model.device) as elapsed, torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                             use_cache=True, logits_processor=LogitsProcessorList([processor]),
                             max_new_tokens=grammar.max_length + 1,
                             eos_token_id=eos, pad_token_id=pad)
    texts = [fmt.decode_ids([t for t in row if t not in grammar.end_ids])
             for row in out[:, width:].tolist()]
    return texts, elapsed[0], out.shape[1] - width - 1  # one call per new token but the first
