"""FLOPs accounting: predict what a forward pass, a training run or a generation costs.

Pure functions over an :class:`Architecture` (no torch needed)::

    request = FlopsRequest("train", context_tokens=512, batch_size=4, steps=100, lora_rank=4)
    report = count_flops(Architecture.qwen2_5_0_5b(), request, accounting="exact")
    report.total, report.breakdown["backward/lora"]

Families (``model_type``: qwen2, qwen3, llama, mistral, phi3, gemma, gemma2) are registered in
:mod:`lora_forecast.flops.families`; ``Architecture.from_hf_config`` rejects any other with
:class:`UnsupportedArchitecture`, and :func:`resolve_lora_targets` checks LoRA targets.

Training-time metering (``BudgetCallback``) lives in :mod:`lora_forecast.budget.callback`: the
budget depends on FLOPs, never the other way round.
"""

from __future__ import annotations

from lora_forecast.flops.api import ACCOUNTINGS, count_flops
from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.families import (
    FAMILIES,
    Family,
    UnknownLoraTarget,
    UnsupportedArchitecture,
    family_of,
    resolve_lora_targets,
)
from lora_forecast.flops.ops import CONVENTIONS, Convention
from lora_forecast.flops.report import FlopsReport
from lora_forecast.flops.request import FlopsRequest

__all__ = [
    "ACCOUNTINGS",
    "CONVENTIONS",
    "Architecture",
    "Convention",
    "FAMILIES",
    "Family",
    "FlopsReport",
    "FlopsRequest",
    "UnknownLoraTarget",
    "UnsupportedArchitecture",
    "count_flops",
    "family_of",
    "resolve_lora_targets",
]
