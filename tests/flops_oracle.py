"""What ``torch.utils.flop_counter.FlopCounterMode`` sees while a real model runs: the oracle
of the FLOPs agreement tests (test_flops_torch_agreement.py, test_flops_families.py).

FlopCounterMode counts 2*m*n*k per mm/addmm/bmm/baddbmm (and SDPA kernels, which is why test
models use ``attn_implementation="eager"``: CPU SDPA's math path is invisible to it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lora_forecast.flops import Architecture, FlopsRequest, count_flops
from lora_forecast.forecasting.decoding import (
    DecodeOptions,
    StopRule,
    decode,
)
from lora_forecast.models.logits import full_head_logits_fn


def with_lora(model: nn.Module, rank: int, targets: str | Sequence[str],
              trainable: Callable[[str], bool] = lambda name: False) -> nn.Module:
    """``model`` wrapped with PEFT LoRA (dropout 0, alpha = r) on ``targets`` (a list, or
    ``"all-linear"``), every parameter frozen but the adapters and those ``trainable`` names."""
    if rank:
        targets = targets if isinstance(targets, str) else list(targets)
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                                 target_modules=targets))
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name or trainable(name))
    return model


def measure(fn: Callable[[], object]) -> int:
    """FLOPs FlopCounterMode counts while ``fn()`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def token_ids(vocab: int, batch: int, tokens: int) -> torch.Tensor:
    """A fixed random (batch, tokens) block of ids below ``vocab``."""
    return torch.randint(0, vocab, (batch, tokens), generator=torch.Generator().manual_seed(1))


def forward(model: nn.Module, ids: torch.Tensor) -> None:
    """One forward pass over every position, no autograd graph."""
    with torch.no_grad():
        model(input_ids=ids)


def train_step(model: nn.Module, ids: torch.Tensor) -> None:
    """Forward with the LM loss, then ``loss.backward()`` (the optimiser's update is not a
    matmul, so FlopCounterMode would not see it)."""
    model(input_ids=ids, labels=ids).loss.backward()


def generate(model: nn.Module, ids: torch.Tensor, new_tokens: int,
             use_cache: bool = True) -> None:
    """Greedy ``model.generate`` of exactly ``new_tokens`` tokens."""
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=0, use_cache=use_cache)
    assert out.shape[1] == ids.shape[1] + new_tokens


def cached_decode(model: nn.Module, ids: torch.Tensor, new_tokens: int, vocab: int) -> None:
    """The forecaster's own loop (lora_forecast.forecasting.decoding): one prefill with the
    head on the last position, then ``new_tokens - 1`` KV-cached single-token calls."""
    model.eval()
    stop = StopRule(new_tokens, semicolons=torch.zeros(vocab, dtype=torch.long),
                    horizon_steps=new_tokens + 1)
    result = decode(full_head_logits_fn(model), ids.tolist(), DecodeOptions(stop, pad_id=0))
    assert result.decode_steps == new_tokens - 1
    assert result.generated_tokens == [new_tokens] * ids.shape[0]


def predict(arch: Architecture, **kwargs) -> float:
    """The exact accounting's total in the torch convention (what FlopCounterMode counts)."""
    return count_flops(arch, FlopsRequest(**kwargs), accounting="exact",
                       convention="torch").total
