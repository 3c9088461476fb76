"""The study: storage, sampler, dead-worker recovery, and how many trials are still missing.

Counting rule (what makes ``n_trials`` a study total, shared by every worker): a trial takes one
of the study's ``n_trials`` slots unless it is a FAIL that was re-queued (its retry takes the
slot) or a surplus trial cancelled by :func:`claim`. Trials are numbered atomically by the
storage, so every worker agrees on which trial holds which slot.

Failures: when a sweep starts, RUNNING trials whose worker died are failed (Optuna's heartbeat
for RDB storages; on this host also a dead sweeper pid, for every storage), and every failed
trial gets a WAITING retry with the same parameters, up to ``max_retries`` per trial. Within
one sweep a failure is not retried (a broken config would fail again at once), except an
interrupted job.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GridSampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from lora_forecast.budget.store import pid_alive
from lora_forecast.errors import ConfigError
from lora_forecast.training.pruning import journal_path, open_storage

log = logging.getLogger(__name__)

WORKER_ATTR = "worker"  # "host:pid" of the sweeper that owns a running trial
RETRY_ATTR = "retry_of"  # system attr: numbers of the trials this one retries, oldest first
CANCELLED_ATTR = "cancelled"  # user attr of a surplus trial (not launched, takes no slot)
THIS_WORKER = f"{socket.gethostname()}:{os.getpid()}"


class QuietGridSampler(GridSampler):
    """GridSampler without its ``study.stop()`` after the last grid point (which raises outside
    ``study.optimize``); the sweeper knows when the grid is done."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        return None


@contextlib.contextmanager
def quiet_heartbeat_warnings() -> Iterator[None]:
    """Optuna flags its heartbeat API as experimental and warns that heartbeats belong to
    ``Study.optimize``; this sweeper beats for its asked trials itself (:class:`Heartbeat`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        yield


def _cmaes(**kwargs: Any) -> BaseSampler:
    if importlib.util.find_spec("cmaes") is None:
        raise ConfigError("hydra.sweeper.sampler.name=cmaes needs the `cmaes` package "
                          "(pip install cmaes)")
    return CmaEsSampler(**kwargs)


SAMPLERS: dict[str, Callable[..., BaseSampler]] = {
    "tpe": TPESampler, "random": RandomSampler, "cmaes": _cmaes, "nsgaii": NSGAIISampler,
}


def build_sampler(name: str, seed: int | None, options: dict[str, Any],
                  grid: Callable[[], dict[str, list[Any]]]) -> BaseSampler:
    """A sampler by name; ``grid`` supplies the grid's values only when name is ``grid``."""
    if name == "grid":
        return QuietGridSampler(grid(), seed=seed)
    if name not in SAMPLERS:
        raise ConfigError("hydra.sweeper.sampler.name: must be one of "
                          f"{sorted([*SAMPLERS, 'grid'])}, got {name!r}")
    return SAMPLERS[name](seed=seed, **options)


def absolute_storage(url: str) -> str:
    """The storage string with a relative SQLite or journal path made absolute, so jobs running
    in any directory (or on a cluster node sharing the file system) open the same file."""
    path = journal_path(url)
    if path is not None:
        return f"journal:{path.resolve()}"
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        path = Path(url[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def open_study(storage_url: str, study_name: str, sampler: BaseSampler,
               directions: list[str], heartbeat: tuple[int | None, int | None],
               max_retries: int) -> tuple[optuna.Study, BaseStorage]:
    """Create or load the study; fail the trials whose worker died, then re-queue every failed
    trial not yet retried (at most ``max_retries`` times along its chain)."""
    with quiet_heartbeat_warnings():
        storage = open_storage(storage_url, heartbeat_interval=heartbeat[0],
                               grace_period=heartbeat[1])
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler,
                                directions=directions, load_if_exists=True)
    existing = [d.name.lower() for d in study.directions]
    if existing != [d.lower() for d in directions]:
        raise ConfigError(f"hydra.sweeper.study_name: study {study_name!r} exists with "
                          f"directions {existing}, not {directions}")
    with quiet_heartbeat_warnings():
        optuna.storages.fail_stale_trials(study)
    fail_dead_local_trials(study)
    requeue_failures(study, max_retries)
    return study, storage


def fail_dead_local_trials(study: optuna.Study) -> list[FrozenTrial]:
    """FAIL the RUNNING trials owned by a sweeper of this host whose process is gone (works for
    every storage, heartbeat or not); returns those this call failed."""
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished meanwhile by another worker
            continue
        log.warning("trial %d: its sweeper (pid %s) is gone; marked FAIL", trial.number, pid)
        failed.append(study.trials[trial.number])
    return failed


def requeue(study: optuna.Study, trial: FrozenTrial, max_retries: int) -> bool:
    """Add a WAITING copy of a failed trial (same params and grid point) unless it was already
    retried ``max_retries`` times; the copy then takes the failed trial's slot.

    Optuna's own ``RetryFailedTrialCallback`` (deprecated in optuna 4.9 for the experimental
    ``RetryHeartbeatStaleTrialCallback``, which does not exist before 4.9) does the same
    ``add_trial`` with the same retry limit, but is kept out: it is made for RDB heartbeat
    staleness, while this also retries what no heartbeat sees (a dead local sweeper on SQLite or
    journal storage, an interrupted job, a crash in an earlier sweep); and it copies the failed
    trial's user attrs (its ``error``, its ``worker``) onto the retry, so a retry that then
    succeeds would still report the old error in the sweep's results. Here the retry records
    only ``retry_reason``; the chain lives in ``RETRY_ATTR`` (what :func:`slot_holders` reads).
    """
    history = [*trial.system_attrs.get(RETRY_ATTR, []), trial.number]
    if len(history) > max_retries:
        log.warning("trial %d: not re-queued (%d retries already)", trial.number, max_retries)
        return False
    reason = str(trial.user_attrs.get("error", "its worker died"))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_reason": reason}, system_attrs={**trial.system_attrs,
                                                           RETRY_ATTR: history}))
    log.info("trial %d re-queued (it failed: %s)", trial.number, reason)
    return True


def requeue_failures(study: optuna.Study, max_retries: int) -> int:
    """Re-queue every FAIL trial that no other trial retries yet; returns how many.

    Run at the start of a sweep: a failure (a dead worker, a crash, an environment problem
    fixed since) gets another go, a trial that keeps failing stops after ``max_retries``.
    Two workers starting at the same moment may both re-queue one failure; the extra copy
    stays WAITING or is cancelled as surplus by :func:`claim`, so no slot is run twice.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_ATTR, [])}
    failed = [t for t in trials if t.state == TrialState.FAIL and t.number not in retried]
    return sum(requeue(study, t, max_retries) for t in failed)


def slot_holders(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that take a slot of ``n_trials`` (see the module docstring), by number."""
    trials = list(trials)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_ATTR, [])}
    return sorted((t for t in trials if not (t.state == TrialState.FAIL and t.number in retried)
                   and CANCELLED_ATTR not in t.user_attrs), key=lambda t: t.number)


def missing(study: optuna.Study, n_trials: int) -> int:
    """How many trials may still be asked: free slots plus re-queued (WAITING) trials."""
    holders = slot_holders(study.get_trials(deepcopy=False))
    waiting = sum(t.state == TrialState.WAITING for t in holders)
    return n_trials - len(holders) + waiting


def claim(study: optuna.Study, trial: optuna.trial.Trial, n_trials: int) -> bool:
    """True if ``trial`` holds one of the first ``n_trials`` slots; otherwise another worker
    filled the study first, and the trial is cancelled (PRUNED, ``cancelled=surplus``)."""
    holders = slot_holders(study.get_trials(deepcopy=False))
    if sum(t.number < trial.number for t in holders) < n_trials:
        trial.set_user_attr(WORKER_ATTR, THIS_WORKER)
        return True
    trial.set_user_attr(CANCELLED_ATTR, "surplus")
    study.tell(trial, state=TrialState.PRUNED)
    return False


class Heartbeat:
    """Records a heartbeat for running trials every ``interval`` seconds while a batch runs, so
    a worker on another machine can tell this one died (RDB storages with a heartbeat only)."""

    def __init__(self, storage: BaseStorage, trial_ids: list[int]) -> None:
        self._storage = storage
        self._ids = trial_ids
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="trial-heartbeat")

    def _beat(self) -> None:
        while True:
            for trial_id in self._ids:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal
                    log.warning("heartbeat for trial id %d failed: %s", trial_id, exc)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Heartbeat:
        if self._interval is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
