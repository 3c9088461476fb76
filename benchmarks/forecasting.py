"""Forecasting benchmark: our batched, KV-cached, numeric-head forecaster vs a naive loop.

    python -m benchmarks.forecasting [--layers 24] [--systems 10] [--context-steps 50]
                                     [--horizon 10] [--batch-size 16] [--reference-systems 2]
                                     [--reference-tokens N] [--repeats 2] [--device cpu]

Same random full-width Qwen2.5-0.5B-shaped model (``--layers`` shrinks the depth), same
synthetic Lotka-Volterra contexts (``lora_forecast.data.generator``), greedy, constrained by
the same LLMTIME grammar processor, so both must write identical tokens:

- ours: :func:`lora_forecast.forecasting.forecast` with
  :func:`lora_forecast.models.numeric_head.numeric_logits_fn` under ``torch.inference_mode()``:
  all systems in one batch, one prefill, then one cached token per step, 13 logits per row;
- reference (the reference study's style): one system at a time, no KV cache, the whole
  sequence recomputed for every new token with the full head (``model(ids).logits[:, -1]``).

The reference is strictly sequential per system, so it is timed on the first
``--reference-systems`` systems and its forecasts/s is measured there (``--reference-systems``
equal to ``--systems`` times all of them); ``--reference-tokens`` caps it further at that many
tokens per system and extrapolates its time per token (which flatters the reference: later
tokens see longer inputs). Ours runs ``--repeats`` times, the fastest counts. Outputs are
compared token by token (on the reference's prefix when capped). The LAST line is one JSON
object (``speedup``, ``identical``, ...).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    benchmark_format,
    model_configs,
    pick_device,
    print_json_last,
    print_table,
    timer,
)
from lora_forecast.data.generator import generate_lotka_volterra
from lora_forecast.forecasting import forecast as batched_forecast
from lora_forecast.forecasting.decoding import LogitsFn
from lora_forecast.llmtime import LLMTimeFormat, LLMTimeGrammar, LLMTimeLogitsProcessor
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import numeric_logits_fn


def contexts_and_format(systems: int, context_steps: int) -> tuple[np.ndarray, LLMTimeFormat]:
    """``[S, context_steps, 2]`` synthetic predator-prey contexts and the alpha=10 format."""
    trajectories, _ = generate_lotka_volterra(n_systems=systems, n_steps=100, seed=0)
    if context_steps > trajectories.shape[1]:
        raise ValueError(f"--context-steps: at most {trajectories.shape[1]}, got {context_steps}")
    return trajectories[:, :context_steps], benchmark_format()


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
    grammar = fmt.grammar(contexts.shape[2], horizon, max_int_digits=3)
    texts, tokens = [], 0
    with timer(model.device) as elapsed:
        for context in contexts:
            generated = reference_forecast(model, fmt.prompt(context), grammar, max_tokens)
            tokens += len(generated)
            texts.append(fmt.decode_ids(generated))
    return texts, elapsed[0], tokens


def timed_calls(logits_fn: LogitsFn, device: torch.device,
                calls: list[tuple[str, float]]) -> LogitsFn:
    """``logits_fn`` that appends ("prefill" | "decode", seconds) for every model call."""
    def timed(input_ids, attention_mask, position_ids, cache):
        with timer(device) as elapsed:
            out = logits_fn(input_ids, attention_mask, position_ids, cache)
        calls.append(("prefill" if cache is None else "decode", elapsed[0]))
        return out
    return timed


def run_ours(model, contexts, fmt: LLMTimeFormat, horizon: int,
             batch_size: int) -> tuple[list[str], float, list[int], list[tuple[str, float]]]:
    """Texts, wall seconds, generated tokens per system and timed model calls of the batched
    numeric-head forecaster."""
    calls: list[tuple[str, float]] = []
    logits_fn = timed_calls(numeric_logits_fn(model, fmt.head_ids()), model.device, calls)
    with timer(model.device) as elapsed, torch.inference_mode():
        result = batched_forecast(model, fmt, contexts, horizon_steps=horizon,
                                  batch_size=batch_size, constrained=True, logits_fn=logits_fn,
                                  progress=False)
    return ([t[0] for t in result.texts], elapsed[0], result.generated_tokens[:, 0].tolist(),
            calls)


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
        model(input_ids=torch.full((2, 16), 15, device=model.device), use_cache=True)


def _parse(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (full: 24)")
    parser.add_argument("--systems", type=int, default=10, help="systems our forecaster runs")
    parser.add_argument("--context-steps", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=10, help="forecast steps")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per batch (ours)")
    parser.add_argument("--reference-systems", type=int, default=2,
                        help="systems the (slow, sequential) reference loop times")
    parser.add_argument("--reference-tokens", type=int, default=None,
                        help="cap the reference at this many tokens per system and extrapolate "
                             "its time per token to the full forecast (default: no cap)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of our forecaster; the fastest counts (the CPU is shared)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parse(argv)
    torch.manual_seed(0)
    device = pick_device(opts["device"])
    model = build_model(*model_configs(opts["layers"], rank=8)).to(device).eval()
    contexts, fmt = contexts_and_format(opts["systems"], opts["context_steps"])
    n_ref, cap = opts["reference_systems"], opts["reference_tokens"]
    warm_up(model)

    runs = [run_ours(model, contexts, fmt, opts["horizon"], opts["batch_size"])
            for _ in range(opts["repeats"])]
    ours_texts, ours_s, ours_tokens, ours_calls = min(runs, key=lambda run: run[1])  # best of N
    phases = phase_split(ours_calls, ours_s)
    ref_texts, ref_s, ref_tokens = run_reference(model, contexts[:n_ref], fmt,
                                                 opts["horizon"], cap)
    capped = cap is not None and ref_tokens < sum(ours_tokens[:n_ref])
    ref_per_forecast = _reference_seconds_per_forecast(ref_s, ref_tokens, ours_tokens, n_ref,
                                                       capped)
    ours_rate, ref_rate = opts["systems"] / ours_s, 1.0 / ref_per_forecast
    same = [ours[:len(ref)] == ref for ref, ours in zip(ref_texts, ours_texts, strict=False)]

    prompt_tokens = len(fmt.prompt(contexts[0]))
    print(f"forecasting: layers={opts['layers']} systems={opts['systems']} context="
          f"{opts['context_steps']} steps (~{prompt_tokens} tokens) horizon={opts['horizon']} "
          f"steps (~{np.mean(ours_tokens):.0f} tokens), greedy, constrained, "
          f"threads={torch.get_num_threads()}")
    print_table([
        ("reference (1 system, no cache, full head)", str(n_ref), str(ref_tokens),
         f"{ref_s:.2f}", f"{ref_rate:.4f}", f"{ref_tokens / ref_s:.2f}"),
        (f"ours (batch {opts['batch_size']}, KV cache, numeric head)", str(opts["systems"]),
         str(sum(ours_tokens)), f"{ours_s:.2f}", f"{ours_rate:.4f}",
         f"{sum(ours_tokens) / ours_s:.2f}"),
    ], ("forecaster", "systems", "tokens", "seconds", "forecasts/s", "tokens/s"))
    if capped:
        print(f"reference capped at {cap} tokens per system; its forecasts/s extrapolates its "
              "time per token to the full forecast (later tokens see longer inputs, so this "
              "flatters the reference)")
    print(f"ours: prefill {phases['prefill_seconds']:.2f} s, {phases['decode_calls']} decode calls "
          f"{phases['decode_seconds']:.2f} s ({phases['seconds_per_decode_call']:.3f} s each), "
          f"grammar and bookkeeping {phases['other_seconds']:.2f} s")
    print(f"identical greedy outputs on the {n_ref} reference systems"
          f"{' (compared prefix)' if capped else ''}: {all(same)} "
          f"(system 0: {ours_texts[0][:32]!r}...)")
    summary = {"speedup": ours_rate / ref_rate, "identical": all(same),
               "identical_systems": int(sum(same)), "compared_systems": n_ref,
               "reference_extrapolated": capped,
               "ours_forecasts_per_s": ours_rate, "reference_forecasts_per_s": ref_rate,
               "ours_seconds": ours_s, "reference_seconds": ref_s,
               "ours_generated_tokens": sum(ours_tokens), "reference_generated_tokens": ref_tokens,
               "prompt_tokens": prompt_tokens, "threads": torch.get_num_threads(),
               "device": str(device), **phases,
               **{k: opts[k] for k in ("layers", "systems", "context_steps", "horizon")}}
    print_json_last(summary)
    return summary


if __name__ == "__main__":
    main()
