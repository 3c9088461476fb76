"""Data: trajectory files, the synthetic generator, system splits, the LLMTIME codec and
token windows."""

from lora_forecast.data.generator import (
    ensure_synthetic,
    generate_lotka_volterra,
    write_trajectories,
)
from lora_forecast.data.llmtime import (
    ForecastParseError,
    LLMTimeCodec,
    choose_alpha,
    tokens_per_step_upper_bound,
)
from lora_forecast.data.loader import load_trajectories, read_shape
from lora_forecast.data.splits import SystemSplit, split_systems
from lora_forecast.data.windows import (
    TokenWindows,
    alphabet_ids,
    count_windows,
    encode_systems,
    make_windows,
    series_token_ids,
    train_windows,
    val_windows,
)

__all__ = [
    "ForecastParseError",
    "LLMTimeCodec",
    "SystemSplit",
    "TokenWindows",
    "choose_alpha",
    "count_windows",
    "encode_systems",
    "ensure_synthetic",
    "generate_lotka_volterra",
    "alphabet_ids",
    "load_trajectories",
    "make_windows",
    "read_shape",
    "series_token_ids",
    "split_systems",
    "tokens_per_step_upper_bound",
    "train_windows",
    "val_windows",
    "write_trajectories",
]
