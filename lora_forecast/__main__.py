"""``python -m lora_forecast [+experiment=NAME] [group=option] [key=value] [--multirun]``."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lora_forecast.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: returns the monitored validation metric (the sweeper's objective)."""
    from lora_forecast.task import run_task  # heavy imports after Hydra parsed the CLI

    hydra_cfg = HydraConfig.get()
    return run_task(cfg, Path(hydra_cfg.runtime.output_dir),
                    multirun=hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    main()
