"""Rolling-origin windows at the end of each series: what every competitor sees and is scored on.

Window ``k = 0 .. W-1`` of a series of ``T`` steps forecasts steps ``c_k .. c_k + H - 1`` with
``c_k = T - (W - k) H`` (non-overlapping origins, stride ``H``, the last window ending at the
series' end, as GIFT-Eval and fev-bench cut them). Its context is the
``context_steps`` steps before ``c_k`` (fewer where the series starts later): the same history
for every competitor, so nothing after the origin is ever seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lora_forecast.data.series import SeriesSet
from lora_forecast.errors import ConfigError

__all__ = ["MIN_CONTEXT", "Windows", "rolling_windows"]

MIN_CONTEXT = 2  # steps of history a window needs (one difference for MASE's scale)


@dataclass(frozen=True)
class Windows:
    """All windows of one task, series-major (series 0's windows first).

    Attributes:
        contexts: per window its ``[Tc_w, V]`` history (ragged).
        truth: ``[N, H, V]`` the values scored.
        series: ``[N]`` index of each window's series in the task's SeriesSet.
        origins: ``[N]`` the step ``c_k`` each window's forecast starts at.
    """

    contexts: list[np.ndarray]
    truth: np.ndarray
    series: np.ndarray
    origins: np.ndarray

    def __len__(self) -> int:
        return len(self.contexts)

    def take(self, keep: np.ndarray) -> Windows:
        """The windows at positions ``keep``."""
        idx = [int(i) for i in keep]
        return Windows([self.contexts[i] for i in idx], self.truth[idx], self.series[idx],
                       self.origins[idx])


def rolling_windows(series: SeriesSet, horizon: int, n_windows: int, context_steps: int,
                    key: str = "suite") -> Windows:
    """Cut ``n_windows`` windows of ``horizon`` steps from the end of every series.

    Raises:
        ConfigError: a series too short for its windows plus :data:`MIN_CONTEXT` steps.

    Example:
        >>> from lora_forecast.data.series import from_arrays
        >>> s = from_arrays(np.arange(8.0).reshape(1, 8, 1), np.arange(8))
        >>> w = rolling_windows(s, horizon=2, n_windows=2, context_steps=3)
        >>> w.origins.tolist(), [c.ravel().tolist() for c in w.contexts], w.truth.ravel().tolist()
        ([4, 6], [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], [4.0, 5.0, 6.0, 7.0])
    """
    contexts, truth, index, origins = [], [], [], []
    for s, values in enumerate(series.values):
        first = len(values) - n_windows * horizon
        if first < MIN_CONTEXT:
            raise ConfigError(
                f"{key}: series {series.ids[s]} has {len(values)} steps, too few for "
                f"n_windows {n_windows} x horizon {horizon} after {MIN_CONTEXT} steps of context")
        for origin in range(first, len(values), horizon):
            contexts.append(values[max(0, origin - context_steps):origin])
            truth.append(values[origin:origin + horizon])
            index.append(s)
            origins.append(origin)
    return Windows(contexts, np.stack(truth), np.array(index), np.array(origins))
