"""The classical competitors on a task's windows: the baselines registry, unchanged.

Each window is forecast from its own context only (no training set, no future), with the task's
season; statsforecast's models give their quantiles from their central intervals, every other
baseline is a point forecast scored as a point mass (:func:`~.scores.point_mass`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
from tqdm.auto import tqdm

from lora_forecast.benchmark.scores import TaskForecast, point_mass
from lora_forecast.benchmark.windows import Windows
from lora_forecast.evaluation.baselines import Band, baseline_fn, seasonal_naive
from lora_forecast.evaluation.scoring import QUANTILE_LEVELS

__all__ = ["classical_forecast", "seasonal_naive_forecast"]


def classical_forecast(name: str, windows: Windows, horizon: int, season_length: int,
                       progress: bool = False) -> TaskForecast:
    """Forecast every window with baseline ``name``.

    ``linear_ar`` clips at 0 only where every context is non-negative (its clip is for
    populations; a signed series keeps its sign).

    Raises:
        ConfigError: an unknown baseline name (the message lists the available ones).
    """
    fn = baseline_fn(name, season_length, QUANTILE_LEVELS)
    if name == "linear_ar":
        fn = partial(fn, clip_at_zero=all((c >= 0).all() for c in windows.contexts))
    future = np.arange(horizon)
    results = [fn(c, np.arange(len(c)), future)
               for c in tqdm(windows.contexts, desc=name, unit="window", disable=not progress,
                             leave=False)]
    if not all(isinstance(r, Band) and r.quantiles is not None for r in results):
        return point_mass(np.stack([r.point if isinstance(r, Band) else r for r in results]))
    quantiles = np.stack([r.quantiles for r in results])  # [N, Q, H, V]
    return TaskForecast(np.stack([r.point for r in results]), quantiles, probabilistic=True,
                        fallbacks=sum(r.fallback for r in results))


def seasonal_naive_forecast(windows: Windows, horizon: int, season_length: int) -> np.ndarray:
    """``[N, H, V]`` seasonal naive forecasts: the reference, and the stand-in for a window a
    competitor could not forecast."""
    future = np.arange(horizon)
    return np.stack([seasonal_naive(c, np.arange(len(c)), future, season_length=season_length)
                     for c in windows.contexts])
