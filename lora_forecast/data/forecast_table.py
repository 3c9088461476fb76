"""The forecast tables: new series' forecasts in the input's own layout, and a run's test
forecasts beside their truth.

* input rows of (id, time, variable, value) -> rows of (id, time, variable, forecast, q10, q90);
* input rows of (id, time, var1, var2, ...) -> rows of (id, time, var1, var1_q10, var1_q90, ...);
* a wide input (one series per file) -> rows of (time, var1, var1_q10, var1_q90, ...);
* an HDF5 input -> (series_id, time, variable, forecast, q10, q90) rows, as CSV.

The id and time columns carry the input's names (``data.id_column``, ``data.time_column``;
``series_id`` and ``time`` for HDF5) and the times continue each series' own spacing
(:mod:`lora_forecast.data.timeaxis`); where a series' spacing cannot be continued the time
column is ``step``, counting forecast steps after the end of each series from 1. The
quantiles are the 10% and 90% of the samples (equal to the forecast when decoding greedily).

A training run's ``forecasts.csv`` (:func:`scored_frame`) holds one row per (test series,
forecast step): id, time, and per variable its truth, forecast and (sampled) q10/q90.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lora_forecast.config import DataConfig
from lora_forecast.data.filetypes import file_kind
from lora_forecast.data.series import SeriesSet
from lora_forecast.data.timeaxis import FutureAxis

__all__ = ["forecast_frame", "input_columns", "left_padded", "output_name", "scored_frame",
           "write_frame"]

DEFAULT_ID = "series_id"  # the id column where the input has none (HDF5)


def _shape(cfg: DataConfig, input_path: Path, columns: list[str] | None) -> str:
    """``rows`` (one variable per row), ``columns`` (id + a column per variable) or ``wide``."""
    if file_kind(input_path) == "hdf5":
        return "rows"
    layout = cfg.layout
    if layout == "auto":
        layout = "long" if columns is not None and cfg.id_column in columns else "wide"
    if layout == "wide":
        return "wide"
    narrow = (cfg.value_columns is None and columns is not None
              and cfg.variable_column in columns and cfg.value_column in columns)
    return "rows" if narrow else "columns"


def forecast_frame(cfg: DataConfig, input_path: Path, columns: list[str] | None,
                   series: SeriesSet, axis: FutureAxis, fc: Any) -> pd.DataFrame:
    """The forecasts ``[S, H, V]`` (and their band) as a table in the input's layout.

    Args:
        cfg: the ``data.*`` settings the input was read with (column names, layout).
        input_path: the input file; columns: its columns (None for HDF5).
        series: the forecast series (ids, variables, the input's id column name).
        axis: their future times (:func:`lora_forecast.data.timeaxis.future_axis`).
        fc: the forecasts: ``point``, ``lower``, ``upper``, each ``[S, H, V]``.
    """
    n_series, horizon, n_vars = fc.point.shape
    shape = _shape(cfg, input_path, columns)
    id_col = series.id_name or DEFAULT_ID
    times = np.concatenate(axis.times)  # [S * H]
    if shape == "rows":
        var_col = cfg.variable_column if columns else "variable"
        return pd.DataFrame({
            id_col: np.repeat(series.ids, horizon * n_vars),
            axis.name: np.repeat(times, n_vars),
            var_col: np.tile(series.variables, n_series * horizon),
            "forecast": fc.point.reshape(-1), "q10": fc.lower.reshape(-1),
            "q90": fc.upper.reshape(-1),
        })
    frame = {} if shape == "wide" else {id_col: np.repeat(series.ids, horizon)}
    frame[axis.name] = times
    for j, name in enumerate(series.variables):
        frame[name] = fc.point[:, :, j].reshape(-1)
        frame[f"{name}_q10"] = fc.lower[:, :, j].reshape(-1)
        frame[f"{name}_q90"] = fc.upper[:, :, j].reshape(-1)
    return pd.DataFrame(frame)


def scored_frame(series: SeriesSet, future: np.ndarray, truth: np.ndarray, fc: Any,
                 sampled: bool) -> pd.DataFrame:
    """A run's test forecasts beside their truth, one row per (series, forecast step).

    Args:
        series: the scored series (ids, variables, the input's id and time column names).
        future: ``[S, H]`` the times of the forecast steps, as the input holds them.
        truth: ``[S, H, V]`` the true values; fc: ``point``, ``lower``, ``upper`` alike.
        sampled: add the 10%/90% sample quantiles (they mean something only with samples).

    Returns:
        Columns id, time, then per variable ``<v>_truth``, ``<v>_forecast`` (NaN where the
        forecast did not parse) and, sampled, ``<v>_q10``, ``<v>_q90``.
    """
    n_series, horizon, _ = truth.shape
    frame = {series.id_name or DEFAULT_ID: np.repeat(series.ids, horizon),
             series.time_name: np.asarray(future).reshape(-1)}
    for j, name in enumerate(series.variables):
        frame[f"{name}_truth"] = truth[:, :, j].reshape(-1)
        frame[f"{name}_forecast"] = fc.point[:, :, j].reshape(-1)
        if sampled:
            frame[f"{name}_q10"] = fc.lower[:, :, j].reshape(-1)
            frame[f"{name}_q90"] = fc.upper[:, :, j].reshape(-1)
    return pd.DataFrame(frame)


def output_name(input_path: Path) -> str:
    """``forecasts.parquet`` for a Parquet input, ``forecasts.csv`` otherwise."""
    return "forecasts.parquet" if file_kind(input_path) == "parquet" else "forecasts.csv"


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV or Parquet by ``path``'s suffix, via a temporary file in the same
    folder and a rename (like ``results.json``): a reader never sees half a table."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if file_kind(path) == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def left_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Ragged ``[T_i, ...]`` contexts (or their times) as one ``[S, max T, ...]`` array, NaN
    (NaT for dates) before each start, so every series ends at the same step of a plot."""
    width = max(len(a) for a in arrays)
    first = np.asarray(arrays[0])
    dated = np.issubdtype(first.dtype, np.datetime64)
    fill, dtype = (np.datetime64("NaT"), first.dtype) if dated else (np.nan, np.float64)
    out = np.full((len(arrays), width, *first.shape[1:]), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, width - len(a):] = a
    return out


def input_columns(input_path: Path) -> list[str] | None:
    """The input table's column names (None for HDF5), read without the data."""
    kind = file_kind(input_path)
    if kind == "csv":
        return [str(c) for c in pd.read_csv(input_path, nrows=0).columns]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return [str(c) for c in pq.read_schema(input_path).names]
    return None
