"""The model build logs the parameter counts a reader can check by hand."""

from __future__ import annotations

import logging

import pytest

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.models.build import build_model

# Tiny Qwen2 (conf/model/tiny.yaml): D 64, 2 layers, 4 heads of 16, 2 KV heads (K/V width 32),
# MLP 128, vocab 151936, tied lm_head (counted once).
V, D, KV, MLP = 151936, 64, 32, 128
LAYER = (D * D + D) + 2 * (D * KV + KV) + D * D + 3 * D * MLP + 2 * D  # q,k,v (bias), o, MLP, norms
BASE = V * D + 2 * LAYER + D  # embeddings, layers, final norm


@pytest.mark.parametrize(("bias", "rank", "targets", "lora"), [
    (False, 4, ["q_proj", "v_proj"], 2 * 4 * ((D + D) + (D + KV))),
    (True, 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
     2 * 16 * (2 * (D + D) + 2 * (D + KV) + 3 * (D + MLP))),
])
def test_logged_parameter_counts_by_hand(caplog, bias, rank, targets, lora) -> None:
    with caplog.at_level(logging.INFO, logger="lora_forecast.models.build"):
        build_model(ModelConfig(kind="tiny", lm_head_bias=bias),
                    LoraConfig(rank=rank, target_modules=targets))
    trainable = lora + (V if bias else 0)
    total = BASE + trainable
    assert f"trainable parameters: {trainable} of {total} " in caplog.text
