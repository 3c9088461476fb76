"""``python -m lora_forecast.forecast run=<run dir> input=<file> horizon=<steps>``."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lora_forecast.command import hydra_command
from lora_forecast.config import Settings, register_configs, resolved_config, to_settings

register_configs()
JOB_KEYS = ("run", "input", "horizon", "out", "plot_series")
# Keys of the command line that apply on top of a run's recorded config: how to read the input,
# how to decode, which budget to charge. The model, adapter and scaling stay the run's.
OVERRIDABLE = ("data.", "eval.", "budget.")


@dataclass
class ForecastRoot(Settings):
    """The training settings plus the command's own keys (validated in ForecastJob)."""

    run: str | None = None
    input: str = "???"
    horizon: int = 1
    out: str = "???"
    plot_series: int = 4


ConfigStore.instance().store(name="forecast_schema", node=ForecastRoot)


def _settings(cfg: DictConfig) -> tuple[Settings, dict]:
    """The run's config with the user's data/eval/budget overrides, or the composed one."""
    from lora_forecast.run_folder import run_config, settings_from

    composed = {k: v for k, v in resolved_config(cfg).items() if k not in JOB_KEYS}
    if cfg.run is None:
        return to_settings(OmegaConf.create(composed)), composed
    overrides = [o for o in HydraConfig.get().overrides.task
                 if o.startswith(OVERRIDABLE) and not o.startswith("data.path=")]
    config = run_config(cfg.run)
    config["data"]["path"] = cfg.input
    settings = settings_from(config, overrides)
    return settings, config


@hydra_command("forecast")
def cli(cfg: DictConfig) -> None:
    """Forecast the input's series past their ends and write the table (and a plot)."""
    from lora_forecast.forecast_job import ForecastJob, run_forecast_job

    job = ForecastJob(cfg.run, str(cfg.input), int(cfg.horizon), str(cfg.out),
                      int(cfg.plot_series))
    settings, config = _settings(cfg)
    out = run_forecast_job(job, settings, config)
    print(f"forecasts written to {out}")


if __name__ == "__main__":
    cli()
