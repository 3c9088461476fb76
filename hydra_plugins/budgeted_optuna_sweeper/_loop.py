"""One sweep, batch by batch: ask -> claim a slot -> admit by budget -> launch -> tell.

Each batch asks up to ``n_jobs`` trials for the study's missing slots, refuses (PRUNED,
``rejected_by=budget``) those the budget cannot pay for, launches the rest together through the
configured Hydra launcher, and tells Optuna how each job ended. The sweep ends when the study
holds ``n_trials`` trials, when ``stop_after_rejections`` trials in a row were refused, or
raises once more than ``max_failure_rate * n_trials`` trials failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hydra_plugins.budgeted_optuna_sweeper._admission import BudgetAdmission, Verdict
from hydra_plugins.budgeted_optuna_sweeper._outcome import Outcome, classify
from hydra_plugins.budgeted_optuna_sweeper._results import public_url, summarize, write_results
from hydra_plugins.budgeted_optuna_sweeper._search_space import (
    SearchSpace,
    format_value,
    params_to_overrides,
    parse_search_space,
)
from hydra_plugins.budgeted_optuna_sweeper._study import (
    Heartbeat,
    absolute_storage,
    build_sampler,
    claim,
    missing,
    open_study,
    quiet_heartbeat_warnings,
    requeue,
)
from lora_forecast.errors import ConfigError
from lora_forecast.training.pruning import PRUNED_AT_ATTR, PRUNER_ATTR

log = logging.getLogger(__name__)
_ABSENT = object()


@dataclass
class Tally:
    """What this sweep process did (the study itself may hold other workers' trials)."""

    launched: int = 0
    rejected: int = 0
    rejected_in_a_row: int = 0
    failures: list[str] = field(default_factory=list)


class SweepLoop:
    """Runs one ``--multirun`` invocation for :class:`BudgetedOptunaSweeper`."""

    def __init__(self, options: dict[str, Any], config: DictConfig, config_loader: Any,
                 launcher: Any) -> None:
        self.opts = options
        self.config = config
        self.loader = config_loader
        self.launcher = launcher
        self.directions = _directions(options["direction"])
        self.storage_url = absolute_storage(str(options["storage"]))
        self.study_name = options["study_name"] or _default_study_name(config)
        self.tally = Tally()
        self.returns: list[Sequence[JobReturn]] = []
        self.job_idx = 0
        self.storage: Any = None

    # ---- setup -----------------------------------------------------------------------------

    def _open(self, space: SearchSpace) -> tuple[optuna.Study, int]:
        sampler_cfg = self.opts["sampler"]
        sampler = build_sampler(sampler_cfg["name"], sampler_cfg.get("seed"),
                                dict(sampler_cfg.get("options") or {}), space.grid)
        n_trials = int(self.opts["n_trials"])
        if sampler_cfg["name"] == "grid":
            n_trials = min(n_trials, _grid_size(space))
        study, self.storage = open_study(
            self.storage_url, self.study_name, sampler, self.directions,
            (self.opts["heartbeat_interval"], self.opts["grace_period"]),
            int(self.opts["max_retries"]))
        pruner = {"name": self.opts["pruner"]["name"],
                  "options": dict(self.opts["pruner"].get("options") or {})}
        study.set_user_attr(PRUNER_ATTR, pruner)
        log.info("study %r in %s: %s sampler, %s pruner, %d trials, directions %s",
                 self.study_name, public_url(self.storage_url), sampler_cfg["name"], pruner["name"],
                 n_trials, self.directions)
        return study, n_trials

    def run(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        space = parse_search_space([*params_to_overrides(self.opts["params"]), *arguments])
        if not space.params:
            log.warning("no search space: every trial runs the same config")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study, n_trials = self._open(space)
        admission = (BudgetAdmission(self.loader, self.config)
                     if self.opts["budget_admission"] else None)
        try:
            self._batches(study, space, n_trials, admission)
        finally:
            if admission is not None:
                admission.close()
            summary = summarize(study, self.storage_url, n_trials, space.run_overrides)
            path = write_results(sweep_dir, summary)
            log.info("this sweep: %d trials launched, %d refused by the budget, %d failed; "
                     "study %r: %s; best %s -> %s", self.tally.launched, self.tally.rejected,
                     len(self.tally.failures), self.study_name, summary["states"],
                     summary.get("best_params", "pareto front"), path)
        return self.returns

    # ---- batches ---------------------------------------------------------------------------

    def _batches(self, study: optuna.Study, space: SearchSpace, n_trials: int,
                 admission: BudgetAdmission | None) -> None:
        limit = self.opts["stop_after_rejections"]
        while True:
            want = min(int(self.opts["n_jobs"]), missing(study, n_trials))
            if want <= 0:
                return
            with quiet_heartbeat_warnings():
                asked = [study.ask(space.distributions()) for _ in range(want)]
            trials = [t for t in asked if claim(study, t, n_trials)]
            if not trials:
                return
            batch = [self._job_overrides(space, t) for t in trials]
            # Trial ids are what Optuna's heartbeat API takes (no public accessor).
            with Heartbeat(self.storage, [t._trial_id for t in trials]):
                launch = self._admit(study, trials, batch, admission)
                if launch:
                    self._launch(study, [trials[i] for i in launch],
                                 [batch[i] for i in launch])
            self._check_failures(n_trials)
            if limit is not None and self.tally.rejected_in_a_row >= limit:
                log.warning("%d trials in a row rejected by the budget: no admissible trial "
                            "remains; the sweep ends", self.tally.rejected_in_a_row)
                return

    def _job_overrides(self, space: SearchSpace, trial: optuna.trial.Trial) -> list[str]:
        overrides = space.overrides(trial.params)
        overrides += [f"++trial.storage={format_value(self.storage_url)}",
                      f"++trial.study_name={format_value(self.study_name)}",
                      f"++trial.number={trial.number}"]
        if self.opts["trial_subdir"]:
            subdir = str(self.opts["trial_subdir"]).format(number=trial.number)
            overrides.append(f"hydra.sweep.subdir={format_value(subdir)}")
        key = self.opts["group_key"]
        user_set = key in space.keys()  # noqa: SIM118 - keys() is SearchSpace's, not a dict's
        if key and not user_set and \
                OmegaConf.select(self.config, key, default=_ABSENT) is not _ABSENT:
            overrides.append(f"++{key}={format_value(self.study_name)}")
        return overrides

    def _refuse(self, study: optuna.Study, trials: list[optuna.trial.Trial],
                verdicts: list[Verdict | None]) -> list[int]:
        """Tell the refused trials PRUNED (over budget) or FAIL (config error); return the
        indices of those to launch."""
        launch = []
        for i, (trial, verdict) in enumerate(zip(trials, verdicts, strict=True)):
            if verdict is not None and verdict.error is not None:
                self._fail(study, trial, verdict.error)
            elif verdict is not None and not verdict.admitted:
                log.warning("trial %d not launched, budget %s", trial.number, verdict.describe())
                self._tell(study, trial, Outcome(TrialState.PRUNED, attrs=verdict.attrs()))
                self.tally.rejected += 1
                self.tally.rejected_in_a_row += 1
            else:
                if verdict is not None:
                    trial.set_user_attr("predicted_flops", verdict.predicted)
                launch.append(i)
        if launch:
            self.tally.rejected_in_a_row = 0
        return launch

    def _fail(self, study: optuna.Study, trial: optuna.trial.Trial, error: str) -> None:
        self._tell(study, trial, Outcome(TrialState.FAIL, attrs={"error": error}, error=error))
        self.tally.failures.append(f"trial {trial.number}: {error}")

    def _admit(self, study: optuna.Study, trials: list[optuna.trial.Trial],
               batch: list[list[str]], admission: BudgetAdmission | None) -> list[int]:
        if admission is None:
            return list(range(len(trials)))
        try:
            verdicts: list[Verdict | None] = list(admission.batch(batch))
        except BaseException as exc:  # leave no trial RUNNING behind
            for trial in trials:
                self._fail(study, trial, f"admission failed: {type(exc).__name__}: {exc}")
            raise
        return self._refuse(study, trials, verdicts)

    def _launch(self, study: optuna.Study, trials: list[optuna.trial.Trial],
                batch: list[list[str]]) -> None:
        log.info("launching trials %s", [t.number for t in trials])
        returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        self.tally.launched += len(returns)
        self.returns.append(returns)
        # Read back from the storage: a Trial object's cached attrs miss what its job wrote.
        stored = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial, ret in zip(trials, returns, strict=True):
            pruned = PRUNED_AT_ATTR in stored[trial.number].user_attrs
            outcome = classify(ret, len(self.directions), pruned)
            self._tell(study, trial, outcome)
            if outcome.retry:
                requeue(study, study.trials[trial.number], int(self.opts["max_retries"]))
            elif outcome.state == TrialState.FAIL:
                self.tally.failures.append(f"trial {trial.number}: {outcome.error}")
            else:
                log.info("trial %d %s %s", trial.number, outcome.state.name,
                         outcome.values if outcome.values is not None else "")

    def _tell(self, study: optuna.Study, trial: optuna.trial.Trial, outcome: Outcome) -> None:
        try:
            for key, value in outcome.attrs.items():
                trial.set_user_attr(key, value)
        except Exception as exc:  # noqa: BLE001 - finished meanwhile (failed as stale)
            log.warning("trial %d: attributes not recorded (%s)", trial.number, exc)
        study.tell(trial, outcome.values, state=outcome.state, skip_if_finished=True)
        if outcome.state == TrialState.FAIL:
            log.warning("trial %d FAILED: %s", trial.number, outcome.error)

    def _check_failures(self, n_trials: int) -> None:
        failures = self.tally.failures
        if len(failures) > float(self.opts["max_failure_rate"]) * n_trials:
            raise HydraException(
                f"{len(failures)} failed trials exceed max_failure_rate="
                f"{self.opts['max_failure_rate']} of n_trials={n_trials}:\n  "
                + "\n  ".join(failures))


def _directions(direction: Any) -> list[str]:
    items = [direction] if isinstance(direction, str) else list(direction)
    for item in items:
        if str(item).lower() not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction: minimize or maximize, got {item!r}")
    return [str(item).lower() for item in items]


def _default_study_name(config: DictConfig) -> str:
    job = str(config.hydra.job.name)
    budget_study = OmegaConf.select(config, "budget.study", default=None)
    return f"{budget_study}-{job}" if budget_study else job


def _grid_size(space: SearchSpace) -> int:
    size = 1
    for values in space.grid().values():
        size *= len(values)
    return size
