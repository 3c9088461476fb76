"""The Hydra plugin class. Kept light: Hydra imports this module at every start to discover
plugins, so Optuna and the project are imported only when a sweep really runs."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from lora_forecast.errors import ConfigError  # dependency-free, keeps discovery light


def _validate(options: dict[str, Any]) -> None:
    problems = []
    if int(options["n_trials"]) < 1:
        problems.append(f"n_trials must be >= 1, got {options['n_trials']}")
    if int(options["n_jobs"]) < 1:
        problems.append(f"n_jobs must be >= 1, got {options['n_jobs']}")
    if not 0.0 <= float(options["max_failure_rate"]) <= 1.0:
        problems.append(f"max_failure_rate must be in [0, 1], got {options['max_failure_rate']}")
    if int(options["max_retries"]) < 0:
        problems.append(f"max_retries must be >= 0, got {options['max_retries']}")
    if problems:
        raise ConfigError("hydra.sweeper: " + "; ".join(problems))


class BudgetedOptunaSweeper(Sweeper):
    """Optuna sweeper with FLOPs-budget admission, pruning and resumable, shared studies.

    The keyword arguments are the fields of
    :class:`hydra_plugins.budgeted_optuna_sweeper.config.BudgetedOptunaSweeperConf`.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = {k: OmegaConf.to_container(v, resolve=True)
                        if OmegaConf.is_config(v) else v for k, v in options.items()}
        _validate(self.options)
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.budgeted_optuna_sweeper._loop import SweepLoop

        assert self.config is not None and self.hydra_context is not None
        loop = SweepLoop(self.options, self.config, self.hydra_context.config_loader,
                         self.launcher)
        return loop.run(arguments)
