"""One benchmark run, top to bottom: tasks -> windows -> plans -> admit -> forecast -> score.

Order is the budget's guarantee, as for a training run: every task is loaded and checked, every
LLM forecast planned and its cost predicted, and every LLM competitor admitted by the ledger (one
row each, in the run's own study) before any model is loaded or any forecast made; a refusal
leaves nothing reserved and nothing written. The leaderboard is written to a temporary folder
renamed to ``out`` only when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lora_forecast.benchmark.classical import classical_forecast
from lora_forecast.benchmark.llm import (
    LLMEntry,
    TaskPlan,
    forecast_task,
    leaked_ids,
    load_entry_model,
    plan_task,
    trained_entry,
    zero_shot_entry,
)
from lora_forecast.benchmark.scores import task_scores
from lora_forecast.benchmark.suite import SuiteConfig, TaskConfig, load_task
from lora_forecast.benchmark.windows import Windows, rolling_windows
from lora_forecast.config import Settings
from lora_forecast.data.series import SeriesSet
from lora_forecast.errors import BudgetExceededError, ConfigError
from lora_forecast.evaluation.scoring import REFERENCE

__all__ = ["BenchmarkJob", "Results", "Task", "load_tasks", "run_benchmark", "score_all"]

log = logging.getLogger(__name__)
LEAK_POLICIES = ("flag", "refuse")


@dataclass
class BenchmarkJob:
    """The command's own keys (the rest is the training settings: model, eval, budget...)."""

    suite: SuiteConfig
    out: str
    models: list[str] = field(default_factory=list)
    zero_shot: bool = True
    baselines: list[str] = field(default_factory=lambda: [REFERENCE])
    leak: str = "flag"
    max_windows: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.leak not in LEAK_POLICIES:
            raise ConfigError(f"leak: must be one of {LEAK_POLICIES}, got {self.leak!r}")
        if REFERENCE not in self.baselines:
            raise ConfigError(f"baselines: must include {REFERENCE} (every score is divided by "
                              "its score on the same task)")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"max_windows: must be >= 1 or null, got {self.max_windows}")


@dataclass(frozen=True)
class Task:
    """A loaded task: its config, config key, series and windows."""

    config: TaskConfig
    key: str
    series: SeriesSet
    windows: Windows

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class Results:
    """Everything the leaderboard is made of.

    ``scores[competitor][task]`` the task's metrics (absent: the competitor could not forecast
    it, ``skipped[competitor][task]`` says why); ``flops[competitor][task]`` forecasting FLOPs
    spent; ``leaks[competitor]`` the tasks whose series it trained on.
    """

    tasks: list[Task]
    competitors: list[str]
    scores: dict[str, dict[str, dict[str, float]]]
    flops: dict[str, dict[str, float]]
    finetune_flops: dict[str, float]
    skipped: dict[str, dict[str, str]]
    leaks: dict[str, list[str]]
    fallbacks: dict[str, dict[str, int]]


def load_tasks(job: BenchmarkJob, context_steps: int) -> list[Task]:
    """Every task read, checked and cut into windows (``max_windows`` caps each task's)."""
    tasks = []
    for i, cfg in enumerate(job.suite.tasks):
        key = f"suite.tasks.{i}"
        series = load_task(cfg, key)
        n_windows = min(cfg.n_windows, job.max_windows or cfg.n_windows)
        windows = rolling_windows(series, cfg.horizon, n_windows, context_steps, key)
        tasks.append(Task(cfg, key, series, windows))
    return tasks


def _entries(job: BenchmarkJob, settings: Settings) -> list[LLMEntry]:
    """The LLM competitors: each trained run or export, and (``zero_shot``) the untrained base
    of each distinct base model among them, or of ``model=`` when no run is given, so every
    fine-tuned model is compared with the model it started from."""
    trained = [trained_entry(p, settings, f"models.{i}") for i, p in enumerate(job.models)]
    bases = [zero_shot_entry(settings)] if not trained else [
        zero_shot_entry(replace(e.settings, data=replace(settings.data, **_text_keys(e))))
        for e in trained]
    entries = ([*{b.label: b for b in bases}.values()] if job.zero_shot else []) + trained
    labels = [e.label for e in entries]
    for i, entry in enumerate(entries):
        if labels.index(entry.label) != i:
            raise ConfigError(f"models: {entry.label} is given twice")
    return entries


def _text_keys(entry: LLMEntry) -> dict[str, Any]:
    """The run's way of writing numbers (decimals, format), which its zero-shot base shares."""
    data = entry.settings.data
    return {"decimals": data.decimals, "number_format": data.number_format}


def _leaks(job: BenchmarkJob, entries: list[LLMEntry], tasks: list[Task]) -> dict[str, list[str]]:
    """Per competitor the tasks it trained on; refused with one line under ``leak=refuse``."""
    leaks: dict[str, list[str]] = {}
    for i, entry in enumerate(entries):
        for task in tasks:
            ids = leaked_ids(entry, task.config, task.series)
            if ids and job.leak == "refuse":
                raise ConfigError(
                    f"leak: {entry.label} trained on {task.config.source} (series "
                    f"{', '.join(ids[:5])}), the source of task {task.name}; leak=flag scores "
                    f"it flagged (models.{i - int(job.zero_shot)})")
            if ids:
                leaks.setdefault(entry.label, []).append(task.name)
    return leaks


def _plans(entries: list[LLMEntry], tasks: list[Task]) -> dict[str, dict[str, TaskPlan | str]]:
    return {e.label: {t.name: plan_task(e, t.config, t.series, t.windows) for t in tasks}
            for e in entries}


def run_benchmark(job: BenchmarkJob, settings: Settings, config: dict[str, Any]) -> Path:
    """Check, plan, admit, forecast, score, write. Returns the output folder.

    Raises:
        LoraForecastError: bad suite, models or settings, or a refusal by the budget (nothing
            reserved, nothing written).
    """
    from lora_forecast.benchmark.outputs import write_leaderboard
    from lora_forecast.job import new_output_folder

    out = new_output_folder(job.out)
    tasks = load_tasks(job, settings.eval.context_steps)
    entries = _entries(job, settings)
    leaks = _leaks(job, entries, tasks)
    plans = _plans(entries, tasks)
    results = score_all(job, settings, config, tasks, entries, plans)
    results.leaks = leaks
    return write_leaderboard(out, job, settings, config, results)


def score_all(job: BenchmarkJob, settings: Settings, config: dict[str, Any], tasks: list[Task],
              entries: list[LLMEntry], plans: dict[str, dict[str, TaskPlan | str]]) -> Results:
    """Admit the LLM competitors, then forecast and score everyone on every task."""
    from lora_forecast.budget.ledger import Ledger

    results = Results(tasks, [*job.baselines, *(e.label for e in entries)], {}, {},
                      {e.label: e.finetune_flops for e in entries}, {}, {}, {})
    with Ledger(settings.budget.ledger_url) as ledger:
        meters = _admit_all(ledger, settings, config, entries, plans)
        status = "failed"
        try:
            _score_classical(job, tasks, results)
            for entry in entries:
                _score_llm(job, entry, tasks, plans[entry.label], meters.get(entry.label),
                           results)
            status = "completed"
        finally:
            for meter in meters.values():
                meter.settle(status)
    return results


def _admit_all(ledger: Any, settings: Settings, config: dict[str, Any],
               entries: list[LLMEntry], plans: dict[str, dict[str, TaskPlan | str]]) -> dict:
    """One reservation per LLM competitor (its tasks' predicted FLOPs), all before any work;
    a refusal releases those already admitted."""
    from lora_forecast.budget.guard import admit
    from lora_forecast.budget.meter import FlopsMeter
    from lora_forecast.results import config_digest

    budget, meters = settings.budget, {}
    try:
        for entry in entries:
            predicted = sum(p.prediction.total for p in plans[entry.label].values()
                            if isinstance(p, TaskPlan))
            if predicted == 0:
                continue
            reservation = admit(ledger, study=budget.study,
                                experiment=f"benchmark:{entry.label}",
                                config_digest=config_digest({**config, "entry": entry.label}),
                                accounting=budget.accounting, predicted=predicted,
                                budget=budget.max_flops)
            meters[entry.label] = FlopsMeter.from_reservation(ledger, reservation)
    except BudgetExceededError:
        for meter in meters.values():
            ledger.abandon(meter.run_id, "failed", note="benchmark refused by the budget")
        raise
    for meter in meters.values():
        ledger.start(meter.run_id)
    return meters


def _score_classical(job: BenchmarkJob, tasks: list[Task], results: Results) -> None:
    for task in tasks:
        cfg = task.config
        for name in tqdm(job.baselines, desc=f"{task.name}: classical", unit="model",
                         disable=not job.progress):
            fc = classical_forecast(name, task.windows, cfg.horizon, cfg.season_length)
            results.scores.setdefault(name, {})[task.name] = task_scores(
                task.windows, fc, cfg.season_length)
            results.fallbacks.setdefault(name, {})[task.name] = fc.fallbacks


def _score_llm(job: BenchmarkJob, entry: LLMEntry, tasks: list[Task],
               plans: dict[str, TaskPlan | str], meter: Any, results: Results) -> None:
    label = entry.label
    results.flops[label] = {}
    for task in tasks:
        if isinstance(plans[task.name], str):
            results.skipped.setdefault(label, {})[task.name] = plans[task.name]
    todo = [t for t in tasks if isinstance(plans[t.name], TaskPlan)]
    if not todo:
        return
    model = load_entry_model(entry)
    for task in tqdm(todo, desc=label, unit="task", disable=not job.progress):
        fc, spent = forecast_task(plans[task.name], model, task.windows, task.config,
                                  job.progress)
        meter.add(spent, "forecasting")
        results.flops[label][task.name] = spent
        results.scores.setdefault(label, {})[task.name] = task_scores(
            task.windows, fc, task.config.season_length)
        results.fallbacks.setdefault(label, {})[task.name] = fc.fallbacks
    meter.flush()
