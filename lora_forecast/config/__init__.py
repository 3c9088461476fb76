"""Structured-config schema: one dataclass per config group, validated where it is defined.

One module per config group, as ``conf/`` has one folder per group (``model``, ``lora``,
``data``, ``train``, ``eval``, ``budget``, ``logger``); this package holds the root
:class:`Settings` and re-exports every group's class and vocabulary.

Hydra composes YAML from ``conf/`` on top of these dataclasses (registered in the ConfigStore as
``<group>/schema``), so a wrong *type* fails at composition. Semantic checks (rank >= 1, lr > 0,
...) live in ``__post_init__`` and run when :func:`to_settings` converts the composed config with
``OmegaConf.to_object``: once, at the entry point, before any model or data is loaded.

Defaults: the YAML files a user reads (``conf/<group>/<default option>.yaml``) hold the values;
each dataclass default equals what the default composition gives (interpolations resolved), so
code that builds these classes directly gets the same run. ``tests/test_config.py`` checks
every field of every group; change both sides together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lora_forecast.config.budget import ACCOUNTINGS, BudgetConfig
from lora_forecast.config.checks import require
from lora_forecast.config.data import (
    LAYOUTS,
    MISSING,
    NUMBER_FORMATS,
    SCALINGS,
    DataConfig,
    SplitConfig,
)
from lora_forecast.config.eval import EvalConfig
from lora_forecast.config.groups import SCHEMA_NAME
from lora_forecast.config.logger import LOGGERS, LoggerConfig, TrialConfig
from lora_forecast.config.lora import LoraConfig
from lora_forecast.config.model import HEADS, ModelConfig
from lora_forecast.config.train import MONITORS, PRECISIONS, SCHEDULES, TrainConfig
from lora_forecast.errors import ConfigError, omegaconf_key_and_reason

__all__ = [
    "ACCOUNTINGS", "GROUP_SCHEMAS", "HEADS", "LAYOUTS", "LOGGERS", "MISSING", "MONITORS",
    "NUMBER_FORMATS", "PRECISIONS", "SCALINGS", "SCHEDULES", "SCHEMA_NAME", "BudgetConfig",
    "DataConfig", "EvalConfig", "LoggerConfig", "LoraConfig", "ModelConfig", "Settings",
    "SplitConfig", "TrainConfig", "TrialConfig", "register_configs", "resolved_config",
    "to_settings",
]


@dataclass
class Settings:
    """The whole run, validated. Built once by :func:`to_settings`; never mutated afterwards."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    experiment: str = "default"
    task: str = "finetune"
    output_dir: str = "outputs"

    def __post_init__(self) -> None:
        require(
            self.task in ("finetune", "evaluate", "baselines"),
            "task",
            f"must be finetune, evaluate or baselines, got {self.task!r}",
        )


GROUP_SCHEMAS: dict[str, type] = {
    "model": ModelConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "budget": BudgetConfig,
    "logger": LoggerConfig,
}


def register_configs() -> None:
    """Register the root schema and one ``<group>/schema`` node per group for YAML to extend."""
    store = ConfigStore.instance()
    store.store(name="settings_schema", node=Settings)
    for group, schema in GROUP_SCHEMAS.items():
        store.store(group=group, name=SCHEMA_NAME, node=schema)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as a plain resolved dict, without Hydra's own node.

    The ``hydra`` node is dropped *before* resolving: in a sweep it holds interpolations
    (``hydra.job.num``) that only exist once a job runs.
    """
    unresolved = OmegaConf.to_container(cfg, resolve=False)
    unresolved.pop("hydra", None)
    resolved = OmegaConf.to_container(OmegaConf.create(unresolved), resolve=True)
    assert isinstance(resolved, dict)
    return resolved


def to_settings(cfg: DictConfig) -> Settings:
    """Convert the composed Hydra config into validated :class:`Settings` (raises ConfigError)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Settings), resolved_config(cfg))
    except OmegaConfBaseException as exc:  # e.g. train.lr='${oops}': an unresolvable value
        key, reason = omegaconf_key_and_reason(exc)
        raise ConfigError(f"{key}: {reason}" if key else reason) from exc
    settings = OmegaConf.to_object(merged)
    assert isinstance(settings, Settings)
    return settings
