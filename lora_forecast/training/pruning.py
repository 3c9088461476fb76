"""The job side of an Optuna trial: report validation metrics, learn whether to stop early.

The ``budgeted_optuna`` sweeper (``hydra_plugins/budgeted_optuna_sweeper``) launches every job
with ``trial.storage=... trial.study_name=... trial.number=...``. From those three values a job
reopens its study, reports each validation metric as an intermediate value and asks the
study's pruner whether to stop (the training loop then ends with status ``pruned``).

Optuna does not persist a study's pruner, so the sweeper stores its spec as the study user
attribute ``pruner`` (``{"name": "median", "options": {...}}``) and :func:`build_pruner`
rebuilds it here: every worker, on any machine, prunes with the same rule.

:func:`open_storage` is shared with the sweeper: an RDB URL (``sqlite:///``, ``postgresql://``,
``mysql://``) opens an :class:`optuna.storages.RDBStorage`; ``journal:PATH`` or a path ending in
``.log``/``.journal`` opens a :class:`optuna.storages.JournalStorage` on that file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    ThresholdPruner,
)
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from lora_forecast.errors import ConfigError

log = logging.getLogger(__name__)

PRUNER_ATTR = "pruner"  # study user attribute holding the pruner spec
PRUNED_AT_ATTR = "pruned_at_step"  # trial user attribute set when the pruner stops a trial
JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIXES = (".log", ".journal")
SQLITE_TIMEOUT_S = 60

# name -> factory(**options); the options are the pruner's own keyword arguments.
PRUNERS: dict[str, Callable[..., BasePruner]] = {
    "none": NopPruner,
    "median": MedianPruner,
    "percentile": PercentilePruner,
    "successive_halving": SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
    "threshold": ThresholdPruner,  # e.g. upper: 10.0 stops diverging runs
}


def journal_path(url: str) -> Path | None:
    """The journal file a storage string names, or None for a database URL.

    >>> journal_path("journal:outputs/optuna.log")
    PosixPath('outputs/optuna.log')
    >>> journal_path("sqlite:///outputs/optuna.sqlite") is None
    True
    """
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    if "://" not in url and url.endswith(JOURNAL_SUFFIXES):
        return Path(url)
    return None


def open_storage(url: str, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None) -> BaseStorage:
    """Open an Optuna storage from a URL or journal path (see the module docstring).

    Args:
        url: ``sqlite:///...``, ``postgresql+psycopg://...``, ``mysql+pymysql://...``,
            ``journal:PATH`` or ``PATH.log``.
        heartbeat_interval, grace_period: RDB only; seconds between heartbeats of a running
            trial and how long without one makes it stale (None: no heartbeat).
    """
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                      grace_period=grace_period if heartbeat_interval else None)


def build_pruner(spec: Mapping[str, Any] | None) -> BasePruner:
    """A pruner from ``{"name": ..., "options": {...}}``; None or name ``none``: never prune."""
    if not spec:
        return NopPruner()
    name = str(spec.get("name", "none"))
    if name not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner.name: must be one of {sorted(PRUNERS)}, "
                          f"got {name!r}")
    return PRUNERS[name](**dict(spec.get("options") or {}))


class TrialReporter:
    """Reports one job's validation metrics to its Optuna trial and relays the pruner's verdict.

    A reporting error (storage unreachable, trial already finished elsewhere) is logged once
    and reporting stops: a sweep's bookkeeping never kills the training it observes.
    """

    def __init__(self, study: optuna.Study, trial: optuna.trial.Trial) -> None:
        self.study = study
        self.trial = trial
        self._enabled = True

    @classmethod
    def from_settings(cls, trial_cfg: Any) -> TrialReporter | None:
        """The reporter for ``settings.trial`` (storage, study_name, number); None outside a sweep,
        for a multi-objective study (Optuna prunes single-objective studies only), or when the
        study cannot be reached (logged: the job then trains to the end, unreported)."""
        storage_url = getattr(trial_cfg, "storage", None)
        study_name = getattr(trial_cfg, "study_name", None)
        number = getattr(trial_cfg, "number", None)
        if storage_url is None or study_name is None or number is None:
            return None
        try:
            return cls._load(storage_url, study_name, int(number))
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the run
            log.warning("trial %s of study %r: cannot open it in %s (%s); metrics will not be "
                        "reported and the pruner will not be asked", number, study_name,
                        storage_url, exc)
            return None

    @classmethod
    def _load(cls, storage_url: str, study_name: str, number: int) -> TrialReporter | None:
        storage = open_storage(storage_url)
        study_id = storage.get_study_id_from_name(study_name)
        pruner = build_pruner(storage.get_study_user_attrs(study_id).get(PRUNER_ATTR))
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
        if len(study.directions) > 1:
            log.info("trial %d: multi-objective study, intermediate values not reported", number)
            return None
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        return cls(study, optuna.trial.Trial(study, trial_id))

    @property
    def number(self) -> int:
        return self.trial.number

    def report(self, step: int, value: float) -> bool:
        """Record ``value`` at ``step``; True means the pruner says stop this trial now."""
        if not self._enabled:
            return False
        try:
            self.trial.report(float(value), int(step))
            if not self.trial.should_prune():
                return False
            self.trial.set_user_attr(PRUNED_AT_ATTR, int(step))
        except Exception as exc:  # noqa: BLE001 - any storage failure: keep training
            log.warning("trial %d: reporting to the study failed (%s); reporting stops",
                        self.trial.number, exc)
            self._enabled = False
            return False
        log.info("trial %d pruned at step %d (value %.4g)", self.trial.number, step, value)
        return True
