"""Training-step benchmark: plain transformers + PEFT (full head) vs our numeric-head step.

    python -m benchmarks.training [--layers 24] [--batch 4] [--context 512] [--steps 2]
                                  [--rank 8] [--warmup 1] [--lm-head-bias] [--device cpu]
                                  [--variants reference,numeric,numeric+bf16,...] [--profile]

Both variants use the full-width Qwen2.5-0.5B shape (D 896, 14 heads, 2 KV heads, MLP 4864,
vocab 151936, tied; ``--layers`` shrinks the depth only), random init, LoRA r on q/v, Adam, the
same random LLMTIME-alphabet batch, each in a fresh subprocess:

- reference: ``model(input_ids, attention_mask, labels=labels).loss.backward(); opt.step()``
  (logits [B, T, 151936], softmax over the whole vocabulary in forward and backward);
- numeric:   :func:`lora_forecast.models.numeric_head.numeric_head_loss` (backbone once, logits
  over the 13 LLMTIME ids only, for labelled positions only), same optimizer;
- numeric+bf16: the same numeric-head step under ``torch.autocast(bfloat16)`` (mixed
  precision; fp32 master weights, loss and optimizer);
- numeric+ckpt: the numeric step with gradient checkpointing (``train.gradient_checkpointing``:
  less activation memory, one more layer forward of FLOPs, counted);
- numeric+compile: the numeric step's loss under ``torch.compile`` (``train.compile``; the
  compilation happens in the ``--warmup`` steps, off the clock).

The machine's ceiling is measured before and after the variants, the higher counting
(:mod:`benchmarks.ceiling`: fp32 matmul FLOP/s at the step's own GEMM shapes, bf16 only where
native, and copy bandwidth); a bf16 variant is skipped,
with a line saying so, where bf16 is emulated. Timing is best of ``--steps`` (after
``--warmup``), as the CPU is usually shared. Memory is the training phase's peak above the
post-build baseline (weights excluded). Prints a table; the LAST line is one JSON object:
``speedup`` and ``memory_ratio`` (numeric / reference, same fp32 precision), ``flops_ratio``
(exact accounting), ``mfu`` (the numeric step's FLOPs as autograd computes them, torch
convention, per second, over ``peak_flops``), ``speedup_bf16`` and ``memory_ratio_bf16``
(numeric+bf16 / fp32 reference), ``tokens_per_step`` of the LLMTIME form and, when
``--layers`` < 24, conservative extrapolations to 24.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from benchmarks.ceiling import Ceiling, measure, print_ceiling, remeasure
from benchmarks.common import (
    FORMS,
    GIB,
    LLMTIME_IDS,
    QWEN_0_5B,
    benchmark_format,
    in_fresh_process,
    model_configs,
    phase_memory,
    pick_device,
    print_json_last,
    print_table,
    timer,
    tokens_per_step,
)
from lora_forecast.flops import Architecture, FlopsRequest, count_flops
from lora_forecast.models.build import (
    QWEN2_5_VOCAB_ROWS,
    build_model,
    enable_gradient_checkpointing,
    tiny_qwen2_config,
)
from lora_forecast.models.compiled import compiled
from lora_forecast.models.numeric_head import loss_fn_for


def reference_loss(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """The plain transformers path: full-vocabulary logits and HF's causal-LM loss."""
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


# variant -> (loss function, options: bf16 autocast, gradient checkpointing, torch.compile)
NUMERIC = loss_fn_for("numeric", LLMTIME_IDS)
VARIANTS: dict[str, tuple[Any, frozenset[str]]] = {
    "reference": (reference_loss, frozenset()),
    "numeric": (NUMERIC, frozenset()),
    "numeric+bf16": (NUMERIC, frozenset({"bf16"})),
    "numeric+ckpt": (NUMERIC, frozenset({"ckpt"})),
    "numeric+compile": (NUMERIC, frozenset({"compile"})),
}


def random_batch(batch: int, context: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, labels) [B, T] of random LLMTIME-alphabet tokens."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(LLMTIME_IDS), (batch, context), generator=gen)
    ids = torch.tensor(LLMTIME_IDS)[pick]  # (B, T)
    return ids, torch.ones_like(ids), ids.clone()


def run_variant(opts: dict[str, Any], variant: str) -> dict[str, Any]:
    """One variant in this (fresh) process: build, warm up, time ``steps`` optimiser steps."""
    device = pick_device(opts["device"])
    torch.manual_seed(0)
    model_cfg, lora_cfg = model_configs(opts["layers"], opts["rank"], opts["lm_head_bias"])
    model = build_model(model_cfg, lora_cfg).to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = [t.to(device) for t in random_batch(opts["batch"], opts["context"])]
    loss_fn, options = VARIANTS[variant]
    bf16 = "bf16" in options
    if "ckpt" in options:
        enable_gradient_checkpointing(model)
    if "compile" in options:
        loss_fn = compiled(loss_fn, variant, device.type)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, *batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    times, losses = [], []
    with phase_memory(device) as mem:
        for _ in range(opts["warmup"]):
            step()
        for _ in range(opts["steps"]):
            with timer(device) as elapsed:
                losses.append(step())
            times.append(elapsed[0])
    matmul_share = profile_matmul_share(step, device) if opts["profile"] else None
    # best of N (as timeit): the CPU is shared, so the least-disturbed step is the estimate
    best = min(times)
    return {"variant": variant, "seconds_per_step": best, "mean_seconds_per_step":
            sum(times) / len(times), "tokens_per_s": opts["batch"] * opts["context"] / best,
            "peak_bytes": mem.peak,
            "growth_bytes": mem.growth, "start_bytes": mem.start, "loss": losses[-1],
            "threads": torch.get_num_threads(), "device": str(device),
            "matmul_share": matmul_share}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_matmul_share(step, device: torch.device) -> float:
    """Share of one profiled step's operator self-time spent in matrix multiplies.

    A high share means the step is bound by GEMMs that both variants run alike (apart from
    the head), so fusing the elementwise rest could not change the ratio much.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
    events = prof.key_averages()

    def self_time(event) -> float:
        return event.self_device_time_total if cuda else event.self_cpu_time_total

    total = sum(self_time(e) for e in events)
    return sum(self_time(e) for e in events if e.key in MATMUL_OPS) / total if total else 0.0


def step_flops(opts: dict[str, Any], head_vocab: int | None, backward: str = "rule",
               convention: str = "coursework", checkpointing: bool = False) -> float:
    """Exact-accounting FLOPs of one training step (``head_vocab=None``: the full head).

    ``backward="rule"`` is the budget's 2 x forward; ``"autograd"`` what autograd computes with a
    frozen base (input gradients, and weight gradients of LoRA/bias only). ``convention="torch"``
    counts what ``FlopCounterMode`` counts (2mnp per matmul): the numerator of MFU.
    """
    model_cfg, _ = model_configs(opts["layers"], opts["rank"], opts["lm_head_bias"])
    arch = Architecture.from_hf_config(tiny_qwen2_config(model_cfg))
    request = FlopsRequest("train", opts["context"], batch_size=opts["batch"], steps=1,
                           lora_rank=opts["rank"], lora_targets=("q_proj", "v_proj"),
                           lm_head_bias=opts["lm_head_bias"], head_vocab=head_vocab,
                           backward=backward, gradient_checkpointing=checkpointing)
    report = count_flops(arch, request, accounting="exact", convention=convention)
    return report.total


def gemm_shapes(opts: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The step's big matmuls (m x k @ k x n): q/o, MLP up/gate, down, the full-vocabulary head."""
    tokens, (d, i) = opts["batch"] * opts["context"], (QWEN_0_5B["hidden_size"],
                                                       QWEN_0_5B["intermediate_size"])
    return [(tokens, d, d), (tokens, d, i), (tokens, i, d), (tokens, d, QWEN2_5_VOCAB_ROWS)]


def mfu(opts: dict[str, Any], results: dict[str, dict], ceiling: Ceiling) -> dict[str, float]:
    """Per variant: model FLOPs/s (autograd's real FLOPs, torch convention) and their MFU."""
    out = {}
    for name, r in results.items():
        head = None if name == "reference" else len(LLMTIME_IDS)
        ckpt = "ckpt" in VARIANTS[name][1]
        rate = step_flops(opts, head, "autograd", "torch", ckpt) / r["seconds_per_step"]
        peak = ceiling.peak_flops_bf16 if "bf16" in name else ceiling.peak_flops
        out[f"{name}_model_flops_per_s"] = rate
        out[f"{name}_mfu"] = rate / peak
    return out


def extrapolate_depth(results: dict[str, dict[str, Any]], ours_1: dict[str, Any], layers: int,
                      full: int = 24) -> dict[str, float]:
    """Speedups and memory ratio at ``full`` layers from ``layers``-deep measurements.

    Costs are linear in depth and the variants differ by the head only. Time: a variant costs
    L x its per-layer time, taken as its time / L (this charges its small fixed costs to every
    layer, so speedups are lower bounds); the reference costs the same plus its head, measured
    as reference - numeric. Memory has real fixed costs (allocator, one layer's transient
    backward buffers), so its per-layer slope comes from ``ours_1``, the numeric step at one
    layer: (numeric - numeric@1) / (L - 1).
    """
    ref, ours = results["reference"], results["numeric"]
    head = ref["seconds_per_step"] - ours["seconds_per_step"]
    ref_full = head + full * ours["seconds_per_step"] / layers
    out = {}
    for name, r in results.items():
        if name != "reference":
            key = "speedup" + name.removeprefix("numeric").replace("+", "_")
            out[f"{key}_at_{full}_layers_extrapolated"] = ref_full / (
                full * r["seconds_per_step"] / layers)
    slope = (ours["growth_bytes"] - ours_1["growth_bytes"]) / (layers - 1)
    extra = (full - layers) * slope
    out[f"memory_ratio_at_{full}_layers_extrapolated"] = (
        (ours["growth_bytes"] + extra) / (ref["growth_bytes"] + extra))
    return out


def _row(r: dict[str, Any], flops: float) -> tuple[str, ...]:  # flops: rule backward
    return (r["variant"], f"{r['seconds_per_step']:.2f}", f"{r['mean_seconds_per_step']:.2f}",
            f"{r['tokens_per_s']:.0f}",
            f"{r['growth_bytes'] / GIB:.2f}", f"{r['peak_bytes'] / GIB:.2f}",
            f"{flops:.3e}", f"{r['loss']:.4f}")


def _parse(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (full: 24)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--steps", type=int, default=2, help="timed optimiser steps")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank on q_proj/v_proj")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--lm-head-bias", action="store_true", help="trainable lm_head bias")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--profile", action="store_true",
                        help="profile one more step per variant: share of time in matmuls")
    parser.add_argument("--form", default="decimal", choices=FORMS,
                        help="LLMTIME text form (reported as tokens per time step)")
    opts = vars(parser.parse_args(argv))
    opts["variants"] = [v for v in opts["variants"].split(",") if v]
    unknown = sorted(set(opts["variants"]) - set(VARIANTS))
    if unknown or "reference" not in opts["variants"] or "numeric" not in opts["variants"]:
        parser.error(f"--variants: need reference and numeric, from {list(VARIANTS)}")
    return opts


def _summary(opts: dict[str, Any], results: dict[str, dict], flops: dict[str, float],
             one_layer: dict[str, Any] | None, ceiling: Ceiling) -> dict[str, Any]:
    ref, ours = results["reference"], results["numeric"]
    rates = mfu(opts, results, ceiling)
    summary = {
        "speedup": ours["tokens_per_s"] / ref["tokens_per_s"],
        "mfu": rates["numeric_mfu"],
        "peak_flops": ceiling.peak_flops,
        "tokens_per_step": tokens_per_step(benchmark_format(number_format=opts["form"])),
        "form": opts["form"],
        "memory_ratio": ours["growth_bytes"] / ref["growth_bytes"],
        "flops_ratio": flops["numeric"] / flops["reference"],
        "flops_ratio_autograd": (step_flops(opts, len(LLMTIME_IDS), "autograd")
                                 / step_flops(opts, None, "autograd")),
        "peak_rss_ratio": ours["peak_bytes"] / ref["peak_bytes"],
    }
    for name, r in results.items():  # numeric+X vs the fp32 reference: speedup_X, memory_ratio_X
        if name.startswith("numeric+"):
            suffix = name.removeprefix("numeric+")
            summary[f"speedup_{suffix}"] = r["tokens_per_s"] / ref["tokens_per_s"]
            summary[f"memory_ratio_{suffix}"] = r["growth_bytes"] / ref["growth_bytes"]
    if one_layer is not None:
        summary.update(extrapolate_depth(results, one_layer, opts["layers"]))
    summary.update(rates)
    summary.update(ceiling.as_dict())
    for name, r in results.items():
        if r["matmul_share"] is not None:
            summary[f"{name}_matmul_share"] = r["matmul_share"]
        summary[f"{name}_tokens_per_s"] = r["tokens_per_s"]
        summary[f"{name}_peak_growth_gib"] = r["growth_bytes"] / GIB
    summary.update(reference_flops_per_step=flops["reference"],
                   numeric_flops_per_step=flops["numeric"], device=ref["device"],
                   threads=ref["threads"])
    summary.update({k: opts[k] for k in ("layers", "batch", "context", "rank", "steps")})
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parse(argv)
    ceiling = measure(gemm_shapes(opts), pick_device(opts["device"]),
                      bf16=any("bf16" in v for v in opts["variants"]))
    print_ceiling(ceiling)
    if ceiling.peak_flops_bf16 is None and any("bf16" in v for v in opts["variants"]):
        print("skipping the bf16 variants: bf16 is not native here (emulated, ~100x slower)")
        opts["variants"] = [v for v in opts["variants"] if "bf16" not in v]
    flops = {v: step_flops(opts, None if v == "reference" else len(LLMTIME_IDS),
                           checkpointing="ckpt" in VARIANTS[v][1]) for v in opts["variants"]}
    results = {v: in_fresh_process(run_variant, opts, v) for v in opts["variants"]}
    one_layer = None  # our step at depth 1: the memory slope for the 24-layer extrapolation
    if 2 <= opts["layers"] < 24:
        one_layer = in_fresh_process(
            run_variant, {**opts, "layers": 1, "steps": 1, "profile": False}, "numeric")
    ceiling = remeasure(ceiling, gemm_shapes(opts), pick_device(opts["device"]),
                        bf16=ceiling.peak_flops_bf16 is not None)
    ref = results["reference"]
    print(f"training step: layers={opts['layers']} batch={opts['batch']} context={opts['context']} "
          f"LoRA r={opts['rank']} on q/v, steps={opts['steps']} (+{opts['warmup']} warmup), "
          f"device={ref['device']}, threads={ref['threads']}")
    summary = _summary(opts, results, flops, one_layer, ceiling)
    print_table([(*_row(results[v], flops[v]), f"{summary[v + '_mfu']:.2f}")
                 for v in opts["variants"]],
                ("variant", "best s/step", "mean s/step", "tokens/s", "peak growth GiB",
                 "peak GiB", "FLOPs/step", "loss", "MFU"))
    print("FLOPs/step: lora_forecast.flops exact accounting, backward = 2 x forward (bf16 changes "
          "precision, not FLOPs). Peak growth: the training phase's peak memory above the "
          "post-build baseline (weights excluded); peak: absolute. MFU: the FLOPs autograd "
          "really computes (frozen base; torch convention, 2mnp per matmul) per second, over the "
          "measured matmul peak.")
    if opts["profile"]:
        print("matrix multiplies, share of one profiled step's operator time: " + ", ".join(
            f"{v} {results[v]['matmul_share']:.0%}" for v in opts["variants"]))
    print_json_last(summary)
    return summary


if __name__ == "__main__":
    main()
