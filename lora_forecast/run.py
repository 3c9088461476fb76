"""One run, top to bottom: data -> model -> train -> forecast -> score -> record.

:func:`run` receives its side-effect handles (meter, tracker, stop request, trial reporter,
accelerator) from the task wrapper in :mod:`lora_forecast.task` and returns the results
payload; it writes only inside ``run_dir`` and only on the main process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from lora_forecast.config import Settings
from lora_forecast.data.forecast_table import scored_frame, write_frame
from lora_forecast.data.prepare import PreparedData, prepare_data, token_windows
from lora_forecast.data.scaling import SeriesScale
from lora_forecast.data.series import SeriesSet
from lora_forecast.evaluation.paired import paired_block
from lora_forecast.evaluation.plots import (
    ForecastPanels,
    metrics_title,
    plot_error_per_step,
    plot_forecasts,
)
from lora_forecast.evaluation.protocol import (
    SeriesWindows,
    cut_series_windows,
    score_baselines,
    score_predicted,
)
from lora_forecast.evaluation.scoring import SUM_KEYS, Predicted, point_sums, scores_from_sums
from lora_forecast.forecasting.scaled import forecast_scaled
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.models.build import build_model, load_trainable_state
from lora_forecast.models.numeric_head import loss_fn_for
from lora_forecast.models.tokenizer import load_tokenizer
from lora_forecast.planning import CostPrediction, predict_cost, with_signed
from lora_forecast.results import json_ready, write_json_atomic
from lora_forecast.run_folder import SCALING_FILE
from lora_forecast.training.distributed import global_sum
from lora_forecast.training.loop import Trainer, TrainHooks, TrainResult
from lora_forecast.training.signals import StopRequest

__all__ = ["RunContext", "run", "predict_cost", "CostPrediction"]

log = logging.getLogger(__name__)
FORECASTS_FILE = "forecasts.csv"  # a run's scored test forecasts, beside results.json


def batch_loss_fn(head: str, fmt: LLMTimeFormat):
    """The training loop's ``loss_fn(model, batch)`` for ``model.head``."""
    loss = loss_fn_for(head, fmt.head_ids())
    return lambda model, batch: loss(
        model, batch["input_ids"], batch["attention_mask"], batch["labels"]
    )


@dataclass
class RunContext:
    """Side-effect handles the task wrapper owns and passes in."""

    meter: Any
    prediction: CostPrediction
    accelerator: Accelerator
    tracker: Any = None
    reporter: Any = None
    stop: StopRequest = field(default_factory=StopRequest)
    progress: bool = True


def run(settings: Settings, run_dir: Path, ctx: RunContext) -> dict[str, Any]:
    """Execute the configured task and return the results payload (without identity fields)."""
    set_seed(settings.train.seed)  # every run of a config follows the same trajectory
    main = ctx.accelerator.is_main_process
    data = prepare_data(settings.data)
    settings = with_signed(settings, data.scaling.signed)  # as the planner resolved data.signed
    fmt = LLMTimeFormat.for_tokenizer(data.codec, load_tokenizer(settings.model),
                                      signed=data.scaling.signed)
    if main:
        data.split.save(run_dir / "split.json", ids=data.series.ids)
        write_json_atomic(run_dir / SCALING_FILE, data.scaling.to_dict())
    test = data.series.subset(data.split.test)
    window = cut_series_windows(
        test, settings.eval.context_steps, settings.eval.horizon_steps, settings.eval.n_systems,
    )  # fmt: skip
    if window.skipped:
        log.info("evaluation: %d test series too short for %d + %d steps, skipped",
                 window.skipped, settings.eval.context_steps, settings.eval.horizon_steps)
    payload: dict[str, Any] = {"train": None, "metrics": None, "end_reason": "completed",
                               "eval_series": {"ids": list(window.ids),
                                               "skipped_too_short": window.skipped},
                               "baselines": _baselines(settings, window)}  # fmt: skip
    if settings.task == "baselines" or settings.eval.skip_llm:
        return payload
    model = build_model(settings.model, settings.lora)
    if settings.task == "finetune":
        result = train(settings, model, data, fmt, run_dir, ctx)
        payload.update(train=result.summary(), end_reason=result.end_reason)
        if result.end_reason in ("interrupted", "pruned") or not main:
            return payload  # data-parallel ranks stop here; the main process forecasts once
        _load_best(model, run_dir)
    fc = _forecast_test(settings, model, fmt, data.scale_of, window.contexts, ctx)
    if fc is None:
        payload["end_reason"] = "stopped_budget"
        return payload
    payload["metrics"] = _score(settings, window, fc)
    payload["paired"] = json_ready(paired_block(payload, settings.eval.bootstrap,
                                                settings.eval.seed))
    if main:
        scored = test.subset(window.positions)
        _plots(run_dir, window, fc, payload, settings, scored)
        _write_forecasts(run_dir, scored, window, fc, settings)
    return payload


def _baselines(settings: Settings, window: SeriesWindows) -> dict[str, Any]:
    """Forecasters without an LLM on the same test systems and protocol."""
    if not settings.eval.baselines:
        return {}
    ev = settings.eval
    return score_baselines(list(ev.baselines), window, ev.bootstrap, ev.seed, ev.season_length)


def _score(settings: Settings, window: SeriesWindows, fc: Any) -> dict[str, Any]:
    """Metrics in original units, scale-free ones and ratios to seasonal naive; intervals,
    WQL and CRPS only when sampling makes them mean it."""
    sampled = settings.eval.num_samples > 1
    pred = Predicted(
        fc.point, lower=fc.lower if sampled else None, upper=fc.upper if sampled else None,
        samples=fc.samples if sampled else None, parsed=fc.parsed.any(axis=1),
    )  # fmt: skip
    ev = settings.eval
    metrics = score_predicted(window.truth, window.contexts, pred, ev.season_length,
                              ev.bootstrap, ev.seed)
    metrics["sample_parse_failures"] = int(fc.sample_parse_failures)
    return metrics


def train(settings: Settings, model: torch.nn.Module, data: PreparedData, fmt: LLMTimeFormat,
          run_dir: Path, ctx: RunContext) -> TrainResult:
    """Build the windows and run the :class:`Trainer`."""
    context = settings.data.context_tokens
    train_set = token_windows(fmt, data.scaled_series(data.split.train), context, context // 2)
    val_set = token_windows(fmt, data.scaled_series(data.split.val), context, context)
    log.info("windows: %d train, %d validation (%d tokens)", len(train_set), len(val_set), context)
    hooks = TrainHooks(
        loss_fn=batch_loss_fn(settings.model.head, fmt),
        meter=ctx.meter,
        step_flops=ctx.prediction.per_train_step,
        val_window_flops=ctx.prediction.per_val_window,
        val_forecast_flops=ctx.prediction.per_val_forecast,
        tracker=ctx.tracker,
        reporter=ctx.reporter,
        forecast_validator=_forecast_validator(settings, data, fmt, ctx),
        stop=ctx.stop,
        budget=settings.budget.max_flops,
        progress=ctx.progress,
    )
    trainer = Trainer(model, train_set, val_set, settings.train, run_dir, hooks, ctx.accelerator)
    return trainer.fit()


def _load_best(model: torch.nn.Module, run_dir: Path) -> None:
    """Evaluate the best validated adapter, not merely the last one."""
    best = run_dir / "best" / "trainable.pt"
    if best.is_file():
        load_trainable_state(model, torch.load(best, weights_only=True))


def _forecast_test(
    settings: Settings,
    model: torch.nn.Module,
    fmt: LLMTimeFormat,
    scale_of: Callable[[np.ndarray], SeriesScale],
    contexts: np.ndarray,
    ctx: RunContext,
) -> Any | None:
    """Forecast the test systems if the reservation still covers it (else None)."""
    if not ctx.meter.can_afford(ctx.prediction.forecasting):
        return None
    fc = forecast_scaled(settings, model, fmt, scale_of, contexts, ctx.progress)
    ctx.meter.add(ctx.prediction.forecast_cost(fc.prompt_tokens, fc.generated_tokens),
                  "forecasting")
    ctx.meter.flush()
    return fc


def _forecast_validator(settings: Settings, data: PreparedData, fmt: LLMTimeFormat,
                        ctx: RunContext):
    """Forecast scores (``val/mse``, ``val/mae``, ``val/mase``, ``val/smape``,
    ``val/mase_rel``) on a fixed subset of validation systems (``train.eval_forecast``).

    Data-parallel ranks split the systems (every P-th, from the rank) and sum the scores'
    additive pieces (:func:`lora_forecast.evaluation.scoring.point_sums`) and FLOPs over all
    ranks: each system is forecast once, every rank gets the scores of all of them, and the
    main process meters the total."""
    if not settings.train.eval_forecast:
        return None
    val = cut_series_windows(data.series.subset(data.split.val), settings.eval.context_steps,
                             settings.eval.horizon_steps, None)
    n = min(settings.train.eval_forecast_systems, len(val.ids))
    acc = ctx.accelerator
    mine = slice(acc.process_index, n, acc.num_processes)
    contexts, truth = val.contexts[mine], val.truth[mine]

    def validate(model: torch.nn.Module) -> tuple[dict[str, float], float]:
        sums, cost = dict.fromkeys(SUM_KEYS, 0.0), 0.0
        if len(contexts):
            fc = forecast_scaled(settings, model, fmt, data.scale_of, contexts, ctx.progress,
                                 n_samples=1)
            pred = Predicted(fc.point, parsed=fc.parsed.any(axis=1))
            sums = point_sums(truth, contexts, pred, settings.eval.season_length)
            cost = ctx.prediction.forecast_cost(fc.prompt_tokens, fc.generated_tokens)
        model.train()
        scores = scores_from_sums({k: global_sum(acc, v) for k, v in sums.items()})
        return {f"val/{k}": v for k, v in scores.items()}, global_sum(acc, cost)

    return validate


def _window_times(scored: SeriesSet, window: SeriesWindows) -> tuple[np.ndarray, np.ndarray]:
    """``([S, Tc], [S, H])`` times of the scored series' context and horizon as the input
    holds them (numbers, or dates), not the windows' float days."""
    n_ctx, horizon = window.contexts.shape[1], window.truth.shape[1]
    times = np.stack([t[:n_ctx + horizon] for t in scored.times])  # [S, Tc + H]
    return times[:, :n_ctx], times[:, n_ctx:]


def _plots(run_dir: Path, window: SeriesWindows, fc: Any, payload: dict[str, Any],
           settings: Settings, scored: SeriesSet) -> None:
    """``forecasts.png`` (the test series under their ids in ``split.json``, on their own
    times, bands only from samples) and ``error_per_step.png``."""
    sampled = settings.eval.num_samples > 1
    variables = scored.variables
    named = {} if variables[0] == "var0" else {"variable_names": variables}
    panels = ForecastPanels(
        system_ids=window.ids, n_systems=settings.eval.plot_systems,
        title=metrics_title(payload["metrics"]["mse"], payload["baselines"]),
        system_labels=[scored.label(i) for i in range(len(scored))],
        time_label=scored.time_name, **named,
    )  # fmt: skip
    plot_forecasts(run_dir / "forecasts.png", window.contexts, window.truth, fc.point,
                   (fc.lower, fc.upper) if sampled else None, _window_times(scored, window),
                   panels)
    per_step = {"LLM": payload["metrics"]["mse_per_step"]}
    per_step.update({name: m["mse_per_step"] for name, m in payload["baselines"].items()})
    plot_error_per_step(run_dir / "error_per_step.png", per_step)


def _write_forecasts(run_dir: Path, scored: SeriesSet, window: SeriesWindows, fc: Any,
                     settings: Settings) -> None:
    """``forecasts.csv``: the scored test forecasts beside their truth, on the input's times
    (see :func:`lora_forecast.data.forecast_table.scored_frame`), written atomically."""
    sampled = settings.eval.num_samples > 1
    frame = scored_frame(scored, _window_times(scored, window)[1], window.truth, fc, sampled)
    write_frame(frame, run_dir / FORECASTS_FILE)
