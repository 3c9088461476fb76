"""Forecasting with a causal LM: a KV-cached, grammar-constrained decode loop and the forecaster."""

from lora_forecast.forecasting.decoding import (
    DecodeOptions,
    DecodeResult,
    LogitsFn,
    Sampling,
    StopRule,
    decode,
    full_head_logits_fn,
)
from lora_forecast.forecasting.forecaster import (
    DecodeBatch,
    Forecast,
    ForecastOptions,
    forecast,
)

__all__ = [
    "DecodeBatch",
    "DecodeOptions",
    "DecodeResult",
    "Forecast",
    "ForecastOptions",
    "LogitsFn",
    "Sampling",
    "StopRule",
    "decode",
    "forecast",
    "full_head_logits_fn",
]
