"""What data-parallel training needs beyond ``accelerate.prepare``: a loss module for DDP to wrap,
rank 0's decisions broadcast to every rank, and global sums.

Why a loss module: DistributedDataParallel averages gradients only for a backward pass that
follows *its own* ``forward`` (the reducer arms its hooks there). The numeric head runs the
backbone and slices ``lm_head`` rows itself, so calling it on the unwrapped model would train
every rank on its own gradients, silently. Wrapping "model + loss" in one ``nn.Module`` makes
DDP's forward the loss itself, whatever the head does inside; the PEFT model stays a submodule,
so its parameter names and ``save_pretrained`` are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list

# train.precision -> accelerate's mixed_precision ("auto": bf16 autocast on CUDA, fp32 elsewhere)
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def make_accelerator(precision: str) -> Accelerator:
    """The run's Accelerator for ``train.precision``: on CUDA when there is one, else the CPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if cuda else "fp32"
    return Accelerator(mixed_precision=MIXED_PRECISION[precision], cpu=not cuda)


def is_main_process() -> bool:
    """Whether this process is rank 0 (or alone), before any Accelerator is built: ranks > 0
    of a data-parallel job never open the ledger (the Accelerator's shared state)."""
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


class LossModule(torch.nn.Module):
    """``forward(batch) -> scalar loss`` of ``model`` (the module DDP wraps)."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def from_rank0(acc: Accelerator, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (stop, budget, pruning and early-stopping decisions are
    made there: ranks deciding on their own could leave one waiting in a collective forever)."""
    if acc.num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def global_sum(acc: Accelerator, value: float) -> float:
    """``value`` summed over all ranks (float64, same result on every rank)."""
    if acc.num_processes == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=acc.device)
    return float(acc.reduce(tensor, reduction="sum")[0])
