"""``python -m lora_forecast [+experiment=NAME] [group=option] [key=value] [--multirun]``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lora_forecast.cli import defer_hydra_error_reports, one_line_error, restore_user_error_setting
from lora_forecast.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: returns the monitored validation metric (the sweeper's objective)."""
    restore_user_error_setting()  # from here on, errors are reported as the user asked
    from lora_forecast.quiet import quiet_third_party  # heavy imports after Hydra parsed the CLI
    from lora_forecast.task import run_task

    quiet_third_party()  # library warnings we cannot fix: filtered or logged once (see module)

    hydra_cfg = HydraConfig.get()
    return run_task(cfg, Path(hydra_cfg.runtime.output_dir),
                    multirun=hydra_cfg.mode == RunMode.MULTIRUN)


def cli() -> None:
    """``main`` with Hydra's composition errors (bad override, unknown key) as one line."""
    deferred = defer_hydra_error_reports()
    try:
        main()
    except Exception as exc:  # raised before the task started, or a bug: see lora_forecast.cli
        message = one_line_error(exc) if deferred else None
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
