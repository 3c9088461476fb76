"""The forecast table, written in the input's own layout, and a plot of the first series.

* input rows of (id, time, variable, value) -> rows of (id, step, variable, forecast, q10, q90);
* input rows of (id, time, var1, var2, ...) -> rows of (id, step, var1, var1_q10, var1_q90, ...);
* a wide input (one series per file) -> rows of (step, var1, var1_q10, var1_q90, ...);
* an HDF5 input -> (id, step, variable, forecast, q10, q90) rows, as CSV.

``step`` counts forecast steps after the end of each series, from 1. The quantiles are the 10%
and 90% of the samples (equal to the forecast when decoding greedily).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lora_forecast.config import DataConfig

__all__ = ["forecast_frame", "output_name", "write_frame"]


def _shape(cfg: DataConfig, input_path: Path, columns: list[str] | None) -> str:
    """``rows`` (one variable per row), ``columns`` (id + a column per variable) or ``wide``."""
    if input_path.suffix.lower() in (".h5", ".hdf5"):
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
                   ids: tuple[str, ...], variables: tuple[str, ...], point: np.ndarray,
                   lower: np.ndarray, upper: np.ndarray) -> pd.DataFrame:
    """The forecasts ``[S, H, V]`` (and their band) as a table in the input's layout.

    Args:
        cfg: the ``data.*`` settings the input was read with (column names, layout).
        input_path: the input file; columns: its columns (None for HDF5).
        ids, variables: series ids and variable names, in the order of the arrays.
        point, lower, upper: ``[S, H, V]``.
    """
    n_series, horizon, n_vars = point.shape
    shape = _shape(cfg, input_path, columns)
    id_col = cfg.id_column if shape != "rows" or columns else "series_id"
    steps = np.tile(np.arange(1, horizon + 1), n_series)
    if shape == "rows":
        var_col = cfg.variable_column if columns else "variable"
        return pd.DataFrame({
            id_col: np.repeat(ids, horizon * n_vars),
            "step": np.repeat(steps, n_vars),
            var_col: np.tile(variables, n_series * horizon),
            "forecast": point.reshape(-1), "q10": lower.reshape(-1), "q90": upper.reshape(-1),
        })
    frame = {} if shape == "wide" else {id_col: np.repeat(ids, horizon)}
    frame["step"] = steps
    for j, name in enumerate(variables):
        frame[name] = point[:, :, j].reshape(-1)
        frame[f"{name}_q10"] = lower[:, :, j].reshape(-1)
        frame[f"{name}_q90"] = upper[:, :, j].reshape(-1)
    return pd.DataFrame(frame)


def output_name(input_path: Path) -> str:
    """``forecasts.parquet`` for a Parquet input, ``forecasts.csv`` otherwise."""
    parquet = input_path.suffix.lower() in (".parquet", ".pq")
    return "forecasts.parquet" if parquet else "forecasts.csv"


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV or Parquet by ``path``'s suffix."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def left_padded(contexts: list[np.ndarray]) -> np.ndarray:
    """Ragged ``[T_i, V]`` contexts as one ``[S, max T, V]`` array, NaN before each start, so
    every series ends at the same step of a plot."""
    width = max(len(c) for c in contexts)
    out = np.full((len(contexts), width, contexts[0].shape[1]), np.nan)
    for i, c in enumerate(contexts):
        out[i, width - len(c):] = c
    return out


def input_columns(input_path: Path) -> list[str] | None:
    """The input table's column names (None for HDF5), read without the data."""
    suffix = input_path.suffix.lower()
    if suffix == ".csv":
        return [str(c) for c in pd.read_csv(input_path, nrows=0).columns]
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return [str(c) for c in pq.read_schema(input_path).names]
    return None
