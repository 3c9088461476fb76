"""Scores of a task, and the leaderboard's aggregates across tasks; pure, no I/O.

Per task each competitor gets the field's metrics over all its windows: WQL pooled over every
window, step and variable (GluonTS's ``mean_weighted_sum_quantile_loss``, Chronos's WQL on the
nine levels 0.1..0.9), MASE and sMAPE averaged over windows (each window scaled by its own
context). Across tasks, as Chronos benchmark II and fev-bench aggregate: each task's score
divided by seasonal naive's on that task, the geometric mean of those ratios over tasks with a
percentile-bootstrap 95% interval over tasks, the win rate (share of (task, other competitor)
pairs it beats, ties half) and the average rank (1 = best, ties averaged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lora_forecast.benchmark.windows import Windows
from lora_forecast.evaluation.metrics import (
    bootstrap_ci,
    interval_coverage,
    mase,
    smape,
    weighted_quantile_loss,
)
from lora_forecast.evaluation.scoring import QUANTILE_LEVELS

__all__ = ["AGGREGATED", "Aggregate", "TaskForecast", "aggregate", "point_mass", "task_scores"]

RATIO_CLIP = (1e-2, 1e2)  # bounds of a task's ratio to the reference in the aggregates
AGGREGATED = ("wql", "mase")  # the metrics divided by seasonal naive's and aggregated
_LOW, _HIGH = QUANTILE_LEVELS.index(0.1), QUANTILE_LEVELS.index(0.9)


@dataclass(frozen=True)
class TaskForecast:
    """One competitor's forecasts of one task's ``N`` windows.

    Attributes:
        point: ``[N, H, V]`` point forecasts.
        quantiles: ``[N, Q, H, V]`` at :data:`QUANTILE_LEVELS`.
        probabilistic: the quantiles have a spread of their own (samples, intervals); a point
            forecaster's are its point (a point mass), and it gets no coverage.
        fallbacks: windows forecast by a fallback (a failed fit or parse).
    """

    point: np.ndarray
    quantiles: np.ndarray
    probabilistic: bool
    fallbacks: int = 0


def point_mass(point: np.ndarray, fallbacks: int = 0) -> TaskForecast:
    """A point forecast ``[N, H, V]`` scored as a point mass: every quantile is the point, so
    its WQL is its weighted absolute error ``sum |y - f| / sum |y|`` (as GIFT-Eval scores point
    forecasters)."""
    point = np.asarray(point, dtype=np.float64)
    quantiles = np.repeat(point[:, None], len(QUANTILE_LEVELS), axis=1)
    return TaskForecast(point, quantiles, probabilistic=False, fallbacks=fallbacks)


def task_scores(windows: Windows, fc: TaskForecast, season_length: int) -> dict[str, float]:
    """``wql``, ``mase``, ``smape`` (and ``coverage_80`` of the 10-90% quantiles when
    probabilistic) of one competitor on one task's windows.

    Example:
        Truth 9, 10 after context 1..8 (season 2, scale 2), forecast 8, 8: MASE (1 + 2) / 2 / 2.

        >>> from lora_forecast.data.series import from_arrays
        >>> from lora_forecast.benchmark.windows import rolling_windows
        >>> w = rolling_windows(from_arrays(np.arange(1.0, 11).reshape(1, 10, 1),
        ...                                 np.arange(10)), 2, 1, 8)
        >>> task_scores(w, point_mass(np.array([[[8.0], [8.0]]])), 2)["mase"]
        0.75
    """
    truth, point = windows.truth, np.asarray(fc.point, dtype=np.float64)
    per_window = [(mase(y, f, c, season_length), smape(y, f))
                  for y, f, c in zip(truth, point, windows.contexts, strict=True)]
    mases = np.array([m for m, _ in per_window])
    quantiles = np.moveaxis(fc.quantiles, 1, 0)  # [Q, N, H, V]
    n_vars = truth.shape[-1]
    scores = {
        "wql": weighted_quantile_loss(truth.reshape(-1, n_vars),
                                      quantiles.reshape(len(QUANTILE_LEVELS), -1, n_vars),
                                      QUANTILE_LEVELS),
        "mase": float(np.mean(mases[np.isfinite(mases)])) if np.isfinite(mases).any()
        else math.nan,
        "smape": float(np.mean([s for _, s in per_window])),
    }
    if fc.probabilistic:
        scores["coverage_80"] = interval_coverage(truth, quantiles[_LOW], quantiles[_HIGH])
    return scores


@dataclass(frozen=True)
class Aggregate:
    """One competitor's aggregates of one metric over tasks (NaN where undefined)."""

    gmean: float
    ci_low: float
    ci_high: float
    win_rate: float
    avg_rank: float


def aggregate(values: pd.DataFrame, reference: str, n_boot: int = 1000,
              seed: int = 0) -> dict[str, Aggregate]:
    """Aggregate one metric of every competitor over tasks.

    Args:
        values: competitors x tasks, the metric's value per task (lower is better).
        reference: the row every ratio divides by (seasonal naive).
        n_boot, seed: the bootstrap over tasks.

    Returns:
        ``{competitor: Aggregate}``; the reference's own geometric mean is exactly 1.

    Example:
        Ratios 0.75 and 1.25 to the reference on two tasks: geometric mean sqrt(0.9375).

        >>> table = pd.DataFrame({"a": [1.0, 0.75], "b": [1.0, 1.25]},
        ...                      index=["seasonal_naive", "persistence"])
        >>> round(aggregate(table, "seasonal_naive", n_boot=10)["persistence"].gmean, 6)
        0.968246
    """
    ref = values.loc[reference].to_numpy(np.float64)
    ranks = values.rank(axis=0, method="average").mean(axis=1)
    out = {}
    for name, row in values.iterrows():
        ratios = clipped_ratios(row.to_numpy(np.float64), ref)
        logs = np.log(ratios[np.isfinite(ratios)])  # clipped: never 0, so every log is finite
        gmean, (low, high) = ((math.exp(float(np.mean(logs))),
                               tuple(math.exp(v) for v in bootstrap_ci(logs, n_boot, seed)))
                              if logs.size else (math.nan, (math.nan, math.nan)))
        out[str(name)] = Aggregate(gmean, low, high, _win_rate(values, str(name)),
                                   float(ranks[name]))
    return out


def clipped_ratios(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``scores / reference`` per task, clipped to :data:`RATIO_CLIP` (as fev-bench does) so a
    perfect forecast of one task (a ratio of 0, whose log is -inf) counts as a large win, not
    as the whole aggregate; NaN where either is not finite or the reference is 0.

    Example:
        >>> clipped_ratios(np.array([0.0, 1.0, 500.0]), np.array([2.0, 4.0, 1.0])).tolist()
        [0.01, 0.25, 100.0]
    """
    scores, reference = np.asarray(scores, np.float64), np.asarray(reference, np.float64)
    ok = np.isfinite(scores) & np.isfinite(reference) & (reference > 0)
    ratios = np.divide(scores, reference, out=np.full(scores.shape, math.nan), where=ok)
    return np.where(ok, np.clip(ratios, *RATIO_CLIP), math.nan)


def _win_rate(values: pd.DataFrame, name: str) -> float:
    """Share of (task, other competitor) pairs where ``name`` scores lower; ties count half."""
    mine = values.loc[name].to_numpy(np.float64)
    others = values.drop(index=name).to_numpy(np.float64)  # [M - 1, T]
    if others.size == 0:
        return math.nan
    wins = (mine[None] < others) + 0.5 * (mine[None] == others)
    return float(wins.mean())


def relative(values: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each task's value divided by the reference's on that task."""
    return values.div(values.loc[reference], axis=1)


def ordered(names: Sequence[str], gmeans: dict[str, Aggregate]) -> list[str]:
    """Competitors best first by geometric mean (NaN last), ties in the given order."""
    key = {n: (math.isnan(gmeans[n].gmean), gmeans[n].gmean if not math.isnan(gmeans[n].gmean)
               else 0.0, i) for i, n in enumerate(names)}
    return sorted(names, key=key.__getitem__)
