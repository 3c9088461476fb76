"""``logger.*``: experiment tracking (conf/logger/), and the sweeper's trial handle."""

from __future__ import annotations

from dataclasses import dataclass, field

from lora_forecast.config.checks import require

LOGGERS = ("none", "wandb")  # tracking.TRACKERS (import-free; tested equal)


@dataclass
class LoggerConfig:
    """Experiment tracking. ``name=none`` logs nothing; ``wandb`` is offline unless mode=online."""

    name: str = "none"
    project: str = "lora-forecast"
    entity: str | None = None
    mode: str = "offline"
    group: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(
            self.name in LOGGERS,
            "logger.name",
            f"must be one of {LOGGERS}, got {self.name!r}",
        )
        require(
            self.mode in ("offline", "online", "disabled"),
            "logger.mode",
            f"must be offline, online or disabled, got {self.mode!r}",
        )


@dataclass
class TrialConfig:
    """Set by the budgeted Optuna sweeper so a job can report to (and be pruned by) its trial."""

    storage: str | None = None
    study_name: str | None = None
    number: int | None = None
