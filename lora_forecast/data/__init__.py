"""Data: trajectory files, the synthetic generator, system splits and token windows (the
LLMTIME format itself lives in :mod:`lora_forecast.llmtime`)."""

from lora_forecast.data.generator import (
    ensure_synthetic,
    generate_lotka_volterra,
    write_trajectories,
)
from lora_forecast.data.loader import load_trajectories, read_shape
from lora_forecast.data.scaling import Scaling, SeriesScale, fit_scaling
from lora_forecast.data.series import SeriesSet, from_arrays, read_hdf5_series
from lora_forecast.data.splits import SystemSplit, split_systems
from lora_forecast.data.windows import (
    TokenWindows,
    count_windows,
    make_windows,
    train_windows,
    val_windows,
)

__all__ = [
    "Scaling",
    "SeriesScale",
    "SeriesSet",
    "SystemSplit",
    "TokenWindows",
    "count_windows",
    "ensure_synthetic",
    "fit_scaling",
    "from_arrays",
    "generate_lotka_volterra",
    "load_trajectories",
    "make_windows",
    "read_hdf5_series",
    "read_shape",
    "split_systems",
    "train_windows",
    "val_windows",
    "write_trajectories",
]
