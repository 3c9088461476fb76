"""Forecasting benchmark: our batched, KV-cached, numeric-head, jump-forward forecaster vs peers.

    python -m benchmarks.forecasting [--layers 24] [--systems 10] [--context-steps 50]
                                     [--horizon 10] [--batch-size N] [--reference-systems 2]
                                     [--reference-tokens N] [--repeats 2] [--device cpu]
                                     [--form default] [--no-generate] [--compile]

Same random full-width Qwen2.5-0.5B-shaped model (``--layers`` shrinks the depth), same
synthetic Lotka-Volterra contexts (``lora_forecast.data.generator``), greedy, constrained by
the same LLMTIME grammar, so every forecaster must write identical tokens:

- ours: :func:`lora_forecast.forecasting.forecast` as the product runs it on this device
  (jump-forward on CUDA, off on CPU: ``default_jump_forward``), with
  :func:`lora_forecast.models.numeric_head.numeric_logits_fn` under ``torch.inference_mode()``:
  as many systems per batch as free memory holds (``--batch-size`` pins it), one prefill per
  batch, then cached decode calls, 13 logits per row; it also runs with the other jump-forward
  setting (tokens the grammar forces fed along with the next call, or one call per token) for
  ``decode_calls_ratio`` and ``speedup_jump_forward``, and with ``--compile``
  under ``eval.compile`` (``torch.compile`` of the model calls: a warm-up run compiles, the
  next is timed) for ``speedup_compile``;
- generate (the peer users would pick): ``model.generate()`` on the same batch, KV cache,
  greedy, the grammar as a ``LogitsProcessor``, full head;
- reference (the reference study's style): one system at a time, no KV cache, the whole
  sequence recomputed for every new token with the full head (``model(ids).logits[:, -1]``).

The machine's ceiling is measured before and after the runs, the higher counting
(:mod:`benchmarks.ceiling`); our prefill is reported as
MFU and our decode calls as bytes of weights read per second over the copy bandwidth (a decode
call reads every layer weight once, and computes little: it is bandwidth-bound).

The reference is strictly sequential per system, so it is timed on the first
``--reference-systems`` systems and its forecasts/s is measured there (``--reference-systems``
equal to ``--systems`` times all of them); ``--reference-tokens`` caps it further at that many
tokens per system and extrapolates its time per token (which flatters the reference: later
tokens see longer inputs). Ours runs ``--repeats`` times, the fastest counts. Outputs are
compared token by token (on the reference's prefix when capped). The LAST line is one JSON
object (``speedup``, ``speedup_vs_generate``, ``identical``, ``mfu``, ...).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from benchmarks.ceiling import Ceiling, measure, print_ceiling, remeasure
from benchmarks.common import (
    FORMS,
    LLMTIME_IDS,
    QWEN_0_5B,
    benchmark_format,
    model_configs,
    pick_device,
    print_json_last,
    print_table,
    timer,
    tokens_per_step,
)
from benchmarks.forecasting_peers import run_generate, run_reference
from lora_forecast.data.generator import generate_lotka_volterra
from lora_forecast.flops import Architecture, FlopsRequest, count_flops
from lora_forecast.forecasting import ForecastOptions
from lora_forecast.forecasting import forecast as batched_forecast
from lora_forecast.forecasting.forecaster import (
    PREFILL_TOKENS,
    default_jump_forward,
    prompts_per_prefill,
)
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.models.build import build_model, tiny_qwen2_config
from lora_forecast.models.logits import LogitsFn
from lora_forecast.models.numeric_head import numeric_logits_fn


def contexts_and_format(systems: int, context_steps: int,
                        form: str = "decimal") -> tuple[np.ndarray, LLMTimeFormat]:
    """``[S, context_steps, 2]`` synthetic predator-prey contexts and the ``form``'s format."""
    trajectories, _ = generate_lotka_volterra(n_systems=systems, n_steps=100, seed=0)
    if context_steps > trajectories.shape[1]:
        raise ValueError(f"--context-steps: at most {trajectories.shape[1]}, got {context_steps}")
    return trajectories[:, :context_steps], benchmark_format(number_format=form)


def timed_calls(logits_fn: LogitsFn, device: torch.device,
                calls: list[tuple[str, float]]) -> LogitsFn:
    """``logits_fn`` that appends ("prefill" | "decode", seconds) for every model call."""
    def timed(input_ids, attention_mask, position_ids, cache):
        with timer(device) as elapsed:
            out = logits_fn(input_ids, attention_mask, position_ids, cache)
        calls.append(("prefill" if cache is None else "decode", elapsed[0]))
        return out
    return timed


def run_ours(model, contexts, fmt: LLMTimeFormat, horizon: int, batch_size: int | None,
             jump_forward: bool = True,
             compile: bool = False) -> tuple[list[str], float, list[int], list[Any], Any]:
    """Texts, wall seconds, generated tokens per system, timed model calls and the batches
    (:class:`~lora_forecast.forecasting.DecodeBatch`) of the batched numeric-head forecaster."""
    calls: list[tuple[str, float]] = []
    logits_fn = numeric_logits_fn(model, fmt.head_ids())
    if not compile:  # a timer inside would break the compiled graph: compiled runs time in total
        logits_fn = timed_calls(logits_fn, model.device, calls)
    with timer(model.device) as elapsed, torch.inference_mode():
        options = ForecastOptions(horizon, batch_size=batch_size, constrained=True,
                                  jump_forward=jump_forward, compile=compile)
        result = batched_forecast(model, fmt, contexts, options, logits_fn=logits_fn,
                                  progress=False)
    return ([t[0] for t in result.texts], elapsed[0], result.generated_tokens[:, 0].tolist(),
            calls, result.batches)


def phase_split(calls: list[tuple[str, float]], total: float) -> dict[str, float]:
    """Where our time went: prefill calls, decode calls (and their mean), everything else."""
    prefill = sum(s for kind, s in calls if kind == "prefill")
    decode = [s for kind, s in calls if kind == "decode"]
    return {"prefill_seconds": prefill, "decode_seconds": sum(decode),
            "decode_calls": len(decode),
            "seconds_per_decode_call": sum(decode) / len(decode) if decode else 0.0,
            "other_seconds": total - prefill - sum(decode)}


def warm_up(model: torch.nn.Module) -> None:
    """One small untimed forward (one-off kernel and allocator set-up), off the clock."""
    with torch.inference_mode():
        model(input_ids=torch.full((2, 16), LLMTIME_IDS[0], device=model.device), use_cache=True)


def ceiling_shapes(opts: dict[str, Any], prompt_tokens: int) -> list[tuple[int, int, int]]:
    """A prefill call's big matmuls (a chunk of prompts' tokens as rows) and a decode call's."""
    d, i = QWEN_0_5B["hidden_size"], QWEN_0_5B["intermediate_size"]
    rows = min(opts["systems"], opts["batch_size"] or opts["systems"])
    prefill = min(rows, prompts_per_prefill(PREFILL_TOKENS, prompt_tokens, rows)) * prompt_tokens
    return [(prefill, d, d), (prefill, d, i), (prefill, i, d), (rows, d, i)]


def weight_bytes_per_decode_call(model: torch.nn.Module, head_rows: int) -> int:
    """Bytes of weights one decode call reads: every layer (LoRA included) and the final norm
    once, and ``head_rows`` rows of the (tied) head; the embedding lookup reads only B rows."""
    total, embed = 0, model.get_input_embeddings().weight
    for p in {id(p): p for p in model.parameters()}.values():
        total += 0 if p is embed else p.numel() * p.element_size()
    return total + head_rows * embed.shape[1] * embed.element_size()


def ceiling_fields(opts: dict[str, Any], model: torch.nn.Module, ceiling: Ceiling,
                   phases: dict[str, float], batches: list[Any]) -> dict[str, float]:
    """Prefill MFU (its FLOPs in torch's count over each padded batch) and the decode calls'
    bytes of weights read per second, as a fraction of the copy bandwidth."""
    model_cfg, _ = model_configs(opts["layers"], rank=8)
    arch = Architecture.from_hf_config(tiny_qwen2_config(model_cfg))
    prefill_flops = sum(count_flops(arch, FlopsRequest("forward", b.prompt_width,
                                                       batch_size=b.prefill_rows, lora_rank=8,
                                                       head_vocab=13),
                                    accounting="exact", convention="torch").total
                        for b in batches)
    weights = weight_bytes_per_decode_call(model, 13)
    per_call = phases["seconds_per_decode_call"]
    read_rate = weights / per_call if per_call else 0.0
    return {"mfu": prefill_flops / phases["prefill_seconds"] / ceiling.peak_flops,
            "prefill_flops": prefill_flops, "decode_weight_bytes_per_call": weights,
            "decode_weight_bytes_per_s": read_rate,
            "decode_bandwidth_fraction": read_rate / ceiling.bandwidth,
            "rows_per_decode_call": max(b.rows for b in batches),
            "forecast_batches": len(batches)}


def _parse(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (full: 24)")
    parser.add_argument("--systems", type=int, default=10, help="systems our forecaster runs")
    parser.add_argument("--context-steps", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=10, help="forecast steps")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="rows per batch (ours); default: as many as free memory holds")
    parser.add_argument("--reference-systems", type=int, default=2,
                        help="systems the (slow, sequential) reference loop times")
    parser.add_argument("--reference-tokens", type=int, default=None,
                        help="cap the reference at this many tokens per system and extrapolate "
                             "its time per token to the full forecast (default: no cap)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of our forecaster; the fastest counts (the CPU is shared)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--form", default="decimal", choices=FORMS,
                        help="LLMTIME text form of the prompts and forecasts")
    parser.add_argument("--no-generate", dest="generate", action="store_false",
                        help="skip the model.generate() peer")
    parser.add_argument("--compile", action="store_true",
                        help="also time ours under eval.compile (torch.compile)")
    opts = vars(parser.parse_args(argv))
    if opts["repeats"] < 1:
        parser.error("--repeats: must be >= 1")
    if not 1 <= opts["reference_systems"] <= opts["systems"]:
        parser.error("--reference-systems: must be in 1..--systems")
    return opts


def _reference_seconds_per_forecast(ref_s: float, ref_tokens: int, ours_tokens: list[int],
                                    n_ref: int, capped: bool) -> float:
    """Measured mean, or (capped) the measured time per token times the full token count."""
    if not capped:
        return ref_s / n_ref
    return ref_s / ref_tokens * sum(ours_tokens[:n_ref]) / n_ref


def _print_rows(opts, n_ref, ref, ours, other, gen, rows_per_call: int, jump: bool,
                compiled: tuple[int, float] | None) -> None:
    """The table: one row per forecaster (name, systems, tokens, seconds)."""
    rows = [("reference (1 system, no cache, full head)", n_ref, *ref)]
    if gen is not None:
        rows.append(("generate() (batch, KV cache, full head)", opts["systems"], *gen))
    rows += [(f"ours, jump-forward {'off' if jump else 'on'}", opts["systems"], *other),
             (f"ours (batch {rows_per_call}, KV cache, numeric head, jump-forward "
              f"{'on' if jump else 'off'}: the default here)", opts["systems"], *ours)]
    if compiled is not None:
        rows.append(("ours under eval.compile", opts["systems"], *compiled))
    print_table([(name, str(n), str(tokens), f"{sec:.2f}", f"{n / sec:.4f}", f"{tokens / sec:.2f}")
                 for name, n, tokens, sec in rows],
                ("forecaster", "systems", "tokens", "seconds", "forecasts/s", "tokens/s"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parse(argv)
    torch.manual_seed(0)
    device = pick_device(opts["device"])
    contexts, fmt = contexts_and_format(opts["systems"], opts["context_steps"], opts["form"])
    prompt_tokens = len(fmt.prompt(contexts[0]))
    ceiling = measure(ceiling_shapes(opts, prompt_tokens), device, bf16=False)
    print_ceiling(ceiling)
    model = build_model(*model_configs(opts["layers"], rank=8)).to(device).eval()
    n_ref, cap, horizon = opts["reference_systems"], opts["reference_tokens"], opts["horizon"]
    warm_up(model)

    jump = default_jump_forward(device)  # ours runs as the product does here; then the other
    runs = [run_ours(model, contexts, fmt, horizon, opts["batch_size"], jump_forward=jump)
            for _ in range(opts["repeats"])]
    ours_texts, ours_s, ours_tokens, ours_calls, batches = min(runs, key=lambda run: run[1])
    phases = phase_split(ours_calls, ours_s)
    other_texts, other_s, _, other_calls, _ = run_ours(model, contexts, fmt, horizon,
                                                    opts["batch_size"], jump_forward=not jump)
    other_decode_calls = phase_split(other_calls, other_s)["decode_calls"]
    ours_run, other_run = (phases["decode_calls"], ours_s), (other_decode_calls, other_s)
    (jf_calls, jf_s), (plain_calls, plain_s) = ((ours_run, other_run) if jump
                                                else (other_run, ours_run))
    compiled_texts, compiled_s = None, None
    if opts["compile"]:
        run_ours(model, contexts, fmt, horizon, opts["batch_size"], compile=True)  # compiles
        compiled_texts, compiled_s, *_ = run_ours(model, contexts, fmt, horizon,
                                                  opts["batch_size"], compile=True)
    gen = run_generate(model, contexts, fmt, horizon) if opts["generate"] else None
    ref_texts, ref_s, ref_tokens = run_reference(model, contexts[:n_ref], fmt, horizon, cap)
    capped = cap is not None and ref_tokens < sum(ours_tokens[:n_ref])
    ref_per_forecast = _reference_seconds_per_forecast(ref_s, ref_tokens, ours_tokens, n_ref,
                                                       capped)
    ours_rate, ref_rate = opts["systems"] / ours_s, 1.0 / ref_per_forecast
    same = [ours[:len(ref)] == ref for ref, ours in zip(ref_texts, ours_texts, strict=False)]
    same_generate = gen is None or gen[0] == ours_texts
    ceiling = remeasure(ceiling, ceiling_shapes(opts, prompt_tokens), device, bf16=False)
    fields = ceiling_fields(opts, model, ceiling, phases, batches)

    print(f"forecasting: layers={opts['layers']} systems={opts['systems']} context="
          f"{opts['context_steps']} steps (~{prompt_tokens} tokens) horizon={horizon} "
          f"steps (~{np.mean(ours_tokens):.0f} tokens), greedy, constrained, "
          f"threads={torch.get_num_threads()}")
    total = sum(ours_tokens)
    _print_rows(opts, n_ref, (ref_tokens, ref_s), (total, ours_s), (total, other_s),
                None if gen is None else (total, gen[1]), fields["rows_per_decode_call"], jump,
                None if compiled_s is None else (total, compiled_s))
    if capped:
        print(f"reference capped at {cap} tokens per system; its forecasts/s extrapolates its "
              "time per token to the full forecast (later tokens see longer inputs, so this "
              "flatters the reference)")
    print(f"ours: prefill {phases['prefill_seconds']:.2f} s (MFU {fields['mfu']:.2f}), "
          f"{phases['decode_calls']} decode calls (jump-forward {'on' if jump else 'off'}; "
          f"with it {jf_calls}, without {plain_calls}) "
          f"{phases['decode_seconds']:.2f} s ({phases['seconds_per_decode_call']:.3f} s each, "
          f"{fields['decode_weight_bytes_per_s'] / 1e9:.1f} GB/s of weights read = "
          f"{fields['decode_bandwidth_fraction']:.2f} of the copy bandwidth), "
          f"grammar and bookkeeping {phases['other_seconds']:.2f} s")
    print(f"identical greedy outputs: reference on its {n_ref} systems"
          f"{' (compared prefix)' if capped else ''}: {all(same)}; generate(): "
          f"{same_generate if gen else 'skipped'}; jump-forward {'off' if jump else 'on'}: "
          f"{other_texts == ours_texts} (system 0: {ours_texts[0][:32]!r}...)")
    summary = {"speedup": ours_rate / ref_rate,
               "speedup_vs_generate": gen[1] / ours_s if gen else None,
               "identical": all(same) and same_generate and other_texts == ours_texts,
               "identical_systems": int(sum(same)), "compared_systems": n_ref,
               "identical_generate": same_generate if gen else None,
               "jump_forward": jump, "decode_calls_ratio": jf_calls / plain_calls,
               "decode_calls_jump_forward": jf_calls,
               "decode_calls_without_jump_forward": plain_calls,
               "generate_decode_calls": gen[2] if gen else None,
               "speedup_jump_forward": plain_s / jf_s,
               "speedup_compile": ours_s / compiled_s if compiled_s else None,
               "identical_compile": compiled_texts == ours_texts if compiled_s else None,
               "tokens_per_step": tokens_per_step(fmt), "form": opts["form"],
               "peak_flops": ceiling.peak_flops, **fields,
               "reference_extrapolated": capped,
               "ours_forecasts_per_s": ours_rate, "reference_forecasts_per_s": ref_rate,
               "generate_seconds": gen[1] if gen else None,
               "ours_seconds": ours_s, "reference_seconds": ref_s,
               "ours_generated_tokens": total, "reference_generated_tokens": ref_tokens,
               "prompt_tokens": prompt_tokens, "threads": torch.get_num_threads(),
               "device": str(device), **phases, **ceiling.as_dict(),
               **{k: opts[k] for k in ("layers", "systems", "context_steps", "horizon")}}
    print_json_last(summary)
    return summary


if __name__ == "__main__":
    main()
