"""``train.*``: optimisation, validation, early stopping, checkpoints (conf/train/)."""

from __future__ import annotations

from dataclasses import dataclass

from lora_forecast.config.checks import require

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "linear", "cosine")  # training.schedule (tested equal)
# val/loss, and lora_forecast.evaluation.scoring.POINT_MONITORS of the validation forecasts
# (kept import-free here; a test checks they agree)
MONITORS = ("val/loss", "val/mse", "val/mae", "val/mase", "val/smape", "val/mase_rel")


@dataclass
class TrainConfig:
    """Optimisation, validation, early stopping and checkpointing."""

    max_steps: int = 2000
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = None
    precision: str = "auto"
    seed: int = 0
    eval_every: int = 100
    val_max_windows: int | None = 64
    eval_forecast: bool = False
    eval_forecast_systems: int = 8
    compare_zero_shot: bool = False
    monitor: str = "val/loss"
    patience: int | None = None
    min_delta: float = 0.0
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    resume: str = "never"
    resume_from: str | None = None
    compile: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        require(self.max_steps >= 0, "train.max_steps", f"must be >= 0, got {self.max_steps}")
        require(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {self.grad_accum}")
        require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        require(
            self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        require(
            self.schedule in SCHEDULES,
            "train.schedule",
            f"must be one of {SCHEDULES}, got {self.schedule!r}",
        )
        require(
            self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}"
        )
        require(
            self.precision in PRECISIONS,
            "train.precision",
            f"must be one of {PRECISIONS}, got {self.precision!r}",
        )
        require(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        require(
            self.patience is None or self.patience >= 1,
            "train.patience",
            f"must be >= 1 or null, got {self.patience}",
        )
        require(
            self.checkpoint_every is None or self.checkpoint_every >= 1,
            "train.checkpoint_every",
            f"must be >= 1 or null, got {self.checkpoint_every}",
        )
        require(
            self.keep_checkpoints >= 1,
            "train.keep_checkpoints",
            f"must be >= 1, got {self.keep_checkpoints}",
        )
        require(
            self.resume in ("never", "auto"),
            "train.resume",
            f"must be never or auto, got {self.resume!r}",
        )
        require(
            self.monitor in MONITORS,
            "train.monitor",
            f"must be one of {', '.join(MONITORS)}, got {self.monitor!r}"
            + ("; probabilistic scores need samples, which validation forecasts (greedy) "
               "do not draw" if self.monitor in ("val/wql", "val/crps", "val/msis",
                                                 "val/coverage_80") else ""),
        )
        require(
            self.monitor == "val/loss" or self.eval_forecast,
            "train.monitor",
            f"{self.monitor} needs train.eval_forecast=true",
        )

    @property
    def tokens_per_step_factor(self) -> int:
        """Sequences per optimiser step (batch x accumulation)."""
        return self.batch_size * self.grad_accum
