"""One run, top to bottom: data -> model -> fine-tune -> forecast -> score -> record.

:func:`run` receives its side-effect handles (:class:`~lora_forecast.finetune.RunContext`)
from the task in :mod:`lora_forecast.task` and returns the results payload; it writes only
inside ``run_dir`` and only on the main process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed

from lora_forecast.config import Settings
from lora_forecast.data.prepare import prepare_data
from lora_forecast.data.scaling import SeriesScale
from lora_forecast.evaluation.paired import paired_block
from lora_forecast.evaluation.protocol import (
    SeriesWindows,
    cut_series_windows,
    score_baselines,
    score_predicted,
)
from lora_forecast.evaluation.scoring import Predicted
from lora_forecast.finetune import RunContext, finetune
from lora_forecast.forecasting.scaled import forecast_scaled
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.models.build import build_model, load_trainable_state
from lora_forecast.models.tokenizer import load_tokenizer
from lora_forecast.planning import CostPrediction, predict_cost, with_signed
from lora_forecast.results import json_ready, write_json_atomic
from lora_forecast.run_folder import SCALING_FILE
from lora_forecast.run_outputs import write_run_outputs

__all__ = ["RunContext", "run", "predict_cost", "CostPrediction"]

log = logging.getLogger(__name__)


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
        result = finetune(settings, model, data, fmt, run_dir, ctx)
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
        write_run_outputs(run_dir, scored, window, fc, payload, settings)
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
    ctx.meter.add(ctx.prediction.forecast_cost(fc.prompt_tokens, fc.computed_tokens),
                  "forecasting")
    ctx.meter.flush()
    return fc


