"""Read series from a CSV or Parquet table (pandas, pyarrow for Parquet) into a SeriesSet.

Layouts (``data.layout``; ``auto`` picks ``long`` when the id column exists, else ``wide``):

* long, one row per (series id, time, variable, value) when the table has the
  ``data.variable_column`` and ``data.value_column`` columns and no ``data.value_columns`` are
  named; otherwise one row per (series id, time) with one column per variable;
* wide: one series per file (its id is the file's stem, and it is labelled "series from
  <file>"), a time column and one column per variable.

Times are kept typed: integers stay integers, floats floats, dates ``datetime64``; with the
id and time column names they let forecasts continue the input's own time axis
(:mod:`lora_forecast.data.timeaxis`).

Every problem is one line naming the file and the row, series or column (rows are counted from
1 over the data rows, the header not included): a configured column that is not in the file,
non-numeric values, missing times, duplicate or unsorted timestamps, empty series, missing
values (an error naming series, time and column, or filled linearly in time with
``data.missing=interpolate``), infinite values, and negative values of data declared
non-negative (``data.signed=false``). The checks are ours because pandas accepts all of
these silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lora_forecast.config import DataConfig
from lora_forecast.data.filetypes import file_kind
from lora_forecast.data.series import SeriesSet
from lora_forecast.errors import DataFormatError

__all__ = ["frame_series", "read_table"]

_ROW = "__row__"  # 1-based data row of each table row, kept through grouping for messages


def _fail(path: str | Path, message: str) -> DataFormatError:
    return DataFormatError(f"{path}: {message}")


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise _fail(path, "file not found")
    kind = file_kind(path)
    try:
        if kind == "csv":
            frame = pd.read_csv(path, skipinitialspace=True)
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            raise _fail(path, f"unsupported file type {path.suffix.lower()!r} (csv, parquet or h5)")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataFormatError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(path, f"cannot read table ({first})") from exc
    return frame


def _require_columns(path: Path, frame: pd.DataFrame, wanted: dict[str, str]) -> None:
    """``wanted``: column -> config key naming it."""
    for column, key in wanted.items():
        if column not in frame.columns:
            found = ", ".join(c for c in frame.columns if c != _ROW)
            raise _fail(path, f"column {column!r} ({key}) not found; columns: {found}")


def _numeric(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as float64; a value that is present but not a number is an error."""
    raw = frame[column]
    numbers = pd.to_numeric(raw, errors="coerce").astype(np.float64)
    bad = numbers.isna() & raw.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _fail(path, f"row {frame[_ROW].iloc[i]}: column {column!r} holds non-numeric "
                          f"value {raw.iloc[i]!r}")
    return numbers


def _times(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    """Numbers when the time column is numeric, else datetimes (``datetime64``: dates with a
    time zone or offset become UTC, so one series' times are one type and compare);
    missing times are errors."""
    raw = frame[column]
    if raw.isna().any():
        i = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise _fail(path, f"row {frame[_ROW].iloc[i]}: column {column!r} (data.time_column) "
                          "has no time")
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert(None)
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw):
        return raw
    numbers = pd.to_numeric(raw, errors="coerce")
    if numbers.notna().all():
        return numbers
    # a column of mostly numbers is numeric with a bad entry, not a column of dates
    dates = numbers if numbers.notna().any() else pd.to_datetime(
        raw, errors="coerce", format="mixed", utc=True).dt.tz_convert(None)
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise _fail(path, f"row {frame[_ROW].iloc[i]}: column {column!r} (data.time_column) "
                          f"holds {raw.iloc[i]!r}, neither a number nor a date")
    return dates


def _layout(cfg: DataConfig, frame: pd.DataFrame) -> str:
    if cfg.layout != "auto":
        return cfg.layout
    return "long" if cfg.id_column in frame.columns else "wide"


def _narrow(cfg: DataConfig, frame: pd.DataFrame) -> bool:
    return (cfg.value_columns is None and cfg.variable_column in frame.columns
            and cfg.value_column in frame.columns)


def _pivot_narrow(path: Path, cfg: DataConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """(id, time, variable, value) rows -> one row per (id, time), one column per variable."""
    frame = frame.assign(**{cfg.value_column: _numeric(path, frame, cfg.value_column)})
    keys = [cfg.id_column, cfg.time_column, cfg.variable_column]
    dup = frame.duplicated(keys, keep="first")
    if dup.any():
        row = frame[dup].iloc[0]
        raise _fail(path, f"row {row[_ROW]}: series {row[cfg.id_column]!s}: duplicate time "
                          f"{row[cfg.time_column]!s} for variable {row[cfg.variable_column]!s}")
    variables = list(pd.unique(frame[cfg.variable_column].astype(str)))
    wide = frame.assign(**{cfg.variable_column: frame[cfg.variable_column].astype(str)}).pivot(
        index=[cfg.id_column, cfg.time_column], columns=cfg.variable_column,
        values=cfg.value_column)
    rows = frame.groupby([cfg.id_column, cfg.time_column], sort=False)[_ROW].min()
    wide = wide.loc[rows.index, variables].reset_index()  # file order of (id, time)
    wide[_ROW] = rows.to_numpy()
    return wide, variables


def _columns_wide(path: Path, cfg: DataConfig, frame: pd.DataFrame,
                  exclude: tuple[str, ...]) -> tuple[pd.DataFrame, list[str]]:
    if cfg.value_columns is not None:
        variables = [str(c) for c in cfg.value_columns]
        _require_columns(path, frame, {c: "data.value_columns" for c in variables})
    else:
        variables = [c for c in frame.columns if c not in (*exclude, _ROW)]
    if not variables:
        raise _fail(path, "no value columns besides the id and time columns")
    frame = frame.assign(**{c: _numeric(path, frame, c) for c in variables})
    return frame, variables


def _series_frames(path: Path, cfg: DataConfig, frame: pd.DataFrame):
    """(id, [rows of that series], variables) in file order of first appearance."""
    layout = _layout(cfg, frame)
    _require_columns(path, frame, {cfg.time_column: "data.time_column"})
    if layout == "wide":
        frame, variables = _columns_wide(path, cfg, frame, (cfg.time_column,))
        frame = frame.assign(**{cfg.time_column: _times(path, frame, cfg.time_column)})
        return [(path.stem, frame)], variables
    _require_columns(path, frame, {cfg.id_column: "data.id_column"})
    frame = frame.assign(**{cfg.time_column: _times(path, frame, cfg.time_column)})
    if _narrow(cfg, frame):
        frame, variables = _pivot_narrow(path, cfg, frame)
    else:
        frame, variables = _columns_wide(path, cfg, frame, (cfg.id_column, cfg.time_column))
    groups = frame.groupby(cfg.id_column, sort=False)
    return [(str(key), rows) for key, rows in groups], variables


def _check_time(path: Path, series_id: str, times: pd.Series, rows: pd.Series) -> None:
    diffs = np.diff(times.to_numpy())
    bad = np.flatnonzero(diffs <= diffs.dtype.type(0))
    if bad.size:
        i = int(bad[0]) + 1
        t, prev = times.iloc[i], times.iloc[i - 1]
        what = f"duplicate time {t}" if t == prev else f"time {t} after {prev} (unsorted)"
        raise _fail(path, f"row {rows.iloc[i]}: series {series_id}: {what}")


def _fill_missing(path: Path, cfg: DataConfig, series_id: str, rows: pd.DataFrame,
                  variables: list[str]) -> np.ndarray:
    values = rows[variables].reset_index(drop=True)
    for column in variables:
        if values[column].isna().all():
            raise _fail(path, f"series {series_id}: column {column!r} is empty (no values)")
    if not values.isna().to_numpy().any():
        return values.to_numpy(np.float64)
    if cfg.missing == "error":
        i, j = np.argwhere(values.isna().to_numpy())[0]
        raise _fail(path, f"row {rows[_ROW].iloc[i]}: series {series_id}, time "
                          f"{rows[cfg.time_column].iloc[i]}, column {variables[j]!r}: missing "
                          "value (data.missing=interpolate fills it)")
    axis = rows[cfg.time_column].to_numpy()
    if np.issubdtype(axis.dtype, np.datetime64):
        axis = axis.astype("datetime64[ns]").astype(np.int64)
    values.index = pd.Index(axis.astype(np.float64))
    filled = values.interpolate(method="index", limit_direction="both")
    return filled.to_numpy(np.float64)


def _check_values(path: Path, cfg: DataConfig, series_id: str, rows: pd.DataFrame,
                  values: np.ndarray, variables: list[str]) -> None:
    """Refuse an infinite value, and a negative one where ``data.signed=false`` declares the
    data non-negative (pandas reads ``inf`` and ``-1e400`` as numbers)."""
    bad = ~np.isfinite(values)
    what = "is not finite"
    if not bad.any() and cfg.signed is False:
        bad, what = values < 0, "is negative (data.signed=false declares the data non-negative)"
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise _fail(path, f"row {rows[_ROW].iloc[i]}: series {series_id}, time "
                          f"{rows[cfg.time_column].iloc[i]}, column {variables[j]!r}: value "
                          f"{values[i, j]:g} {what}")


def read_table(path: str | Path, cfg: DataConfig) -> SeriesSet:
    """Read and validate a CSV/Parquet table of series.

    Args:
        path: the table (``.csv``, ``.parquet`` or ``.pq``).
        cfg: the ``data.*`` settings naming its columns, layout and missing-value policy.

    Returns:
        A :class:`SeriesSet` with the series in file order.

    Raises:
        DataFormatError: one line naming the file and the row, series or column.
    """
    path = Path(path)
    return frame_series(_read_frame(path), cfg, path)


def frame_series(frame: pd.DataFrame, cfg: DataConfig, source: str | Path) -> SeriesSet:
    """Validate an in-memory table (a package's dataset, say) exactly as :func:`read_table`
    validates a file: same layouts, columns, checks and one-line errors, which name ``source``.

    Args:
        frame: the table, its columns as a file's header would name them.
        cfg: the ``data.*`` settings naming its columns, layout and missing-value policy.
        source: what messages call the table (a file, or e.g. ``statsmodels:co2``).

    Raises:
        DataFormatError: one line naming ``source`` and the row, series or column.
    """
    if frame.empty:
        raise _fail(source, "no data rows")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame[_ROW] = np.arange(1, len(frame) + 1)
    path = Path(str(source))
    groups, variables = _series_frames(path, cfg, frame)
    ids, values, times = [], [], []
    for series_id, rows in groups:
        rows = rows.reset_index(drop=True)
        _check_time(path, series_id, rows[cfg.time_column], rows[_ROW])
        values.append(_fill_missing(path, cfg, series_id, rows, variables))
        _check_values(path, cfg, series_id, rows, values[-1], variables)
        times.append(rows[cfg.time_column].to_numpy())
        ids.append(series_id)
    if len(set(ids)) != len(ids):  # e.g. ids 1 and "1" in one column
        raise _fail(path, f"column {cfg.id_column!r}: series ids collide as text")
    by_file = _layout(cfg, frame) == "wide"
    return SeriesSet(tuple(ids), tuple(values), tuple(times), tuple(variables), str(path),
                     time_name=cfg.time_column, id_name=None if by_file else cfg.id_column,
                     by_file=by_file)
