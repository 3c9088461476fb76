"""Shared benchmark plumbing: the Qwen2.5-0.5B-shaped random model, phase memory, subprocesses.

Every variant runs in a fresh ``spawn`` child so its peak memory is its own. On CPU a phase's
peak is the kernel's resident high-water mark (``VmHWM``), reset at the phase start through
``/proc/self/clear_refs`` (falls back to ``getrusage`` maxrss where that is unavailable);
tracemalloc would not see torch's allocations. On CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.data.generator import generate_lotka_volterra
from lora_forecast.llmtime import NUMBER_FORMATS, LLMTimeCodec, LLMTimeFormat
from lora_forecast.models.tokenizer import qwen_tokenizer
from lora_forecast.quiet import quiet_third_party

quiet_third_party()  # the same filters as the entry point: benchmark output stays readable

# Qwen2.5-0.5B-Instruct (SPEC "Model facts"); only the depth is configurable.
QWEN_0_5B = dict(hidden_size=896, num_heads=14, num_kv_heads=2, intermediate_size=4864)


def benchmark_format(decimals: int = 2, number_format: str = "decimal") -> LLMTimeFormat:
    """The LLMTIME format the benchmarks use: the real Qwen2.5 tokenizer, alpha 10."""
    return LLMTimeFormat.for_tokenizer(LLMTimeCodec(10.0, decimals, number_format),
                                       qwen_tokenizer())


LLMTIME_IDS = benchmark_format().head_ids()  # the numeric head's rows ('0'..'9', '.', ',', ';')
GIB = 2**30
FORMS = NUMBER_FORMATS  # --form: the codec's number formats ("decimal": "0.25,1.50;")


def tokens_per_step(fmt: LLMTimeFormat, systems: int = 10, steps: int = 50) -> float:
    """Mean tokens per time step (its separator included) of ``fmt`` on the synthetic
    predator-prey data, as the forecaster feeds them to the model (``fmt.prompt``)."""
    trajectories, _ = generate_lotka_volterra(n_systems=systems, n_steps=100, seed=0)
    return sum(len(fmt.prompt(t[:steps])) for t in trajectories) / (systems * steps)


def model_configs(layers: int, rank: int, lm_head_bias: bool = False,
                  attn: str = "auto") -> tuple[ModelConfig, LoraConfig]:
    """Random-init full-width Qwen2.5-0.5B shape with ``layers`` layers; LoRA ``rank`` on q/v."""
    model_cfg = ModelConfig(kind="tiny", num_layers=layers, lm_head_bias=lm_head_bias,
                            attn_implementation=attn, **QWEN_0_5B)
    return model_cfg, LoraConfig(rank=rank, target_modules=["q_proj", "v_proj"])


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the resident high-water mark (Linux >= 4.0)
        return True
    except OSError:
        return False


@dataclass
class PhaseMemory:
    """Bytes resident when a phase started, and the phase's peak (absolute and growth)."""

    start: int = 0
    peak: int = 0

    @property
    def growth(self) -> int:
        return max(self.peak - self.start, 0)


@contextmanager
def phase_memory(device: torch.device) -> Iterator[PhaseMemory]:
    """Measure the peak memory of the enclosed block (CPU: process RSS; CUDA: allocator)."""
    mem = PhaseMemory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        mem.start = torch.cuda.memory_allocated(device)
        yield mem
        torch.cuda.synchronize(device)
        mem.peak = torch.cuda.max_memory_allocated(device)
        return
    rss = _status_kib("VmRSS")
    exact = _reset_peak_rss() and rss is not None
    mem.start = 1024 * (rss if rss is not None else _maxrss_kib())
    yield mem
    hwm = _status_kib("VmHWM") if exact else None
    mem.peak = 1024 * (hwm if hwm is not None else _maxrss_kib())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timer(device: torch.device) -> Iterator[list[float]]:
    """Wall seconds of the enclosed block (device-synchronised), appended to the yielded list."""
    out: list[float] = []
    synchronize(device)
    start = time.perf_counter()
    yield out
    synchronize(device)
    out.append(time.perf_counter() - start)


def in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a new ``spawn`` child and return its (picklable) result."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """A plain aligned text table on stdout."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).rjust(w) for cell, w in zip(row, widths, strict=True)))


def print_json_last(summary: dict[str, Any]) -> None:
    """The machine-readable summary: always the last line of a benchmark's output."""
    print(json.dumps(summary, sort_keys=False), flush=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
