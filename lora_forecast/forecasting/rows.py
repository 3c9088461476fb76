"""How many forecast rows one decode batch holds: ``eval.batch_size=null`` fills free memory.

A decode call reads every weight once whatever its row count, and at a few rows it is bound by
that read and by per-call overhead, not by arithmetic: each extra row is nearly free until
memory runs out. So by default the forecaster puts as many systems in a batch as the device's
free memory holds, while prefilling them in chunks of ``eval.prefill_tokens`` (a huge prefill
runs slower and would need activations for every prompt at once). The per-row figure is an
upper bound computed from the architecture (pure arithmetic, below), and only
:data:`MEMORY_FRACTION` of the free memory is planned for, which leaves the allocator,
fragmentation and the rest of the process their headroom.

Sampled forecasts do not depend on the batch: every row draws from its own seeded stream
(:func:`lora_forecast.forecasting.forecaster.forecast`), so the rows chosen here change speed
and memory, never the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from lora_forecast.flops import Architecture

MEMORY_FRACTION = 0.5  # of the free memory a batch may plan to use


@dataclass(frozen=True)
class RowMemory:
    """Upper bounds, in bytes, on what one forecast row and one prompt hold at their peak.

    Attributes:
        kv_cache_per_row: the keys and values of every layer for the longest row
            (prompt width + the most generated tokens), held until the batch ends.
        logits_per_prompt: its last position's full-vocabulary logits, held from its prefill
            until decoding starts.
        prefill_per_prompt: its transient prefill activations while its chunk is prefilled
            (one layer at a time: the residual stream, q/k/v, attention scores as the math
            kernel materialises them, and the gated MLP's four intermediate tensors).
    """

    kv_cache_per_row: int
    logits_per_prompt: int
    prefill_per_prompt: int


def row_memory(arch: Architecture, prompt_width: int, max_new_tokens: int,
               dtype_bytes: int) -> RowMemory:
    """The :class:`RowMemory` of ``arch`` for prompts of ``prompt_width`` tokens."""
    tokens = prompt_width + max_new_tokens
    kv = arch.layers * 2 * arch.kv_heads * arch.head_dim * tokens
    per_token = (4 * arch.intermediate + 4 * arch.hidden
                 + (2 * arch.heads + 2 * arch.kv_heads) * arch.head_dim)
    scores = arch.heads * prompt_width * prompt_width
    return RowMemory(kv_cache_per_row=kv * dtype_bytes, logits_per_prompt=arch.vocab * dtype_bytes,
                     prefill_per_prompt=(prompt_width * per_token + scores) * dtype_bytes)


def systems_per_batch(memory: RowMemory, samples: int, free_bytes: int, prefill_chunk: int,
                      fraction: float = MEMORY_FRACTION) -> int:
    """Most systems (each ``samples`` rows sharing one prefill) whose batch fits in
    ``fraction`` of ``free_bytes`` while ``prefill_chunk`` prompts are being prefilled; at
    least 1 (a single system always runs)."""
    room = int(fraction * free_bytes) - prefill_chunk * memory.prefill_per_prompt
    per_system = samples * memory.kv_cache_per_row + memory.logits_per_prompt
    return max(1, room // per_system)


def free_memory_bytes(device: torch.device) -> int:
    """Bytes a new batch could use on ``device``: on CUDA the driver's free memory plus what
    torch's caching allocator holds unused; on the CPU the OS's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return int(psutil.virtual_memory().available)
