"""``python -m lora_forecast.benchmark suite=<name> [models=[<run>,...]]`` (also the
``lora-forecast-benchmark`` console script): the leaderboard of a suite."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from lora_forecast.benchmark.suite import SuiteConfig
from lora_forecast.command import hydra_command
from lora_forecast.config import (
    SCHEMA_NAME,
    Settings,
    register_configs,
    resolved_config,
    to_settings,
)
from lora_forecast.errors import ConfigError

register_configs()
# The command's own keys; everything else is the training settings (model, data, eval, budget).
JOB_KEYS = ("suite", "models", "zero_shot", "baselines", "leak", "max_windows", "progress",
            "rerun", "out")


@dataclass
class BenchmarkRoot(Settings):
    """The training settings plus the command's own keys (validated in ``BenchmarkJob``)."""

    suite: SuiteConfig | None = None
    models: list[str] = field(default_factory=list)
    zero_shot: bool = True
    baselines: list[str] = field(default_factory=list)
    leak: str = "flag"
    max_windows: int | None = None
    progress: bool = True
    rerun: str | None = None
    out: str = "???"


ConfigStore.instance().store(name="benchmark_schema", node=BenchmarkRoot)
ConfigStore.instance().store(group="suite", name=SCHEMA_NAME, node=SuiteConfig)


def rerun_config(path: str) -> dict[str, Any]:
    """The resolved config a leaderboard's ``config.json`` recorded.

    Raises:
        ConfigError: ``rerun: <path>: ...`` when it is not one.
    """
    try:
        config = json.loads(Path(path).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"rerun: {path}: not a leaderboard's config.json ({exc})") from None
    if not isinstance(config, dict) or "suite" not in config:
        raise ConfigError(f"rerun: {path}: not a leaderboard's config.json (no suite)")
    return config


def build(config: dict[str, Any]) -> tuple[Any, Settings]:
    """The validated job and settings of a resolved benchmark config."""
    from lora_forecast.benchmark.run import BenchmarkJob

    if config.get("suite") is None:
        raise ConfigError("suite: required, e.g. suite=statsmodels (conf/suite/)")
    suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SuiteConfig),
                                                config["suite"]))
    job = BenchmarkJob(suite, str(config["out"]), [str(m) for m in config["models"]],
                       bool(config["zero_shot"]), [str(b) for b in config["baselines"]],
                       str(config["leak"]), config["max_windows"], bool(config["progress"]))
    settings = to_settings(OmegaConf.create({k: v for k, v in config.items()
                                             if k not in JOB_KEYS}))
    return job, settings


def benchmark(config: dict[str, Any]) -> Path:
    """Run the benchmark a resolved config describes (``rerun=``: the recorded one, into this
    config's ``out``); returns the leaderboard's folder."""
    from lora_forecast.benchmark.run import run_benchmark

    if config.get("rerun"):
        config = {**rerun_config(config["rerun"]), "out": config["out"], "rerun": None}
    job, settings = build(config)
    return run_benchmark(job, settings, config)


@hydra_command("benchmark")
def cli(cfg: DictConfig) -> None:
    """Score the suite's competitors and write the leaderboard."""
    config = resolved_config(cfg)
    out = benchmark(config)
    budget = config["budget"]
    print((out / "leaderboard.md").read_text())
    print(f"leaderboard written to {out}\nFLOPs: python -m lora_forecast.budget report "
          f"--ledger {budget['ledger_url']} --study {budget['study']}")


if __name__ == "__main__":
    cli()
