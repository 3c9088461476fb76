"""``python -m lora_forecast [+experiment=NAME] [group=option] [key=value] [--multirun]``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lora_forecast.command import hydra_command
from lora_forecast.config import register_configs
from lora_forecast.config.groups import config_groups_text

register_configs()
OmegaConf.register_new_resolver("lora_forecast_groups", config_groups_text, replace=True)


@hydra_command("config")
def cli(cfg: DictConfig) -> float | None:
    """Train, evaluate or score baselines as configured; returns the monitored validation
    metric (the sweeper's objective)."""
    from lora_forecast.task import run_task  # the model stack only after Hydra parsed argv

    hydra_cfg = HydraConfig.get()
    return run_task(cfg, Path(hydra_cfg.runtime.output_dir),
                    multirun=hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    cli()
