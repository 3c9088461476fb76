"""The times after the end of a series: its own spacing continued, as forecasting libraries do.

statsforecast, Chronos and TimesFM return forecasts on the input's timestamps continued at the
inferred frequency; so do we:

* integers and floats with a constant step continue that step (floats within a relative
  1e-6 of it, so ``linspace`` axes count as regular);
* dates continue at the frequency pandas infers (:func:`pandas.infer_freq`, which knows month
  ends, business days, quarters...), added as a pandas offset; two dates (too few to infer
  from) or a constant gap pandas names no frequency for continue that gap;
* anything else (gaps, one time only) has no spacing to continue: :func:`future_axis` numbers
  those forecasts by ``step`` and says which series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lora_forecast.data.series import SeriesSet

__all__ = ["STEP", "FutureAxis", "future_axis", "next_times"]

STEP = "step"  # the column numbering forecasts 1..H where no time axis can be continued
_FLOAT_RTOL = 1e-6


def _next_numbers(times: np.ndarray, horizon: int) -> np.ndarray | None:
    diffs = np.diff(times)
    ahead = np.arange(1, horizon + 1)
    if np.issubdtype(times.dtype, np.integer):
        return times[-1] + diffs[0] * ahead if (diffs == diffs[0]).all() else None
    step = (times[-1] - times[0]) / (len(times) - 1)
    if not np.allclose(diffs, step, rtol=_FLOAT_RTOL, atol=0.0):
        return None
    # 12 digits below the step: 0.2 + 0.1 is written 0.3, not 0.30000000000000004
    return np.round(times[-1] + step * ahead, 12 - int(np.floor(np.log10(step))))


def _next_dates(times: np.ndarray, horizon: int) -> np.ndarray | None:
    index = pd.DatetimeIndex(times)
    freq = pd.infer_freq(index) if len(index) >= 3 else None
    if freq is not None:
        offset = pd.tseries.frequencies.to_offset(freq)
    elif (np.diff(times) == np.diff(times)[0]).all():
        offset = pd.Timedelta(np.diff(times)[0])
    else:
        return None
    return pd.DatetimeIndex([index[-1] + k * offset for k in range(1, horizon + 1)]).to_numpy()


def next_times(times: np.ndarray, horizon: int) -> np.ndarray | None:
    """The ``horizon`` times after ``times`` at its own spacing, or None where it has none.

    Args:
        times: ``[T]`` strictly increasing numbers or ``datetime64`` values.
        horizon: how many times to continue (>= 1).

    Returns:
        ``[horizon]`` times of the input's type, or None (one time only, or irregular).

    Example:
        >>> next_times(np.array([1900, 1901, 1902]), 2).tolist()
        [1903, 1904]
        >>> next_times(np.array(["2024-01-31", "2024-02-29", "2024-03-31"],
        ...                     dtype="datetime64[ns]"), 2).astype("datetime64[D]").tolist()
        [datetime.date(2024, 4, 30), datetime.date(2024, 5, 31)]
        >>> next_times(np.array([0.0, 1.0, 3.0]), 2) is None
        True
    """
    times = np.asarray(times)
    if len(times) < 2:
        return None
    if np.issubdtype(times.dtype, np.datetime64):
        return _next_dates(times, horizon)
    if np.issubdtype(times.dtype, np.number):
        return _next_numbers(times, horizon)
    return None


@dataclass(frozen=True)
class FutureAxis:
    """Where each series' forecasts lie.

    Attributes:
        name: the column the forecast table uses: the input's time column, or ``step`` when a
            series' spacing cannot be continued (then every series is numbered 1..H, so the
            column holds one type).
        times: per series its ``[H]`` future times (or steps 1..H).
        irregular: ids of the series whose spacing could not be continued.
    """

    name: str
    times: tuple[np.ndarray, ...]
    irregular: tuple[str, ...]

    @property
    def timed(self) -> bool:
        """Whether the forecasts carry the input's own times (not step numbers)."""
        return not self.irregular


def future_axis(series: SeriesSet, horizon: int) -> FutureAxis:
    """The future times of every series (see :func:`next_times`); all series fall back to
    step numbers 1..H when any one's spacing cannot be continued."""
    future = [next_times(t, horizon) for t in series.times]
    irregular = tuple(i for i, f in zip(series.ids, future, strict=True) if f is None)
    if irregular:
        steps = np.arange(1, horizon + 1)
        return FutureAxis(STEP, tuple(steps for _ in future), irregular)
    return FutureAxis(series.time_name, tuple(future), ())
