"""FLOPs accounting: predict what a forward pass, a training run or a generation costs.

Pure functions over an :class:`Architecture` (no torch needed)::

    report = count_flops(Architecture.qwen2_5_0_5b(), accounting="exact", mode="train",
                         context_tokens=512, batch_size=4, steps=100, lora_rank=4)
    report.total, report.breakdown["backward/lora"]

``BudgetCallback`` (training-time metering) lives in :mod:`lora_forecast.budget.callback`
and is re-exported lazily to avoid a circular import.
"""

from __future__ import annotations

from typing import Any

from lora_forecast.flops.api import ACCOUNTINGS, count_flops
from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.ops import CONVENTIONS, Convention
from lora_forecast.flops.report import FlopsReport

__all__ = [
    "ACCOUNTINGS",
    "CONVENTIONS",
    "Architecture",
    "BudgetCallback",
    "Convention",
    "FlopsReport",
    "count_flops",
]


def __getattr__(name: str) -> Any:
    if name == "BudgetCallback":
        from lora_forecast.budget.callback import BudgetCallback

        return BudgetCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
