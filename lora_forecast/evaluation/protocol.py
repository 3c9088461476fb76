"""The evaluation protocol: which part of each series is context and which is scored.

Every forecaster (the LLM and the baselines alike) sees the first ``context_steps`` time steps
of each evaluation system and is scored on the next ``horizon_steps``; the same windows and the
same metrics (:func:`lora_forecast.evaluation.metrics.score_forecasts`) for everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from lora_forecast.errors import ConfigError
from lora_forecast.evaluation.baselines import forecast_baseline_band
from lora_forecast.evaluation.metrics import interval_coverage, score_forecasts
from lora_forecast.evaluation.scoring import (
    Predicted,
    field_scores,
    per_series_scores,
    reference_scores,
)

__all__ = ["EvalWindow", "SeriesWindows", "cut_eval_windows", "cut_series_windows",
           "numeric_time", "score_baselines", "score_predicted"]


class EvalWindow(NamedTuple):
    """Context and truth of the evaluation systems; unpacks as a 4-tuple.

    Attributes:
        contexts: ``[S, Tc, V]`` the values a forecaster sees.
        truth: ``[S, H, V]`` the values it is scored against.
        t_context: ``[Tc]`` times of the context steps.
        t_future: ``[H]`` times of the forecast steps.
    """

    contexts: np.ndarray
    truth: np.ndarray
    t_context: np.ndarray
    t_future: np.ndarray


def cut_eval_windows(
    trajectories: np.ndarray,
    time: np.ndarray,
    context_steps: int,
    horizon_steps: int,
    n_systems: int | None = None,
) -> EvalWindow:
    """Cut each system into its context (first steps) and the horizon right after it.

    Args:
        trajectories: ``[S, T, V]`` series, one per system.
        time: ``[T]`` shared time axis.
        context_steps: ``Tc``, steps shown to the forecaster (>= 1).
        horizon_steps: ``H``, steps forecast and scored (>= 1).
        n_systems: use the first ``n`` systems; None = all of them.

    Returns:
        :class:`EvalWindow` ``(contexts [n, Tc, V], truth [n, H, V], t_context [Tc],
        t_future [H])``; copies, so the caller's arrays are never aliased.

    Raises:
        ConfigError: when ``context_steps + horizon_steps`` exceeds the series length, a
            count is not positive, or more systems are asked for than exist.

    Example:
        >>> x = np.arange(12.0).reshape(2, 3, 2)  # 2 systems, 3 steps, 2 variables
        >>> w = cut_eval_windows(x, np.array([0.0, 1.0, 2.0]), 2, 1, n_systems=1)
        >>> w.contexts.tolist(), w.truth.tolist(), w.t_future.tolist()
        ([[[0.0, 1.0], [2.0, 3.0]]], [[[4.0, 5.0]]], [2.0])
    """
    trajectories = np.asarray(trajectories, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    if trajectories.ndim != 3 or trajectories.shape[1] != len(time):
        raise ConfigError(
            f"trajectories {trajectories.shape} must be [S, T, V] with T = len(time) = {len(time)}"
        )
    n_total, n_steps, _ = trajectories.shape
    if context_steps < 1 or horizon_steps < 1:
        raise ConfigError(
            f"eval.context_steps and eval.horizon_steps must be >= 1, "
            f"got {context_steps} and {horizon_steps}"
        )
    if context_steps + horizon_steps > n_steps:
        raise ConfigError(
            f"eval.context_steps + eval.horizon_steps = {context_steps} + {horizon_steps} = "
            f"{context_steps + horizon_steps} exceeds the series length {n_steps}"
        )
    if n_systems is not None and not 1 <= n_systems <= n_total:
        raise ConfigError(f"eval.n_systems must be in [1, {n_total}] or null, got {n_systems}")
    chosen = trajectories[: n_total if n_systems is None else n_systems]
    end = context_steps + horizon_steps
    return EvalWindow(
        contexts=chosen[:, :context_steps].copy(),
        truth=chosen[:, context_steps:end].copy(),
        t_context=time[:context_steps].copy(),
        t_future=time[context_steps:end].copy(),
    )


@dataclass(frozen=True)
class SeriesWindows:
    """Evaluation windows over ragged series: the first ``Tc`` steps of every series long
    enough are context, the next ``H`` are scored; shorter series are skipped and counted.

    Attributes:
        contexts: ``[S, Tc, V]``; truth: ``[S, H, V]``.
        t_context: ``[S, Tc]`` and t_future: ``[S, H]`` times as floats (see
            :func:`numeric_time`), per series.
        ids: the ``S`` series ids used; positions: their indices in the input.
        skipped: series too short for ``Tc + H`` steps.
    """

    contexts: np.ndarray
    truth: np.ndarray
    t_context: np.ndarray
    t_future: np.ndarray
    ids: tuple[str, ...]
    positions: np.ndarray
    skipped: int


def numeric_time(times: np.ndarray) -> np.ndarray:
    """Times as float64: numbers unchanged, datetimes as days since the first one."""
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        return (times - times[0]) / np.timedelta64(1, "D")
    return times.astype(np.float64)


def cut_series_windows(series: Any, context_steps: int, horizon_steps: int,
                       n_systems: int | None = None) -> SeriesWindows:
    """Cut every series long enough into context and horizon (see :class:`SeriesWindows`).

    Args:
        series: a :class:`lora_forecast.data.series.SeriesSet`.
        context_steps: ``Tc``; horizon_steps: ``H`` (both >= 1).
        n_systems: use the first ``n`` series long enough; None = all of them.

    Raises:
        ConfigError: no series is long enough, or ``n_systems`` exceeds those that are.

    Example:
        >>> from lora_forecast.data.series import SeriesSet
        >>> s = SeriesSet(("a", "b"), (np.ones((3, 1)), np.ones((5, 1))),
        ...               (np.arange(3.0), np.arange(5.0)), ("x",))
        >>> w = cut_series_windows(s, 3, 1)
        >>> w.ids, w.skipped, w.contexts.shape
        (('b',), 1, (1, 3, 1))
    """
    end = context_steps + horizon_steps
    keep = np.flatnonzero(series.lengths >= end)
    if keep.size == 0:
        raise ConfigError(
            f"eval.context_steps + eval.horizon_steps = {end} exceeds the length of every "
            f"evaluation series (longest {int(series.lengths.max())})")
    if n_systems is not None and not 1 <= n_systems <= keep.size:
        raise ConfigError(f"eval.n_systems must be in [1, {keep.size}] (evaluation series long "
                          f"enough) or null, got {n_systems}")
    chosen = keep[: keep.size if n_systems is None else n_systems]
    values = np.stack([series.values[i][:end] for i in chosen])  # [S, Tc + H, V]
    times = np.stack([numeric_time(series.times[i])[:end] for i in chosen])  # [S, Tc + H]
    return SeriesWindows(
        contexts=values[:, :context_steps].copy(), truth=values[:, context_steps:].copy(),
        t_context=times[:, :context_steps].copy(), t_future=times[:, context_steps:].copy(),
        ids=tuple(series.ids[i] for i in chosen), positions=chosen,
        skipped=int(len(series) - keep.size),
    )


def score_baselines(
    names: Sequence[str],
    window: EvalWindow | SeriesWindows,
    n_boot: int = 1000,
    seed: int = 0,
    season_length: int = 1,
) -> dict[str, dict[str, Any]]:
    """Forecast and score every named baseline on the evaluation windows.

    Args:
        names: keys of :data:`lora_forecast.evaluation.baselines.BASELINES`, in report order.
        window: contexts, truth and their times (:func:`cut_eval_windows` of a uniform array,
            :func:`cut_series_windows` of ragged series: shared axes or one per system).
        n_boot: bootstrap resamples for the confidence intervals.
        seed: bootstrap seed (the same for every baseline, so intervals are comparable).
        season_length: season of seasonal naive, the statsforecast models and MASE, in steps.

    Returns:
        ``{name: score_forecasts(...) dict}``, JSON-ready; baselines with a 10%/90% band
        (statsforecast's 80% interval) add ``coverage_80`` and ``fallbacks``.

    Raises:
        ConfigError: for an unknown baseline name.

    Example:
        >>> x = np.ones((3, 5, 2))
        >>> window = cut_eval_windows(x, np.arange(5.0), 3, 2)
        >>> score_baselines(["persistence"], window, n_boot=10)["persistence"]["mse"]
        0.0
    """
    contexts, truth = window.contexts, window.truth
    results: dict[str, dict[str, Any]] = {}
    reference = reference_scores(truth, contexts, season_length)
    for name in names:
        point, lower, upper, fallbacks = forecast_baseline_band(
            name, contexts, window.t_context, window.t_future, season_length)
        scores = score_forecasts(truth, point, n_boot=n_boot, seed=seed)
        if lower is not None and upper is not None:
            scores["coverage_80"] = interval_coverage(truth, lower, upper)
            scores["fallbacks"] = int(fallbacks)
        per_series = per_series_scores(truth, contexts, Predicted(point, lower, upper),
                                       season_length)
        scores.update(field_scores(per_series, reference, n_boot, seed))
        results[name] = scores
    return results


def score_predicted(truth: np.ndarray, contexts: np.ndarray | list[np.ndarray],
                    pred: Predicted, season_length: int = 1, n_boot: int = 1000,
                    seed: int = 0) -> dict[str, Any]:
    """Score one forecaster the way the baselines are scored: :func:`score_forecasts`'s
    metrics (MSE, MAE, R2, coverage and CRPS from samples), then the field's per-series
    metrics, their aggregates and the ratios to seasonal naive
    (:func:`lora_forecast.evaluation.scoring.field_scores`). JSON-ready."""
    scores = score_forecasts(truth, pred.point, parsed_systems=pred.parsed, lower=pred.lower,
                             upper=pred.upper, samples=pred.samples, n_boot=n_boot, seed=seed)
    per_series = per_series_scores(truth, contexts, pred, season_length)
    reference = reference_scores(truth, contexts, season_length)
    scores.update(field_scores(per_series, reference, n_boot, seed))
    return scores
