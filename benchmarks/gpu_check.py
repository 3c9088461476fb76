"""GPU check, offline: the full-size Qwen2.5-0.5B shape (random weights) trained and forecasting.

    python -m benchmarks.gpu_check                       # a CUDA machine, no network needed
    python -m benchmarks.gpu_check --device cpu --layers 2 --steps 2 --batch 1 --context 32 \\
        --systems 2 --context-steps 4 --horizon 2        # the CI contract check (toy size)

Builds the random-init model with Qwen2.5-0.5B-Instruct's exact config (``--layers`` shrinks
only the depth) with bf16 weights (float32 on CPU, where bf16 is emulated), LoRA r on q/v and
the lm_head bias in float32, then times ``--steps`` optimiser steps of the numeric-head loss
under bf16 autocast (Adam, a random LLMTIME-alphabet batch ``--batch`` x ``--context``) and a
greedy, grammar-constrained forecast of ``--systems`` synthetic systems. Prints ONE JSON line:

- ``step_s``: median optimiser-step seconds (after one warm-up step); ``train_tokens_per_s``;
- ``peak_memory_gib``: the training phase's peak (CUDA allocator; CPU: resident high-water);
- ``mfu``: achieved FLOP/s over the device's dense bf16 peak (:data:`BF16_PEAK`; null when the
  device is not in the table). Achieved FLOPs are our exact count of the step with
  multiply-add = 2 FLOPs and autograd's backward (frozen weights get no weight gradient), the
  convention hardware peaks use, checked against ``FlopCounterMode`` in tests/test_full_size.py;
- ``forecast_tokens_per_s``: generated tokens / forecast seconds (prefill included).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import numpy as np
import torch

from benchmarks import training
from benchmarks.common import (
    GIB,
    LLMTIME_IDS,
    model_configs,
    phase_memory,
    pick_device,
    print_json_last,
    synchronize,
)
from benchmarks.forecasting import contexts_and_format
from lora_forecast.forecasting import ForecastOptions, forecast
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import loss_fn_for, numeric_logits_fn

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' datasheets. First
# substring match of torch.cuda.get_device_name() wins, so "H100 PCIe" precedes "H100".
BF16_PEAK: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


def bf16_peak(device: torch.device) -> tuple[str, float | None]:
    """(device name, dense bf16 peak FLOP/s or None when unknown or not a GPU)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in BF16_PEAK if key in name), None)


def build(opts: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The full-width random model: bf16 weights on CUDA, float32 on CPU; fp32 trainables."""
    model_cfg, lora_cfg = model_configs(opts.layers, opts.rank, lm_head_bias=True)
    model_cfg = dataclasses.replace(model_cfg, dtype="bf16" if device.type == "cuda" else "fp32")
    return build_model(model_cfg, lora_cfg).to(device)


def step_flops(opts: argparse.Namespace) -> float:
    """The step's FLOPs as autograd computes them (torch convention), as the training benchmark
    counts them."""
    return training.step_flops({**vars(opts), "lm_head_bias": True}, len(LLMTIME_IDS),
                               backward="autograd", convention="torch")


def train(opts: argparse.Namespace, model: torch.nn.Module, device: torch.device) -> dict:
    """``opts.steps`` timed optimiser steps (one untimed warm-up step first)."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids, mask, labels = (t.to(device) for t in training.random_batch(opts.batch, opts.context))
    loss_fn = loss_fn_for("numeric", LLMTIME_IDS)
    seconds, losses = [], []
    with phase_memory(device) as memory:
        for i in range(opts.steps + 1):
            synchronize(device)
            started = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_fn(model, ids, mask, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))  # synchronises
            if i > 0:
                seconds.append(time.perf_counter() - started)
    return {"step_s": statistics.median(seconds), "peak": memory.peak, "losses": losses}


def forecast_speed(opts: argparse.Namespace, model: torch.nn.Module) -> dict[str, Any]:
    """Greedy constrained forecast of ``opts.systems`` synthetic systems; tokens per second."""
    contexts, fmt = contexts_and_format(opts.systems, opts.context_steps)
    allowed = fmt.head_ids(include_eos=True)
    model.eval()
    started = time.perf_counter()
    # bf16 weights on CUDA as they are (no autocast): PEFT casts into its fp32 LoRA layers
    result = forecast(model, fmt, contexts,
                      ForecastOptions(opts.horizon, batch_size=opts.systems, max_int_digits=2),
                      logits_fn=numeric_logits_fn(model, allowed), progress=False)
    seconds = time.perf_counter() - started
    tokens = int(np.asarray(result.generated_tokens).sum())
    return {"forecast_s": seconds, "forecast_tokens": tokens,
            "forecast_tokens_per_s": tokens / seconds,
            "forecast_parsed": int(np.asarray(result.parsed).any(axis=1).sum())}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    device = pick_device(opts.device)
    torch.manual_seed(0)
    started = time.perf_counter()
    model = build(opts, device)
    trained = train(opts, model, device)
    flops = step_flops(opts)
    name, peak = bf16_peak(device)
    summary = {
        "device": name,
        "layers": opts.layers,
        "batch": opts.batch,
        "context": opts.context,
        "steps": opts.steps,
        "step_s": trained["step_s"],
        "train_tokens_per_s": opts.batch * opts.context / trained["step_s"],
        "peak_memory_gib": trained["peak"] / GIB,
        "step_flops": flops,
        "achieved_flops_per_s": flops / trained["step_s"],
        "bf16_peak_flops_per_s": peak,
        "mfu": None if peak is None else flops / trained["step_s"] / peak,
        "final_loss": trained["losses"][-1],
        **forecast_speed(opts, model),
    }
    summary["total_s"] = time.perf_counter() - started
    print_json_last(summary)
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (24 = real)")
    parser.add_argument("--steps", type=int, default=20, help="timed bf16 optimiser steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=512, help="tokens per training window")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank on q_proj and v_proj")
    parser.add_argument("--systems", type=int, default=10, help="systems forecast")
    parser.add_argument("--context-steps", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=10, help="forecast time steps")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
