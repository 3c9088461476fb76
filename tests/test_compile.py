"""train.compile / eval.compile: compiled where it works (equal outputs), eager where it does not
(one log line)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, TokenTable
from lora_forecast.models import compiled as compiled_module
from lora_forecast.models.build import build_model
from lora_forecast.models.compiled import compiled
from lora_forecast.models.numeric_head import loss_fn_for
from lora_forecast.models.tokenizer import qwen_tokenizer
from tests.conftest import forecast_with

LLMTIME_IDS = TokenTable.from_tokenizer(qwen_tokenizer()).head_ids()  # '0'..'9', '.', ',', ';'


def test_no_c_compiler_means_eager_and_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(compiled_module.shutil, "which", lambda name: None)

    def fn(x):
        return x + 1

    with caplog.at_level(logging.WARNING):
        assert compiled(fn, "train.compile", "cpu") is fn
    assert len(caplog.records) == 1 and "train.compile" in caplog.text


def test_a_failing_compile_falls_back_to_eager_once(monkeypatch, caplog):
    def broken(fn):
        def call(*args):
            raise RuntimeError("backend exploded")
        return call

    monkeypatch.setattr(compiled_module.torch, "compile", broken)
    calls = []

    def fn(x):
        calls.append(x)
        return x * 2

    wrapped = compiled(fn, "eval.compile", "cuda")  # no compiler check off the CPU
    with caplog.at_level(logging.WARNING):
        assert [wrapped(1), wrapped(2)] == [2, 4]
    assert calls == [1, 2] and len(caplog.records) == 1 and "backend exploded" in caplog.text


@pytest.mark.slow  # inductor compiles for minutes on 2 shared cores
def test_compiled_training_loss_and_forecasts_equal_the_eager_ones():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="tiny"), LoraConfig()).train()
    loss_fn = loss_fn_for("numeric", LLMTIME_IDS)
    ids = torch.tensor(LLMTIME_IDS)[torch.randint(13, (2, 32))]
    batch = (ids, torch.ones_like(ids), ids.clone())
    eager = loss_fn(model, *batch)
    eager.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    loss = compiled(loss_fn, "train.compile")(model, *batch)
    loss.backward()
    torch.testing.assert_close(loss, eager)
    for p, g in zip([p for p in model.parameters() if p.requires_grad], grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)

    contexts = [np.random.default_rng(0).uniform(0, 30, size=(4, 2))]
    options = dict(horizon_steps=2, max_int_digits=2, progress=False)
    model.eval()
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=10.0), qwen_tokenizer())
    plain = forecast_with(model, fmt, contexts, **options)
    fast = forecast_with(model, fmt, contexts, compile=True, **options)
    assert fast.texts == plain.texts
