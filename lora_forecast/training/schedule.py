"""Optimiser and learning-rate schedule (pure construction, no I/O)."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from lora_forecast.config import TrainConfig

# train.schedule -> transformers' scheduler name ("constant" alone would ignore the warmup)
SCHEDULER_NAMES: dict[str, str] = {
    "constant": "constant_with_warmup",
    "linear": "linear",
    "cosine": "cosine",
}


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """``transformers.get_scheduler`` for ``cfg.schedule`` over ``cfg.max_steps`` steps.

    Multiplier of the base lr at optimiser step ``s`` (0-based, before its update): linear
    warmup ``s / warmup_steps`` (transformers' convention: step 0 runs at lr 0), then
    ``constant`` 1, ``linear`` ``(max_steps - s) / (max_steps - warmup)`` or ``cosine``
    ``(1 + cos(pi * progress)) / 2``, reaching 0 at ``max_steps``. A ``LambdaLR``: its state
    (the step count) is what checkpoints save and resume restores.
    """
    return get_scheduler(
        SCHEDULER_NAMES[cfg.schedule], optimizer,
        num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps,
    )  # fmt: skip


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (weight_decay 0 is Adam, as in the reference study)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (LoRA not applied?)")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return optimizer, build_scheduler(optimizer, cfg)
