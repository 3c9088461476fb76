"""The sweeper's structured config, registered as ``hydra/sweeper=budgeted_optuna``.

Every field can be set in a ``hparams_search`` file (``hydra.sweeper.<field>``) or on the
command line (``hydra.sweeper.n_trials=30``). See ``conf/hparams_search/*.yaml`` for examples.

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module
before it is in ``sys.modules``, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    """``name``: tpe | random | grid | cmaes (needs the ``cmaes`` package) | nsgaii (several
    objectives). ``options`` are the sampler's own keyword arguments (``n_startup_trials``...).
    Give every worker of a distributed grid sweep the same seed."""

    name: str = "tpe"
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrunerConf:
    """``name``: none | median | percentile | successive_halving | hyperband | threshold;
    ``options`` are the pruner's keyword arguments (steps are optimiser steps:
    ``n_warmup_steps: 200``). Add an option absent from the file with ``++``:
    ``++hydra.sweeper.pruner.options.n_startup_trials=3``."""

    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BudgetedOptunaSweeperConf:
    _target_: str = "hydra_plugins.budgeted_optuna_sweeper.sweeper.BudgetedOptunaSweeper"
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # minimize | maximize, or a list of them for a multi-objective study (the task then
    # returns one value per objective).
    direction: Any = "minimize"
    # Any Optuna RDB URL (sqlite:///..., postgresql+psycopg://..., mysql+pymysql://...), or a
    # journal file: journal:PATH or PATH.log. A relative SQLite/journal path is made absolute.
    storage: str = "sqlite:///${oc.select:output_dir,outputs}/optuna.sqlite"
    # null: "<budget.study>-<hydra.job.name>". Re-using a name resumes that study.
    study_name: str | None = None
    # Total trials of the study (finished ones count), so re-running resumes. A grid sweep is
    # capped at the grid's size.
    n_trials: int = 20
    # Trials asked, admitted and launched together through the configured Hydra launcher.
    n_jobs: int = 1
    # The sweep aborts once more than max_failure_rate * n_trials trials failed in this run.
    max_failure_rate: float = 0.5
    # Search space in Hydra's override grammar: choice(...), interval(a, b),
    # int(interval(a, b)), tag(log, interval(a, b)), range(a, b, step), or a fixed value.
    # An empty dict, not null: setting it whole on the command line without ``+`` then gets
    # Hydra's "use +hydra.sweeper.params=..." hint, not an OmegaConf AttributeError on None.
    params: dict[str, Any] | None = field(default_factory=dict)
    # Predict each trial's FLOPs and refuse those that would exceed budget.max_flops.
    budget_admission: bool = True
    # End the sweep after this many budget rejections in a row (null: never).
    stop_after_rejections: int | None = 10
    # Trials left RUNNING by a dead worker, or interrupted, are re-queued at most this often.
    max_retries: int = 2
    # RDB storages: seconds between heartbeats of running trials, and the silence after which
    # another worker fails them as stale (null: off; same-host dead workers are always found).
    heartbeat_interval: int | None = 60
    grace_period: int | None = 600
    # Config key set to the study name in every trial (W&B runs grouped by study); null: none.
    group_key: str | None = "logger.group"
    # Each trial's run directory under hydra.sweep.dir, named by its study-wide trial number,
    # so resumed sweeps and several workers never collide (null: hydra.sweep.subdir as set).
    trial_subdir: str | None = "trial_{number}"


ConfigStore.instance().store(group="hydra/sweeper", name="budgeted_optuna",
                             node=BudgetedOptunaSweeperConf, provider="budgeted_optuna_sweeper")
