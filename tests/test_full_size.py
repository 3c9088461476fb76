"""Full-size checks on the real Qwen2.5-0.5B shape (random weights): slow, deselected by default.

Run with ``python -m pytest -m slow``. They need ~6 GiB of memory and a few minutes on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.flops import Architecture, count_flops
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import full_head_loss, numeric_head_loss

pytestmark = pytest.mark.slow

QWEN = {"hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_kv_heads": 2,
        "intermediate_size": 4864}
ALPHABET = (15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 13, 11, 26)


@pytest.fixture(scope="module")
def qwen_shaped() -> torch.nn.Module:
    cfg = ModelConfig(kind="tiny", attn_implementation="eager", lm_head_bias=True, **QWEN)
    return build_model(cfg, LoraConfig(rank=8))


def test_full_shape_matches_the_preset_architecture(qwen_shaped) -> None:
    base = qwen_shaped.get_base_model()
    assert Architecture.from_hf_config(base.config) == Architecture.qwen2_5_0_5b()
    frozen = {id(p): p.numel() for n, p in base.named_parameters() if not p.requires_grad}
    assert sum(frozen.values()) == 494_032_768  # Qwen2.5-0.5B, tied embeddings counted once


def test_full_shape_train_step_agrees_with_torch_counter(qwen_shaped) -> None:
    ids = torch.randint(15, 27, (1, 64), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        qwen_shaped(input_ids=ids, labels=ids).loss.backward()
    predicted = count_flops(Architecture.qwen2_5_0_5b(), accounting="exact", mode="train",
                            context_tokens=64, lora_rank=8, lm_head_bias=True,
                            convention="torch", backward="autograd").total
    assert predicted == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_full_shape_numeric_loss_is_the_renormalised_full_loss(qwen_shaped) -> None:
    ids = torch.tensor([ALPHABET * 8])
    with torch.no_grad():
        logits = qwen_shaped(input_ids=ids).logits[0, :-1][:, list(ALPHABET)].float()
        targets = torch.tensor([ALPHABET.index(t) for t in ids[0, 1:].tolist()])
        expected = torch.nn.functional.cross_entropy(logits, targets)
        numeric = numeric_head_loss(qwen_shaped, ids, None, ids, ALPHABET)
        full = full_head_loss(qwen_shaped, ids, None, ids)
    assert float(numeric) == pytest.approx(float(expected), rel=1e-4)
    assert float(full) > float(numeric)  # the full softmax spreads mass over 151,936 rows
