"""Forecasting with a causal LM: the LLMTIME grammar, a KV-cached decode loop, the forecaster."""

from lora_forecast.forecasting.decoding import (
    DecodeResult,
    LogitsFn,
    Sampling,
    decode,
    full_head_logits_fn,
)
from lora_forecast.forecasting.forecaster import DecodeBatch, Forecast, forecast, parse_forecast
from lora_forecast.forecasting.grammar import (
    GrammarState,
    LLMTimeAlphabet,
    LLMTimeGrammar,
    LLMTimeLogitsProcessor,
)

__all__ = [
    "DecodeBatch",
    "DecodeResult",
    "Forecast",
    "GrammarState",
    "LLMTimeAlphabet",
    "LLMTimeGrammar",
    "LLMTimeLogitsProcessor",
    "LogitsFn",
    "Sampling",
    "decode",
    "forecast",
    "full_head_logits_fn",
    "parse_forecast",
]
