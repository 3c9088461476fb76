"""Optimiser and learning-rate schedule (pure construction, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from lora_forecast.config import TrainConfig


def lr_multiplier(schedule: str, warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimiser step ``step`` (0-based, before the step's update).

    Linear warmup from 1/(warmup+1) to 1 over ``warmup_steps``, then ``constant`` (1),
    ``linear`` (to 0 at ``max_steps``) or ``cosine`` (half cosine to 0 at ``max_steps``).

    >>> f = lr_multiplier("linear", 0, 10); f(0), f(5)
    (1.0, 0.5)
    """
    decay_steps = max(1, max_steps - warmup_steps)

    def decay(progress: float) -> float:
        return DECAYS[schedule](min(1.0, max(0.0, progress)))

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return decay((step - warmup_steps) / decay_steps)

    return multiplier


DECAYS: dict[str, Callable[[float], float]] = {
    "constant": lambda progress: 1.0,
    "linear": lambda progress: 1.0 - progress,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (weight_decay 0 is Adam, as in the reference study)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (LoRA not applied?)")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    )
    return optimizer, scheduler
