"""Fine-tuning inside a run: token windows, the loss, the forecast validator, the Trainer.

:func:`finetune` receives the run's side-effect handles (:class:`RunContext`: meter, tracker,
stop request, trial reporter, accelerator) from the task (:mod:`lora_forecast.task`) through
:func:`lora_forecast.run.run`, and charges every step, validation and validation forecast to
the meter at the planner's prices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from lora_forecast.config import Settings
from lora_forecast.data.prepare import PreparedData, token_windows
from lora_forecast.evaluation.protocol import cut_series_windows
from lora_forecast.evaluation.scoring import SUM_KEYS, Predicted, point_sums, scores_from_sums
from lora_forecast.forecasting.scaled import forecast_scaled
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.models.numeric_head import loss_fn_for
from lora_forecast.planning import CostPrediction
from lora_forecast.training.distributed import global_sum
from lora_forecast.training.loop import Trainer, TrainHooks, TrainResult
from lora_forecast.training.signals import StopRequest

log = logging.getLogger(__name__)


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


def batch_loss_fn(head: str, fmt: LLMTimeFormat):
    """The training loop's ``loss_fn(model, batch)`` for ``model.head``."""
    loss = loss_fn_for(head, fmt.head_ids())
    return lambda model, batch: loss(
        model, batch["input_ids"], batch["attention_mask"], batch["labels"]
    )


def finetune(settings: Settings, model: torch.nn.Module, data: PreparedData, fmt: LLMTimeFormat,
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
        forecast_validator=forecast_validator(settings, data, fmt, ctx),
        stop=ctx.stop,
        budget=settings.budget.max_flops,
        progress=ctx.progress,
    )
    trainer = Trainer(model, train_set, val_set, settings.train, run_dir, hooks, ctx.accelerator)
    return trainer.fit()


def forecast_validator(settings: Settings, data: PreparedData, fmt: LLMTimeFormat,
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
            cost = ctx.prediction.forecast_cost(fc.prompt_tokens, fc.computed_tokens)
        model.train()
        scores = scores_from_sums({k: global_sum(acc, v) for k, v in sums.items()})
        return {f"val/{k}": v for k, v in scores.items()}, global_sum(acc, cost)

    return validate
