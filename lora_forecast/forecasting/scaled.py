"""Forecasts in the data's own units: scale each context, forecast its text, scale back.

The run, its validation and the forecast command all forecast through :func:`forecast_scaled`,
with the ``eval.*`` decoding settings (:meth:`ForecastOptions.from_eval`) and the model's head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from lora_forecast.config import Settings
from lora_forecast.data.scaling import SeriesScale
from lora_forecast.forecasting.forecaster import Forecast, ForecastOptions, forecast
from lora_forecast.llmtime import LLMTimeFormat
from lora_forecast.models.numeric_head import logits_fn_for

__all__ = ["forecast_scaled"]


def forecast_scaled(settings: Settings, model: torch.nn.Module, fmt: LLMTimeFormat,
                    scale_of: Callable[[np.ndarray], SeriesScale],
                    contexts: np.ndarray | list[np.ndarray], progress: bool = True,
                    n_samples: int | None = None) -> Forecast:
    """Forecast each context in original units: scaled by ``scale_of(context)`` (identity
    under global scaling, where ``fmt``'s codec divides by alpha), then mapped back."""
    scales = [scale_of(c) for c in contexts]
    scaled = [s.apply(c) for s, c in zip(scales, contexts, strict=True)]
    if len({c.shape for c in scaled}) == 1:
        scaled = np.stack(scaled)  # [S, Tc, V]: one batch layout, as before ragged inputs
    model.eval()
    options = ForecastOptions.from_eval(settings.eval,
                                        num_samples=n_samples or settings.eval.num_samples)
    fc = forecast(model, fmt, scaled, options, progress=progress,
                  logits_fn=logits_fn_for(settings.model.head, model,
                                          fmt.head_ids(include_eos=True)))

    def back(a: np.ndarray) -> np.ndarray:
        return np.stack([s.invert(x) for s, x in zip(scales, a, strict=True)])
    return replace(fc, point=back(fc.point), lower=back(fc.lower), upper=back(fc.upper),
                   samples=back(fc.samples))
