"""Jump-forward decoding: grammar-forced tokens ride along with the next decode call.

Greedy: the same tokens as one call per token, in fewer calls. Sampling: the distribution of
whole forecasts matches the exact one, enumerated from a fake model by hand (no decode loop).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.forecasting.decoding import Sampling
from lora_forecast.forecasting.forecaster import default_jump_forward
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, LLMTimeGrammar, TokenTable
from lora_forecast.models.build import build_model
from lora_forecast.models.tokenizer import qwen_tokenizer
from tests.conftest import decode_with, forecast_with

QWEN = TokenTable.from_tokenizer(qwen_tokenizer())
ZERO, ONE, DOT, COMMA, SEMI = (QWEN.ids[symbol] for symbol in "01.,;")
VOCAB = 32
# Qwen's ids for the unsigned symbols (all below 32), and id 0 as EOS/pad so that a 32-row fake
# vocabulary holds them all
TABLE = dataclasses.replace(QWEN, ids={s: QWEN.ids[s] for s in "0123456789.,;"}, eos_id=0,
                            pad_id=0)


def preference(ids: list[int], positions: list[int]) -> tuple[float, float]:
    """The fake model's logits for '0' and '1' after a (real-token) history."""
    code = sum(t * (p + 1) for t, p in zip(ids, positions, strict=True))
    return math.sin(code * 0.37) * 1.5, math.cos(code * 0.91) * 1.5


def fake_logits_fn(input_ids, attention_mask, position_ids, history):
    """Only '0'/'1' are finite digits; logits depend on every real token and its position,
    so a forced token left out of the cache, or fed at a wrong position, changes them."""
    if history is not None:
        input_ids = torch.cat([history[0], input_ids], dim=1)
        position_ids = torch.cat([history[1], position_ids], dim=1)
    out = torch.full((input_ids.shape[0], VOCAB), float("-inf"))
    out[:, [DOT, COMMA, SEMI]] = 0.0
    for row in range(input_ids.shape[0]):
        real = attention_mask[row].bool()
        out[row, [ZERO, ONE]] = torch.tensor(preference(input_ids[row, real].tolist(),
                                                        position_ids[row, real].tolist()))
    return out, (input_ids, position_ids)


def exact_distribution(prompt: list[int], grammar: LLMTimeGrammar) -> dict[tuple[int, ...], float]:
    """P(sequence) for every sequence of the grammar over '0'/'1', by enumeration."""
    choices = sum(1 for _ in range(grammar.horizon_steps * grammar.n_vars)) * (
        1 + grammar.decimals)  # one digit before the '.' (max_int_digits=1), then decimals
    out = {}
    for digits in itertools.product((ZERO, ONE), repeat=choices):
        seq, prob, state, pending = [], 1.0, grammar.start, list(digits)
        while not grammar.is_done(state):
            allowed = grammar.allowed(state)
            token = allowed[0] if len(allowed) == 1 else pending.pop(0)
            if len(allowed) > 1:
                history = prompt + seq
                a, b = preference(history, list(range(len(history))))
                p_one = 1 / (1 + math.exp(a - b))
                prob *= p_one if token == ONE else 1 - p_one
            seq.append(token)
            state = grammar.advance(state, token)
        out[tuple(seq)] = prob
    return out


# The sampling tests' forecast: one step of two numbers "d.d" after this prompt
GRAMMAR = LLMTimeGrammar(n_vars=2, decimals=1, horizon_steps=1, max_int_digits=1, tokens=TABLE)
PROMPT = [ONE, DOT, ZERO, COMMA, ZERO, DOT, ONE, SEMI]


def assert_follows_the_exact_distribution(rows: list[list[int]]) -> None:
    """The sequences sampled after :data:`PROMPT` against :func:`exact_distribution`."""
    exact = exact_distribution(PROMPT, GRAMMAR)
    counts = dict.fromkeys(exact, 0)
    for tokens in rows:
        counts[tuple(tokens)] += 1  # KeyError: a sequence outside the grammar
    observed = np.array([counts[s] for s in exact])
    expected = np.array([exact[s] for s in exact]) * len(rows)
    assert expected.sum() == pytest.approx(len(rows))
    assert chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("jump_forward", [True, False])
def test_sampling_distribution_is_unchanged(jump_forward):
    result = decode_with(fake_logits_fn, [PROMPT], pad_id=0, max_new_tokens=GRAMMAR.max_length,
                         grammar=GRAMMAR, sampling=Sampling(greedy=False), repeats=4000,
                         generator=torch.Generator().manual_seed(0), jump_forward=jump_forward)
    assert_follows_the_exact_distribution(result.tokens)
    # "d.d,d.d": 4 chosen digits -> 3 calls; without jump-forward, 7 tokens -> 6 calls
    assert result.decode_steps == (3 if jump_forward else 6)


def test_greedy_forecasts_are_identical_in_fewer_calls():
    model = build_model(ModelConfig(kind="tiny"), LoraConfig()).eval()
    rng = np.random.default_rng(1)
    contexts = [rng.uniform(0.0, 30.0, size=(t, 2)) for t in (3, 6, 4)]
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=10.0), qwen_tokenizer())
    runs = {jf: forecast_with(model, fmt, contexts, horizon_steps=3,
                         batch_size=3, max_int_digits=2, progress=False, jump_forward=jf)
            for jf in (True, False)}
    assert runs[True].texts == runs[False].texts
    # the same tokens pass through the model, so the metered FLOPs (which count tokens) agree
    np.testing.assert_array_equal(runs[True].generated_tokens, runs[False].generated_tokens)
    longest = int(runs[False].generated_tokens.max())
    assert runs[False].decode_calls == longest - 1
    # 3 steps x 2 numbers: 5 separators always forced, so at least 5 calls fewer
    assert runs[True].decode_calls <= longest - 1 - 5
    assert runs[True].parsed.all()


def test_jump_forward_defaults_to_the_device_where_it_saves_time():
    """Unset, it is on for CUDA (latency-bound calls) and off on a CPU (calls cost per column):
    a CPU forecast then makes one call per generated token but the last."""
    assert default_jump_forward(torch.device("cuda")) is True
    assert default_jump_forward(torch.device("cpu")) is False
    model = build_model(ModelConfig(kind="tiny"), LoraConfig()).eval()
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=10.0), qwen_tokenizer())
    fc = forecast_with(model, fmt, [np.full((3, 2), 4.0)], horizon_steps=2, batch_size=1,
                  max_int_digits=2, progress=False)
    assert fc.decode_calls == int(fc.generated_tokens.max()) - 1
