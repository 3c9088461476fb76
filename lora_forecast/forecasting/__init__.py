"""Forecasting with a causal LM: a KV-cached, grammar-constrained decode loop and the forecaster."""

from lora_forecast.forecasting.decoding import (
    DecodeOptions,
    DecodeResult,
    Sampling,
    StopRule,
    decode,
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
    "Sampling",
    "StopRule",
    "decode",
    "forecast",
]
