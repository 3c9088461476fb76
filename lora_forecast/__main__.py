"""``python -m lora_forecast [+experiment=NAME] [group=option] [key=value] [--multirun]``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lora_forecast.cli import (
    config_groups_text,
    report_user_error,
    restore_user_error_setting,
    run_cli,
    schema_choice_error,
)
from lora_forecast.config import register_configs
from lora_forecast.errors import ConfigError
from lora_forecast.job import discard_unused_run_dir
from lora_forecast.paths import config_dir

register_configs()
OmegaConf.register_new_resolver("lora_forecast_groups", config_groups_text, replace=True)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: returns the monitored validation metric (the sweeper's objective)."""
    restore_user_error_setting()  # from here on, errors are reported as the user asked
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    schema_error = schema_choice_error(hydra_cfg.runtime.choices)
    if schema_error:
        _refuse(schema_error, Path(hydra_cfg.runtime.output_dir), Path(cfg.output_dir), multirun)
    from lora_forecast.quiet import quiet_third_party  # heavy imports after Hydra parsed the CLI
    from lora_forecast.task import run_task

    quiet_third_party()  # library warnings we cannot fix: filtered or logged once (see module)

    return run_task(cfg, Path(hydra_cfg.runtime.output_dir), multirun=multirun)


def _refuse(message: str, run_dir: Path, output_dir: Path, multirun: bool) -> None:
    """A config error found here, reported like the task's own (one line, exit 1)."""
    if multirun:
        raise ConfigError(message)
    discard_unused_run_dir(run_dir, output_dir)
    sys.exit(report_user_error(ConfigError(message)))


def cli() -> None:
    """``main`` with Hydra's composition errors (bad override, unknown key) as one line."""
    run_cli(main)


if __name__ == "__main__":
    cli()
