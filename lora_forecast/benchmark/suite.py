"""Benchmark suites: which series, at which frequency, season, horizon and number of windows.

A suite (``conf/suite/<name>.yaml``) is a list of tasks. Each task names its data source, a
package's dataset (``statsmodels:co2``; ``toy:trend`` for tests) or any file ``data=table``
reads, and is loaded through the same table reader and checks as training data
(:func:`lora_forecast.data.tabular.frame_series`), so a bad value is the same one-line error.
Package datasets are reshaped to one wide table with a ``time`` column first
(:func:`tidy_frame`): a date index, ``year``/``quarter`` columns, or a year-by-month grid.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lora_forecast.config import LAYOUTS, MISSING, DataConfig
from lora_forecast.data.series import SeriesSet
from lora_forecast.errors import ConfigError

__all__ = ["PACKAGES", "SuiteConfig", "TaskConfig", "load_task", "package_source", "tidy_frame"]

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass
class TaskConfig:
    """One task: a data source and how it is forecast (validated by :class:`SuiteConfig`, which
    knows the task's place in the list)."""

    name: str = "???"
    source: str = "???"          # package:dataset, or a .csv/.parquet/.h5 file
    freq: str = "???"            # pandas offset alias of the step (YS, QS, MS, W-SAT), checked
    season_length: int = 1       # seasonal naive's season and MASE's scale, in steps
    horizon: int = 1             # steps forecast per window
    n_windows: int = 1           # rolling origins at the end of each series
    variables: list[str] | None = None   # value columns; null = every column
    time_column: str = "time"
    id_column: str = "series_id"
    layout: str = "auto"
    missing: str = "error"       # error | interpolate (linear in time), as data.missing
    note: str = ""               # what was done to the data, shown under the table


@dataclass
class SuiteConfig:
    """A named list of tasks."""

    name: str = "???"
    tasks: list[TaskConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("suite.tasks: a suite needs at least one task")
        names = [t.name for t in self.tasks]
        for i, task in enumerate(self.tasks):
            _check_task(task, f"suite.tasks.{i}")
            if names.index(task.name) != i:
                raise ConfigError(f"suite.tasks.{i}.name: {task.name!r} is used twice")


def _check_task(task: TaskConfig, key: str) -> None:
    for name in ("season_length", "horizon", "n_windows"):
        if getattr(task, name) < 1:
            raise ConfigError(f"{key}.{name}: must be >= 1, got {getattr(task, name)}")
    if not task.name or "/" in task.name:
        raise ConfigError(f"{key}.name: must be a non-empty name without '/', got {task.name!r}")
    if task.layout not in LAYOUTS:
        raise ConfigError(f"{key}.layout: must be one of {LAYOUTS}, got {task.layout!r}")
    if task.missing not in MISSING:
        raise ConfigError(f"{key}.missing: must be one of {MISSING}, got {task.missing!r}")
    try:
        pd.tseries.frequencies.to_offset(task.freq)
    except ValueError:
        raise ConfigError(f"{key}.freq: {task.freq!r} is not a pandas frequency (e.g. YS, QS, "
                          "MS, W-SAT)") from None


def tidy_frame(data: pd.DataFrame, name: str) -> pd.DataFrame:
    """A package dataset as one wide table: ``time`` first, then the value columns.

    Times come from a date index; ``year`` and ``quarter`` columns (quarter starts); a
    ``YEAR`` column with one column per month (one series, named ``name``, month by month);
    a ``year`` column alone (integer years); else the row number.

    Example:
        >>> tidy_frame(pd.DataFrame({"year": [1871.0, 1872.0], "volume": [1120.0, 1160.0]}),
        ...            "nile").to_dict("list")
        {'time': [1871, 1872], 'volume': [1120.0, 1160.0]}
    """
    if isinstance(data.index, pd.DatetimeIndex):
        return pd.DataFrame({"time": data.index.to_numpy()}).join(data.reset_index(drop=True))
    lower = {str(c).lower(): c for c in data.columns}
    if "year" in lower and all(m.lower() in lower for m in MONTHS):
        years = data[lower["year"]].astype(int).to_numpy()
        grid = data[[lower[m.lower()] for m in MONTHS]].to_numpy(np.float64)  # [years, 12]
        times = pd.date_range(f"{years[0]}-01-01", periods=grid.size, freq="MS")
        return pd.DataFrame({"time": times, name: grid.ravel()})
    if "year" in lower and "quarter" in lower:
        year, quarter = data[lower["year"]].astype(int), data[lower["quarter"]].astype(int)
        times = pd.PeriodIndex.from_fields(year=year, quarter=quarter, freq="Q").to_timestamp()
        rest = data.drop(columns=[lower["year"], lower["quarter"]]).reset_index(drop=True)
        return pd.DataFrame({"time": times}).join(rest)
    if "year" in lower:
        rest = data.drop(columns=[lower["year"]]).reset_index(drop=True)
        return pd.DataFrame({"time": data[lower["year"]].astype(int).to_numpy()}).join(rest)
    return pd.DataFrame({"time": np.arange(len(data))}).join(data.reset_index(drop=True))


def statsmodels_frame(name: str) -> pd.DataFrame:
    """``statsmodels.datasets.<name>`` (shipped with the package: no network) as a tidy frame.

    Raises:
        ConfigError: statsmodels is missing, or the installed version has no such dataset.
    """
    try:
        import statsmodels
    except ImportError:
        raise ConfigError("statsmodels is not installed (pip install statsmodels)") from None
    try:
        module = importlib.import_module(f"statsmodels.datasets.{name}")
        data = module.load().data
    except (ModuleNotFoundError, AttributeError):
        raise ConfigError(f"the installed statsmodels {statsmodels.__version__} has no dataset "
                          f"{name!r}") from None
    frame = tidy_frame(pd.DataFrame(data), name)
    if frame.shape[1] == 2:  # one series: named after the dataset, not a code such as STS.M.I7
        frame.columns = ["time", name]
    return frame


def toy_frame(name: str) -> pd.DataFrame:
    """Two 12-step series small enough to score by hand (the tests do): ``trend`` is
    ``t + 1``, ``seasonal`` is ``t + 4 (t mod 2)``, for ``t = 0..11``."""
    t = np.arange(12)
    values = {"trend": t + 1.0, "seasonal": t + 4.0 * (t % 2)}
    if name not in values:
        raise ConfigError(f"toy has no dataset {name!r} (available: {', '.join(values)})")
    return pd.DataFrame({"time": t, "value": values[name]})


# package -> its datasets by name (a ``package:dataset`` source)
PACKAGES: dict[str, Callable[[str], pd.DataFrame]] = {
    "statsmodels": statsmodels_frame,
    "toy": toy_frame,
}


def package_source(source: str) -> tuple[str, str] | None:
    """``(package, dataset)`` of a ``package:dataset`` source, None for a file path."""
    package, sep, dataset = source.partition(":")
    return (package, dataset) if sep and package in PACKAGES else None


def load_task(task: TaskConfig, key: str) -> SeriesSet:
    """The task's series, read and checked as training data is.

    Args:
        task: the task; key: its config key (``suite.tasks.<i>``) for messages.

    Raises:
        ConfigError: an unknown dataset, a frequency the times do not follow.
        DataFormatError: a file or value the table reader refuses.
    """
    from lora_forecast.data.sources import read_series
    from lora_forecast.data.tabular import frame_series

    cfg = DataConfig(path=task.source, layout=task.layout, id_column=task.id_column,
                     time_column=task.time_column, missing=task.missing,
                     value_columns=None if task.variables is None else list(task.variables))
    package = package_source(task.source)
    if package is not None:
        try:
            frame = PACKAGES[package[0]](package[1])
        except ConfigError as exc:
            raise ConfigError(f"{key}.source: {task.source}: {exc}") from None
        series = frame_series(frame, cfg, task.source)
    elif not Path(task.source).is_file():
        raise ConfigError(f"{key}.source: {task.source}: no such file and no package dataset "
                          f"(packages: {', '.join(PACKAGES)})")
    else:
        series = read_series(task.source, cfg)
    _check_freq(series, task, key)
    return series


def _check_freq(series: SeriesSet, task: TaskConfig, key: str) -> None:
    """Dated series must step by ``freq`` (numbers, e.g. years, are not checked)."""
    for sid, times in zip(series.ids, series.times, strict=True):
        if not np.issubdtype(np.asarray(times).dtype, np.datetime64):
            continue
        expected = pd.date_range(times[0], periods=len(times), freq=task.freq).to_numpy()
        if not np.array_equal(expected, np.asarray(times, dtype="datetime64[ns]")):
            found = pd.infer_freq(pd.DatetimeIndex(times)) if len(times) >= 3 else None
            raise ConfigError(f"{key}.freq: series {sid} of {task.source} does not step by "
                              f"{task.freq} (pandas infers {found})")
