"""Draft-and-verify decoding (``eval.draft``): acceptance on a trained model, time at full depth.

    python -m benchmarks.drafting [--systems 1 10 100] [--timed-systems 1 10 100]
                                  [--layers 24] [--draft persistence] [--train-steps 1000]
                                  [--horizon 10] [--device cpu] [--no-generate] [--cache DIR]

Acceptance needs a model that has learned the series, and a 24-layer model cannot be trained
here, so the benchmark has two parts, both greedy and grammar-constrained, in one run:

1. **Measured** on a trained small model: the smoke experiment's model (tiny Qwen2 + LoRA)
   at 256 wide and 4 deep (:data:`SMALL_MODEL`), trained by
   ``python -m lora_forecast +experiment=smoke`` for ``--train-steps`` steps on 1000
   synthetic systems (about 5 minutes here, once; the run is cached under
   ``~/.cache/lora_forecast/benchmarks/drafting``), forecasting the first N test systems with
   ``eval.draft=none`` and with ``--draft``: ``acceptance_rate`` (draft tokens kept / verified),
   ``tokens_per_decode_call`` (generated tokens per row and decode call),
   ``decode_calls_ratio`` (drafted / plain), ``speedup_draft`` (plain seconds / drafted) and
   whether the tokens are identical.
2. **Replayed** at full width and ``--layers`` depth (random weights, the forecasting
   benchmark's contexts): a verify call's cost depends on how many tokens it carries, not on
   their values, so each row replays the trained run's per-call ``(drafted, kept)`` outcomes
   (row i those of trained row i mod N) with the big model's own greedy tokens: the kept
   tokens are what it writes, the first rejected one a different digit. Reported:
   ``speedup_draft`` and ``speedup_vs_generate`` (``model.generate()``, KV cache, the grammar
   as a logits processor), tokens identical to plain decoding and to ``generate()``, and the
   ceiling: each decode call reads every weight once, so weight bytes / measured copy
   bandwidth x calls is a lower bound on decode time; ``*_ceiling_fraction`` is that bound
   over the measured decode time.

The LAST line is one JSON object with both parts per size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.ceiling import copy_bandwidth
from benchmarks.common import model_configs, pick_device, print_json_last, print_table, timer
from benchmarks.forecasting import contexts_and_format, warm_up, weight_bytes_per_decode_call
from benchmarks.forecasting_peers import run_generate
from lora_forecast.forecasting.decoding import DecodeOptions, DecodeResult, StopRule, decode
from lora_forecast.forecasting.forecaster import (
    PREFILL_TOKENS,
    default_jump_forward,
    max_new_tokens,
    prompts_per_prefill,
)
from lora_forecast.llmtime import LLMTimeFormat, LLMTimeGrammar
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import numeric_logits_fn

CACHE = Path.home() / ".cache" / "lora_forecast" / "benchmarks" / "drafting"
MAX_INT_DIGITS = 3  # the forecasting benchmark's grammar (its generate() peer uses the same)


# The small model: the smoke experiment (frozen random-init Qwen2 + LoRA on every projection)
# at 256 wide and 4 deep, trained on 1000 generated systems with 256-token windows. The smoke
# model itself (64 wide, 2 deep) forecasts worse than persistence (MSE 12.5 against 0.3 here),
# so a draft would be measured against noise rather than against a forecaster.
SMALL_MODEL = ("model.hidden_size=256", "model.num_layers=4", "model.num_heads=8",
               "model.num_kv_heads=2", "model.intermediate_size=768", "lora.rank=64",
               "data.context_tokens=256", "train.lr=1e-3", "data.systems=1000")


def trained_run(steps: int, cache: Path = CACHE) -> Path:
    """:data:`SMALL_MODEL` trained for ``steps`` steps by the product's own command; reused
    while its ``results.json`` says it completed."""
    run_dir = cache / f"small-{steps}-steps" / "run"
    results = run_dir / "results.json"
    if results.is_file() and json.loads(results.read_text()).get("status") == "completed":
        return run_dir
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    run_dir.parent.mkdir(parents=True)
    print(f"training the small model ({steps} steps) into {run_dir} ...", flush=True)
    done = subprocess.run([sys.executable, "-m", "lora_forecast", "+experiment=smoke",
                           "logger=none", f"train.max_steps={steps}", *SMALL_MODEL,
                           "eval.n_systems=1", f"hydra.run.dir={run_dir}",
                           f"output_dir={run_dir.parent}"],
                          cwd=run_dir.parent, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training the small model failed:\n{done.stderr[-3000:]}")
    return run_dir


@dataclasses.dataclass(frozen=True)
class Trained:
    """The trained run's settings, model, format, scaling and test contexts, loaded once."""

    settings: Any
    model: torch.nn.Module
    fmt: LLMTimeFormat
    scale_of: Any
    contexts: np.ndarray


def load_trained(run_dir: Path, horizon: int) -> Trained:
    """The run's model with the format and scaling it was trained with, and the contexts of
    its test systems long enough for ``horizon`` steps after ``eval.context_steps``."""
    from lora_forecast.data.prepare import prepare_data
    from lora_forecast.evaluation.protocol import cut_series_windows
    from lora_forecast.models.tokenizer import load_tokenizer
    from lora_forecast.run_folder import load_run_model, run_config, settings_from

    settings = settings_from(run_config(run_dir))
    data = prepare_data(settings.data)
    fmt = LLMTimeFormat.for_tokenizer(data.codec, load_tokenizer(settings.model),
                                      signed=data.scaling.signed)
    window = cut_series_windows(data.series.subset(data.split.test),
                                settings.eval.context_steps, horizon, None)
    return Trained(settings, load_run_model(settings, run_dir).eval(), fmt, data.scale_of,
                   window.contexts)


def trained_forecasts(trained: Trained, n: int, draft: str, horizon: int) -> dict[str, Any]:
    """Plain and drafted greedy forecasts of the run's first ``n`` test systems, timed."""
    from lora_forecast.forecasting.scaled import forecast_scaled

    settings, model = trained.settings, trained.model
    if len(trained.contexts) < n:
        raise SystemExit(f"--systems: the trained run has {len(trained.contexts)} test systems")
    runs = {}
    for name in ("none", draft):
        ev = dataclasses.replace(settings.eval, draft=name, batch_size=None,
                                 horizon_steps=horizon)
        with timer(model.device) as elapsed, torch.inference_mode():
            fc = forecast_scaled(dataclasses.replace(settings, eval=ev), model, trained.fmt,
                                 trained.scale_of, trained.contexts[:n], progress=False,
                                 n_samples=1)
        runs[name] = (fc, elapsed[0])
    (plain, plain_s), (drafted, drafted_s) = runs["none"], runs[draft]
    generated = int(drafted.generated_tokens.sum())
    return {"systems": n, "acceptance_rate": drafted.acceptance_rate,
            "tokens_per_decode_call": generated / (drafted.decode_calls * n),
            "decode_calls_plain": plain.decode_calls, "decode_calls_draft": drafted.decode_calls,
            "decode_calls_ratio": drafted.decode_calls / plain.decode_calls,
            "speedup_draft": plain_s / drafted_s, "identical": drafted.texts == plain.texts,
            "events": drafted.draft_events}


class ReplayDrafter:
    """Replays recorded ``(drafted, kept)`` outcomes per row on another model: ``kept`` of
    the row's true next tokens (``truth``: the model's own greedy output), then, where the
    recorded draft was rejected, another token the grammar allows there and grammar-valid
    filler up to the recorded length (all rejected: they cost what the recorded ones did)."""

    def __init__(self, truth: list[list[int]], events: list[list[tuple[int, int]]],
                 grammar: LLMTimeGrammar) -> None:
        self.truth, self.events, self.grammar = truth, events, grammar
        self.calls = [0] * len(truth)

    def propose(self, row: int, generated: list[int], limit: int) -> list[int]:
        events = self.events[row % len(self.events)]
        if not events:
            return []
        drafted, kept = events[self.calls[row] % len(events)]
        self.calls[row] += 1
        truth = self.truth[row][len(generated):]
        if kept >= drafted or kept >= len(truth):
            return truth[:min(drafted, limit)]
        kept = min(kept, limit - 1)
        state = self.grammar.start
        for token in [*generated, *truth[:kept]]:
            state = self.grammar.advance(state, token)
        draft = list(truth[:kept])
        others = [t for t in self.grammar.allowed(state) if t != truth[kept]]
        while others and len(draft) < min(drafted, limit) and not self.grammar.is_done(state):
            draft.append(others[0])
            state = self.grammar.advance(state, others[0])
            others = list(self.grammar.allowed(state))
        return draft


def timed_decode(model, fmt: LLMTimeFormat, contexts: np.ndarray, horizon: int,
                 drafter: ReplayDrafter | None) -> tuple[DecodeResult, float, float]:
    """Our decode loop (numeric head, jump-forward as the product sets it here): the result,
    wall seconds and the decode calls' seconds."""
    grammar = fmt.grammar(contexts.shape[2], horizon, MAX_INT_DIGITS)
    logits_fn = numeric_logits_fn(model, fmt.head_ids())
    decode_s = [0.0]

    def timed(input_ids, attention_mask, position_ids, cache, **keep):
        with timer(model.device) as elapsed:
            out = logits_fn(input_ids, attention_mask, position_ids, cache, **keep)
        decode_s[0] += elapsed[0] if cache is not None else 0.0
        return out

    prompts = [fmt.prompt(c) for c in contexts]
    options = DecodeOptions(StopRule(max_new_tokens(grammar, True), grammar=grammar),
                            fmt.tokens.pad_id, device=model.device,
                            jump_forward=default_jump_forward(model.device),
                            prefill_chunk=prompts_per_prefill(
                                PREFILL_TOKENS, max(map(len, prompts)), len(prompts)))
    with timer(model.device) as elapsed, torch.inference_mode():
        result = decode(timed, prompts, options, drafter=drafter)
    return result, elapsed[0], decode_s[0]


def replayed(model, n: int, horizon: int, events, with_generate: bool,
             bandwidth: float) -> dict[str, Any]:
    """Plain, replayed-draft and ``generate()`` forecasts of ``n`` systems on ``model``."""
    contexts, fmt = contexts_and_format(n, 50)
    plain, plain_s, plain_decode_s = timed_decode(model, fmt, contexts, horizon, None)
    grammar = fmt.grammar(contexts.shape[2], horizon, MAX_INT_DIGITS)
    drafter = ReplayDrafter(plain.tokens, events, grammar)
    drafted, drafted_s, drafted_decode_s = timed_decode(model, fmt, contexts, horizon, drafter)
    gen = run_generate(model, contexts, fmt, horizon) if with_generate else None
    texts = [fmt.decode_ids(t) for t in plain.tokens]
    per_call = weight_bytes_per_decode_call(model, len(fmt.head_ids())) / bandwidth
    return {"systems": n, "seconds_plain": plain_s, "seconds_draft": drafted_s,
            "seconds_generate": gen[1] if gen else None,
            "decode_calls_plain": plain.decode_steps, "decode_calls_draft": drafted.decode_steps,
            "acceptance_rate": sum(drafted.accepted_tokens) / max(1, sum(drafted.drafted_tokens)),
            "speedup_draft": plain_s / drafted_s,
            "speedup_vs_generate": gen[1] / drafted_s if gen else None,
            "speedup_plain_vs_generate": gen[1] / plain_s if gen else None,
            "identical": drafted.tokens == plain.tokens,
            "identical_generate": gen[0] == texts if gen else None,
            "decode_lower_bound_plain_s": per_call * plain.decode_steps,
            "decode_lower_bound_draft_s": per_call * drafted.decode_steps,
            "plain_ceiling_fraction": per_call * plain.decode_steps / plain_decode_s,
            "draft_ceiling_fraction": per_call * drafted.decode_steps / drafted_decode_s}


def _parse(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, nargs="+", default=[1, 10, 100],
                        help="sizes measured on the trained small model")
    parser.add_argument("--timed-systems", type=int, nargs="*", default=[1, 10, 100],
                        help="sizes replayed at --layers depth (each must be in --systems)")
    parser.add_argument("--layers", type=int, default=24, help="depth of the replayed model")
    parser.add_argument("--draft", default="persistence", help="eval.draft (a baseline)")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=10, help="forecast steps")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--no-generate", dest="generate", action="store_false",
                        help="skip the model.generate() peer")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="where the trained small model is kept")
    opts = vars(parser.parse_args(argv))
    if not set(opts["timed_systems"]) <= set(opts["systems"]):
        parser.error("--timed-systems: each must be one of --systems")
    return opts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parse(argv)
    torch.manual_seed(0)
    run_dir = trained_run(opts["train_steps"], opts["cache"])
    trained = load_trained(run_dir, opts["horizon"])
    small = {n: trained_forecasts(trained, n, opts["draft"], opts["horizon"])
             for n in opts["systems"]}
    print(f"1. measured: the smoke model trained {opts['train_steps']} steps ({run_dir}), "
          f"draft={opts['draft']}, horizon {opts['horizon']} steps, greedy")
    print_table([(str(n), f"{r['acceptance_rate']:.3f}", f"{r['tokens_per_decode_call']:.2f}",
                  f"{r['decode_calls_draft']}/{r['decode_calls_plain']}",
                  f"{r['decode_calls_ratio']:.2f}", f"{r['speedup_draft']:.2f}",
                  str(r["identical"])) for n, r in small.items()],
                ("systems", "acceptance", "tokens/call", "calls draft/plain", "ratio",
                 "speedup", "identical"))
    big: dict[int, dict[str, Any]] = {}
    if opts["timed_systems"]:
        device = pick_device(opts["device"])
        bandwidth = copy_bandwidth(device)
        model = build_model(*model_configs(opts["layers"], rank=8)).to(device).eval()
        warm_up(model)
        for n in opts["timed_systems"]:  # each printed when done: 100 systems take minutes
            big[n] = replayed(model, n, opts["horizon"], small[n]["events"], opts["generate"],
                              bandwidth)
            print(f"replayed {n} system(s): {json.dumps(big[n])}", flush=True)
        print(f"2. replayed (the trained run's acceptance, row by row) at {opts['layers']} "
              f"layers, full width, random weights, {device}, copy bandwidth "
              f"{bandwidth / 1e9:.1f} GB/s")
        print_table([(str(n), f"{r['seconds_plain']:.2f}", f"{r['seconds_draft']:.2f}",
                      "-" if r["seconds_generate"] is None else f"{r['seconds_generate']:.2f}",
                      f"{r['decode_calls_draft']}/{r['decode_calls_plain']}",
                      f"{r['speedup_draft']:.2f}",
                      "-" if r["speedup_vs_generate"] is None else
                      f"{r['speedup_vs_generate']:.2f}",
                      f"{r['plain_ceiling_fraction']:.2f}/{r['draft_ceiling_fraction']:.2f}",
                      f"{r['identical']}/{r['identical_generate']}") for n, r in big.items()],
                    ("systems", "plain s", "draft s", "generate s", "calls draft/plain",
                     "speedup", "vs generate", "ceiling plain/draft", "identical/generate"))
    summary = {"draft": opts["draft"], "train_steps": opts["train_steps"],
               "layers": opts["layers"], "horizon": opts["horizon"],
               "measured": {n: {k: v for k, v in r.items() if k != "events"}
                            for n, r in small.items()},
               "replayed": big}
    print_json_last(summary)
    return summary


if __name__ == "__main__":
    main()
