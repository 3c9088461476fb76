"""Forecast batches sized by free memory (``eval.batch_size=null``), and per-row sampling streams
that make a sampled forecast independent of the batch it ran in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.flops import Architecture
from lora_forecast.forecasting import forecaster as forecaster_module
from lora_forecast.forecasting.caches import concat_rows
from lora_forecast.forecasting.decoding import Sampling, next_tokens
from lora_forecast.forecasting.rows import (
    MEMORY_FRACTION,
    RowMemory,
    row_memory,
    systems_per_batch,
)
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat
from lora_forecast.models.build import build_model
from lora_forecast.models.logits import full_head_logits_fn
from lora_forecast.models.tokenizer import qwen_tokenizer
from tests.conftest import forecast_with

FMT = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=10.0), qwen_tokenizer())
OPTIONS = dict(horizon_steps=2, max_int_digits=2, progress=False)


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(kind="tiny"), LoraConfig()).eval()


@pytest.fixture(scope="module")
def contexts() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(0.0, 30.0, size=(t, 2)) for t in (3, 6, 4, 5, 2, 7, 3)]


def test_the_kv_bound_is_the_cache_the_model_really_holds(model) -> None:
    """After a prefill of width 9 and one call of 3 more tokens, every layer's keys and values
    together take exactly ``kv_cache_per_row`` bytes per row for 12 tokens."""
    rows, width, more = 3, 9, 3
    logits_fn = full_head_logits_fn(model)
    ids = torch.randint(0, 100, (rows, width))
    mask = torch.ones_like(ids)
    _, cache = logits_fn(ids, mask, torch.arange(width).expand(rows, -1), None)
    step = torch.randint(0, 100, (rows, more))
    mask = torch.ones(rows, width + more, dtype=torch.long)
    _, cache = logits_fn(step, mask, torch.arange(width, width + more).expand(rows, -1), cache)
    held = sum(t.nbytes for layer in cache.layers for t in (layer.keys, layer.values))
    bound = row_memory(Architecture.from_hf_config(model.config), width, more, 4)
    assert held == rows * bound.kv_cache_per_row


def test_systems_per_batch_is_the_planned_fraction_over_a_systems_rows() -> None:
    """A system of 2 samples holds 2 x 10 bytes of cache + 3 of logits = 23 bytes, and a chunk
    of 2 prompts being prefilled 2 x 5: half of 112 bytes, less 10, holds 2 systems; half of
    111 holds 1; a machine too small for one still runs one."""
    memory = RowMemory(kv_cache_per_row=10, logits_per_prompt=3, prefill_per_prompt=5)
    assert MEMORY_FRACTION == 0.5
    assert systems_per_batch(memory, samples=2, free_bytes=112, prefill_chunk=2) == 2
    assert systems_per_batch(memory, samples=2, free_bytes=111, prefill_chunk=2) == 1
    assert systems_per_batch(memory, samples=1, free_bytes=1, prefill_chunk=1) == 1


def test_unsized_batches_hold_what_memory_allows_and_forecast_like_fixed_ones(
    model, contexts, monkeypatch
) -> None:
    """With free memory for 3 systems (at the widest prompt), 7 systems run as 3 + 3 + 1 rows,
    with the greedy forecasts of one-system batches."""
    width = max(len(FMT.prompt(c)) for c in contexts)
    grammar = FMT.grammar(2, OPTIONS["horizon_steps"], OPTIONS["max_int_digits"])
    memory = row_memory(Architecture.from_hf_config(model.config), width, grammar.max_length, 4)
    per_system = memory.kv_cache_per_row + memory.logits_per_prompt
    prefilling = 7 * memory.prefill_per_prompt  # 1024 tokens hold all 7 short prompts
    monkeypatch.setattr(forecaster_module, "free_memory_bytes",
                        lambda device: int((3.5 * per_system + prefilling) / MEMORY_FRACTION))
    sized = forecast_with(model, FMT, contexts, batch_size=None, **OPTIONS)
    assert [b.rows for b in sized.batches] == [3, 3, 1]
    single = forecast_with(model, FMT, contexts, batch_size=1, **OPTIONS)
    assert sized.texts == single.texts
    np.testing.assert_array_equal(sized.samples, single.samples)


@pytest.mark.parametrize("jump_forward", [False, True])
def test_a_sampled_forecast_does_not_depend_on_its_batch(model, contexts, jump_forward) -> None:
    """Each (system, sample) row draws from its own seeded stream: one system per batch or all
    seven in one gives the same samples; another seed gives others."""
    sampled = dict(OPTIONS, num_samples=3, temperature=1.5, top_p=0.95, seed=5,
                   jump_forward=jump_forward)
    apart = forecast_with(model, FMT, contexts, batch_size=3, **sampled)
    together = forecast_with(model, FMT, contexts, batch_size=21, **sampled)
    assert [b.rows for b in apart.batches] == [3] * 7 and [b.rows for b in together.batches] == [21]
    assert apart.texts == together.texts
    np.testing.assert_array_equal(apart.samples, together.samples)
    other = forecast_with(model, FMT, contexts, batch_size=21, **dict(sampled, seed=6))
    assert other.texts != together.texts
    assert any(len(set(t)) > 1 for t in together.texts)  # a system's samples do differ


def test_a_stream_per_row_must_match_the_rows() -> None:
    logits = torch.zeros(3, 5)
    streams = [torch.Generator().manual_seed(i) for i in range(2)]
    with pytest.raises(ValueError, match="2 streams for 3 rows"):
        next_tokens(logits, Sampling(greedy=False), streams)


def test_without_a_model_an_unsized_batch_takes_every_system() -> None:
    """An injected ``logits_fn`` has no architecture to size rows by: one batch of all."""
    def logits_fn(input_ids, attention_mask, position_ids, cache):
        return torch.zeros(input_ids.shape[0], 151936), cache

    done = forecast_with(None, FMT, [np.ones((3, 2))] * 5, logits_fn=logits_fn, batch_size=None,
                    **OPTIONS)
    assert [b.rows for b in done.batches] == [5]


@pytest.mark.parametrize("num_samples", [1, 2])
def test_prefilling_in_chunks_changes_nothing_but_the_calls(model, contexts, num_samples):
    """Prompts prefilled 2 at a time (their caches joined row-wise) forecast exactly as one
    prefill of all 7: greedy, and sampled with shared prefills."""
    calls: list[int] = []
    full = full_head_logits_fn(model)

    def counting(input_ids, attention_mask, position_ids, cache):
        if cache is None:
            calls.append(input_ids.shape[0])
        return full(input_ids, attention_mask, position_ids, cache)

    options = dict(OPTIONS, num_samples=num_samples, temperature=1.5, top_p=0.95,
                   batch_size=7 * num_samples)
    width = max(len(FMT.prompt(c)) for c in contexts)
    chunked = forecast_with(model, FMT, contexts, logits_fn=counting, prefill_tokens=2 * width + 1,
                       **options)
    assert calls == [2, 2, 2, 1]
    whole = forecast_with(model, FMT, contexts, prefill_tokens=None, **options)
    assert chunked.texts == whole.texts
    np.testing.assert_array_equal(chunked.samples, whole.samples)


def test_joined_caches_equal_one_prefills_cache(model) -> None:
    """concat_rows of two chunks' DynamicCaches holds the very keys and values one prefill of
    all rows computes (same padded width), and opaque tensor caches join batch first."""
    ids = torch.randint(0, 100, (5, 6))
    mask = torch.ones_like(ids)
    mask[3, :2] = 0  # a left-padded row
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    fn = full_head_logits_fn(model)
    _, whole = fn(ids, mask, pos, None)
    _, head = fn(ids[:2], mask[:2], pos[:2], None)
    _, tail = fn(ids[2:], mask[2:], pos[2:], None)
    joined = concat_rows([head, tail])
    for a, b in zip(joined.layers, whole.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys)
        torch.testing.assert_close(a.values, b.values)
    history = concat_rows([torch.zeros(2, 3), torch.ones(1, 3)])
    assert history.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert concat_rows([(torch.zeros(1, 2), 7), (torch.ones(2, 2), 7)])[0].shape == (3, 2)
