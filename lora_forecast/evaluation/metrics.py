"""Forecast metrics: pure functions on arrays, no I/O.

Shapes follow one convention throughout: ``truth`` and ``point`` are ``[S, H, V]`` (systems,
horizon steps, variables); ``samples`` are ``[S, N, H, V]`` with NaN where a sample could not be
parsed. Every scalar metric pools all values it is given; :func:`score_forecasts` first removes
the systems that have no usable point forecast and reports how many it removed.

The forecasting field's per-series metrics (:func:`mase`, :func:`smape`,
:func:`weighted_quantile_loss`, :func:`crps_from_samples`, :func:`msis`) score *one* series:
``truth``/``forecast`` ``[H, V]``, its in-sample ``history`` ``[T, V]``, quantiles ``[Q, H, V]``,
samples ``[N, H, V]``; :func:`relative_geometric_mean` aggregates per-series scores against a
reference forecaster (seasonal naive), as GIFT-Eval and the Chronos benchmark do. They are
written out here rather than called from ``utilsforecast.losses`` because that library works
on long data frames (one row per series and step), not on the arrays the protocol holds; the
tests check each one against ``utilsforecast`` on the same numbers.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import stats

from lora_forecast.results import json_ready

__all__ = [
    "bootstrap_ci",
    "crps_from_samples",
    "crps_samples",
    "interval_coverage",
    "log_ratios",
    "mae",
    "mase",
    "msis",
    "mse",
    "mse_per_step",
    "mse_per_variable",
    "quantiles_from_samples",
    "r2",
    "relative_geometric_mean",
    "score_forecasts",
    "seasonal_scale",
    "smape",
    "weighted_quantile_loss",
]


def mse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error over all values.

    Args:
        truth: true values, any shape.
        pred: predictions, same shape as ``truth``.

    Returns:
        ``mean((truth - pred) ** 2)``.

    Example:
        >>> mse(np.array([1.0, 2.0]), np.array([2.0, 4.0]))  # (1 + 4) / 2
        2.5
    """
    return float(np.mean(_diff(truth, pred) ** 2))


def mae(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error over all values.

    Args:
        truth: true values, any shape.
        pred: predictions, same shape as ``truth``.

    Returns:
        ``mean(|truth - pred|)``.

    Example:
        >>> mae(np.array([1.0, 2.0]), np.array([2.0, 4.0]))  # (1 + 2) / 2
        1.5
    """
    return float(np.mean(np.abs(_diff(truth, pred))))


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """Pooled coefficient of determination, ``1 - SSE / SS_tot``, over all values.

    ``SSE`` sums the squared errors over every system, step and variable. ``SS_tot`` sums the
    squared deviations of the truth from the mean *of its own variable* (taken over all
    systems and steps), so prey and predator each get their own baseline level and a model is
    not credited merely for knowing that prey outnumber predators. A perfect forecast scores 1,
    predicting each variable's mean scores 0. If the truth is constant in every variable
    (``SS_tot == 0``) the result is NaN.

    Args:
        truth: ``[..., V]`` true values; the last axis is the variable.
        pred: predictions, same shape.

    Returns:
        The pooled R2 as a float (NaN when undefined).

    Example:
        One variable, truth [0, 2] (mean 1, SS_tot 2), prediction [0, 1] (SSE 1): R2 = 0.5.

        >>> r2(np.array([[0.0], [2.0]]), np.array([[0.0], [1.0]]))
        0.5
    """
    err = _diff(truth, pred)
    truth = np.asarray(truth, dtype=np.float64)
    per_var_mean = truth.reshape(-1, truth.shape[-1]).mean(axis=0)  # [V]
    ss_tot = float(np.sum((truth - per_var_mean) ** 2))
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(np.sum(err**2)) / ss_tot


def mse_per_variable(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """MSE of each variable, pooled over systems and steps.

    Args:
        truth: ``[S, H, V]`` true values.
        pred: ``[S, H, V]`` predictions.

    Returns:
        ``[V]`` array.

    Example:
        >>> t = np.zeros((1, 2, 2)); p = np.array([[[1.0, 0.0], [3.0, 2.0]]])
        >>> mse_per_variable(t, p).tolist()  # prey (1 + 9) / 2, predator (0 + 4) / 2
        [5.0, 2.0]
    """
    return np.mean(_diff(truth, pred) ** 2, axis=(0, 1))


def mse_per_step(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """MSE at each horizon step, pooled over systems and variables.

    Args:
        truth: ``[S, H, V]`` true values.
        pred: ``[S, H, V]`` predictions.

    Returns:
        ``[H]`` array; entry ``h`` is the error ``h + 1`` steps after the context.

    Example:
        >>> t = np.zeros((1, 2, 2)); p = np.array([[[1.0, 0.0], [3.0, 2.0]]])
        >>> mse_per_step(t, p).tolist()  # step 1 (1 + 0) / 2, step 2 (9 + 4) / 2
        [0.5, 6.5]
    """
    return np.mean(_diff(truth, pred) ** 2, axis=(0, 2))


def interval_coverage(truth: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of true values inside the closed interval ``[lower, upper]``.

    A NaN bound counts as a miss (the value is not covered by a missing interval).

    Args:
        truth: true values, any shape.
        lower: lower bounds, same shape.
        upper: upper bounds, same shape.

    Returns:
        Coverage in [0, 1]; a calibrated 10-90% band covers about 0.8.

    Example:
        >>> interval_coverage(np.array([0.0, 1.0, 2.0, 3.0]),
        ...                   np.array([0.0, 0.0, 2.5, np.nan]), np.ones(4) * 2)
        0.5
    """
    truth = np.asarray(truth, dtype=np.float64)
    if not (truth.shape == np.shape(lower) == np.shape(upper)):
        raise ValueError(
            f"truth {truth.shape}, lower {np.shape(lower)}, upper {np.shape(upper)} must match"
        )
    inside = (truth >= lower) & (truth <= upper)
    return float(np.mean(inside))


def crps_samples(truth: np.ndarray, samples: np.ndarray) -> float:
    """Continuous ranked probability score from samples, averaged over all values.

    Per value the estimator is ``E|X - y| - 0.5 E|X - X'|`` with both expectations taken over
    the empirical distribution of the finite samples (the ``1/n^2`` form, which includes
    ``X = X'`` pairs, so a point mass scores exactly its absolute error). NaN samples (failed
    parses) are ignored; values with no finite sample at all are left out of the average.
    ``E|X - X'|`` uses the sorted-sample identity
    ``E|X - X'| = 2 / n^2 * sum_i (2 i - n - 1) x_(i)``, which is O(n log n).

    Args:
        truth: ``[S, H, V]`` true values.
        samples: ``[S, N, H, V]`` sampled forecasts, NaN where unparsed.

    Returns:
        Mean CRPS (lower is better; same units as the data). NaN if no value has a sample.

    Example:
        Samples {0, 2} for truth 0: E|X - y| = 1, E|X - X'| = (0 + 2 + 2 + 0) / 4 = 1,
        CRPS = 1 - 0.5 = 0.5.

        >>> crps_samples(np.zeros((1, 1, 1)), np.array([0.0, 2.0]).reshape(1, 2, 1, 1))
        0.5
    """
    per_value = _crps_per_value(truth, samples)
    if not np.isfinite(per_value).any():
        return math.nan
    return float(np.nanmean(per_value))


def seasonal_scale(history: np.ndarray, season_length: int = 1) -> np.ndarray:
    """In-sample mean absolute error of the seasonal naive forecast, one value per variable.

    ``scale_v = mean_t |history[t, v] - history[t - m, v]|`` over ``t = m .. T-1`` (Hyndman &
    Koehler 2006, the denominator of MASE and MSIS). As in GluonTS
    (``calculate_seasonal_error``), a history no longer than the season ``m`` falls back to
    ``m = 1``; a history of one step has no scale (NaN).

    Args:
        history: ``[T, V]`` the series' values before the forecast (the context).
        season_length: ``m``, the season in steps (1 = naive one-step differences).

    Returns:
        ``[V]`` scales (0 for a constant variable, NaN with fewer than two steps).

    Example:
        >>> seasonal_scale(np.array([[1.0], [3.0], [2.0]])).tolist()  # (|3-1| + |2-3|) / 2
        [1.5]
    """
    history = _as_2d(history, "history")
    if season_length < 1:
        raise ValueError(f"season_length must be >= 1, got {season_length}")
    m = season_length if season_length < len(history) else 1
    if len(history) <= m:
        return np.full(history.shape[1], np.nan)
    return np.mean(np.abs(history[m:] - history[:-m]), axis=0)


def mase(truth: np.ndarray, forecast: np.ndarray, history: np.ndarray,
         season_length: int = 1) -> float:
    """Mean absolute scaled error of one series (Hyndman & Koehler 2006).

    Per variable ``v``: ``mean_h |truth - forecast| / scale_v`` with ``scale_v`` the in-sample
    seasonal naive error (:func:`seasonal_scale`); then the mean over variables. One scale per
    series-variable is the GluonTS / Chronos convention (each variable of a multivariate
    series counts as its own univariate item), so prey and predator weigh the same whatever
    their units. A variable with zero scale (constant history) has no MASE and is left out of
    the mean; with none left the result is NaN. Below 1 means better than the in-sample
    seasonal naive forecast.

    Args:
        truth: ``[H, V]`` true values; forecast: ``[H, V]`` point forecast.
        history: ``[T, V]`` in-sample values (the context the forecast was made from).
        season_length: the season ``m`` in steps.

    Returns:
        The MASE as a float (NaN when no variable has a scale).

    Example:
        >>> mase(np.array([[4.0]]), np.array([[3.0]]), np.array([[1.0], [3.0], [2.0]]))
        0.6666666666666666
    """
    truth, forecast = _as_2d(truth, "truth"), _as_2d(forecast, "forecast")
    _same_shape(truth, forecast)
    scale = seasonal_scale(history, season_length)
    if scale.shape != truth.shape[1:]:
        raise ValueError(f"history has {scale.size} variables, truth {truth.shape[1]}")
    per_var = np.mean(np.abs(truth - forecast), axis=0)
    return _mean_over_scaled(per_var, scale)


def smape(truth: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric mean absolute percentage error, the M4 competition's definition.

    ``200 * mean |y - f| / (|y| + |f|)`` over all values, in percent (0 to 200); a value where
    both ``y`` and ``f`` are 0 counts as 0 (a perfect forecast of zero), as in
    ``utilsforecast.losses.smape``.

    Args:
        truth: true values, any shape; forecast: same shape.

    Returns:
        sMAPE in percent.

    Example:
        >>> smape(np.array([1.0, 0.0]), np.array([3.0, 0.0]))  # 200 * (2/4 + 0) / 2
        50.0
    """
    y, f = np.asarray(truth, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    _same_shape(y, f)
    denom = np.abs(y) + np.abs(f)
    ratio = np.divide(np.abs(y - f), denom, out=np.zeros_like(denom), where=denom != 0)
    return float(200.0 * np.mean(ratio))


def weighted_quantile_loss(truth: np.ndarray, quantiles: np.ndarray,
                           levels: np.ndarray | list[float]) -> float:
    """Weighted quantile loss, GluonTS's ``mean_weighted_sum_quantile_loss`` (Chronos's WQL).

    ``WQL = mean_q [2 * sum pinball_q(y, yhat_q) / sum |y|]`` with the pinball loss
    ``pinball_q = max(q (y - yhat_q), (q - 1)(y - yhat_q))``; both sums run over every step
    and variable of the series (the variables pooled, as GluonTS pools items). On the nine
    levels 0.1..0.9 it approximates the CRPS divided by ``mean |y|``. NaN when ``sum |y| = 0``.

    Args:
        truth: ``[H, V]`` true values.
        quantiles: ``[Q, H, V]`` forecast quantiles, ``quantiles[i]`` at ``levels[i]``.
        levels: ``[Q]`` quantile levels in (0, 1).

    Returns:
        The WQL as a float (lower is better; scale-free).

    Example:
        Median 2 for truth 4: pinball 0.5 * 2 = 1, WQL = 2 * 1 / 4.

        >>> weighted_quantile_loss(np.array([[4.0]]), np.array([[[2.0]]]), [0.5])
        0.5
    """
    y = np.asarray(truth, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64).reshape(-1, *([1] * y.ndim))
    if q.shape != (lv.shape[0], *y.shape):
        raise ValueError(f"quantiles {q.shape} must be [Q={lv.shape[0]}, *{y.shape}]")
    if not ((lv > 0) & (lv < 1)).all():
        raise ValueError(f"quantile levels must be in (0, 1), got {lv.ravel().tolist()}")
    err = y[None] - q
    pinball = np.maximum(lv * err, (lv - 1.0) * err)
    norm = float(np.sum(np.abs(y)))
    if norm == 0.0:
        return math.nan
    return float(np.mean(2.0 * pinball.reshape(len(lv), -1).sum(axis=1) / norm))


def quantiles_from_samples(samples: np.ndarray, levels: np.ndarray | list[float]) -> np.ndarray:
    """Empirical quantiles ``[Q, ...]`` of samples ``[N, ...]`` over their first axis, ignoring
    NaN samples (numpy's default linear interpolation); NaN where a value has no sample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN
        return np.nanquantile(np.asarray(samples, dtype=np.float64),
                              np.asarray(levels, dtype=np.float64), axis=0)


def crps_from_samples(truth: np.ndarray, samples: np.ndarray) -> float:
    """CRPS of one series from samples, averaged over its steps and variables (unscaled).

    The sample (energy-form) estimator ``E|X - y| - 0.5 E|X - X'|`` of Gneiting & Raftery
    (2007), in the data's units, with the same conventions as :func:`crps_samples` (``1/n^2``
    form, NaN samples ignored, values without a finite sample left out). Not scaled: the
    scale-free counterpart is :func:`weighted_quantile_loss`, and the relative-to-seasonal-naive
    aggregate removes the units anyway (a point forecast's CRPS is its absolute error).

    Args:
        truth: ``[H, V]`` true values; samples: ``[N, H, V]`` sampled forecasts.

    Returns:
        Mean CRPS (NaN when no value has a finite sample).

    Example:
        >>> crps_from_samples(np.zeros((1, 1)), np.array([0.0, 2.0]).reshape(2, 1, 1))
        0.5
    """
    return crps_samples(np.asarray(truth)[None], np.asarray(samples)[None])


def msis(truth: np.ndarray, lower: np.ndarray, upper: np.ndarray, history: np.ndarray,
         season_length: int = 1, alpha: float = 0.2) -> float:
    """Mean scaled interval score of one series (the M4 competition's MSIS).

    Per value the interval (Winkler) score ``(u - l) + 2/alpha (l - y) 1{y < l} +
    2/alpha (y - u) 1{y > u}``; its mean over steps divided by the in-sample seasonal naive
    error (:func:`seasonal_scale`) of each variable, then the mean over variables (zero-scale
    variables left out, as in :func:`mase`). ``alpha = 0.2`` scores the 10%/90% band.

    Args:
        truth, lower, upper: ``[H, V]``; history: ``[T, V]``.
        season_length: the season ``m`` in steps; alpha: the interval's miss rate.

    Returns:
        The MSIS as a float (lower is better).

    Example:
        Band [1, 3] around truth 4 (above by 1), scale 1.5: (2 + 2 / 0.2 * 1) / 1.5 = 8.

        >>> msis(np.array([[4.0]]), np.array([[1.0]]), np.array([[3.0]]),
        ...      np.array([[1.0], [3.0], [2.0]]))
        8.0
    """
    y, lo, hi = (_as_2d(a, n) for a, n in ((truth, "truth"), (lower, "lower"), (upper, "upper")))
    _same_shape(y, lo)
    _same_shape(y, hi)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    score = (hi - lo) + 2.0 / alpha * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))
    return _mean_over_scaled(np.mean(score, axis=0), seasonal_scale(history, season_length))


def log_ratios(model_scores: np.ndarray, baseline_scores: np.ndarray) -> np.ndarray:
    """``log(model / baseline)`` of the series where both scores are finite and positive.

    The rule for the relative aggregates: a series where either score is 0 (a perfect
    forecast: the ratio is 0 or infinite), negative, NaN or infinite is skipped, not clipped;
    callers report how many were skipped (``len(model_scores) - len(result)``).
    """
    a = np.asarray(model_scores, dtype=np.float64).ravel()
    b = np.asarray(baseline_scores, dtype=np.float64).ravel()
    _same_shape(a, b)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    return np.log(a[ok]) - np.log(b[ok])


def relative_geometric_mean(model_scores: np.ndarray, baseline_scores: np.ndarray) -> float:
    """Geometric mean over series of ``model / baseline`` (GIFT-Eval, Chronos benchmark II).

    ``exp(mean log(model_s / baseline_s))``; below 1 means the model beats the baseline on a
    typical series, and no single series with large errors dominates. Series with a zero or
    non-finite score are skipped (:func:`log_ratios`); NaN when none is left.

    Args:
        model_scores: ``[S]`` per-series scores of the model (e.g. MASE).
        baseline_scores: ``[S]`` the same series' scores of the reference (seasonal naive).

    Returns:
        The geometric mean of the ratios.

    Example:
        Ratios 1/4 and 9/1 (the third series, scored 0, is skipped): sqrt(0.25 * 9) = 1.5.

        >>> round(relative_geometric_mean(np.array([1.0, 9.0, 0.0]), np.array([4.0, 1.0, 1.0])), 12)
        1.5
    """
    logs = log_ratios(model_scores, baseline_scores)
    return float(np.exp(np.mean(logs))) if logs.size else math.nan


def bootstrap_ci(
    per_system_values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean, resampling systems.

    Systems are the independent units (steps within one forecast are correlated), so
    ``scipy.stats.bootstrap`` draws whole systems with replacement ``n_boot`` times and takes
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the resampled means. The
    percentile method, not scipy's default BCa: BCa's jackknife acceleration is undefined for
    constant values and erratic for the handful of systems a small evaluation has. The same
    ``seed`` always gives the same interval. One system gives a zero-width interval (scipy
    needs two).

    Args:
        per_system_values: ``[S]`` one value per system (e.g. each system's MSE).
        n_boot: number of bootstrap resamples (>= 1).
        seed: seed of the resampling generator.
        level: confidence level in (0, 1).

    Returns:
        ``(low, high)``; ``(nan, nan)`` for an empty input.

    Example:
        >>> bootstrap_ci(np.array([2.0, 2.0, 2.0]), n_boot=50, seed=0)
        (2.0, 2.0)
    """
    values = np.asarray(per_system_values, dtype=np.float64).ravel()
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if values.size == 0:
        return math.nan, math.nan
    if values.size == 1:
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=level,
                             method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def score_forecasts(
    truth: np.ndarray,
    point: np.ndarray,
    *,
    parsed_systems: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a batch of forecasts into a JSON-ready dict of plain floats, ints and lists.

    A system is *scored* when ``parsed_systems`` marks it parsed (default: all) **and** its
    point forecast is finite everywhere; every other system is counted in ``parse_failures``
    and excluded from all error metrics, so ``n_systems + parse_failures`` is always ``S``.
    Confidence intervals bootstrap the per-system MSE/MAE over the scored systems (equal
    weights, so their mean equals the pooled value). When no system is scored, or a metric is
    undefined, its value is ``None`` (JSON ``null``) instead of NaN.

    Args:
        truth: ``[S, H, V]`` true values.
        point: ``[S, H, V]`` point forecasts (NaN where unparsed).
        parsed_systems: ``[S]`` bool, which systems have a usable forecast; None = all.
        lower: ``[S, H, V]`` lower band (10% quantile), optional; used with ``samples``.
        upper: ``[S, H, V]`` upper band (90% quantile), optional; used with ``samples``.
        samples: ``[S, N, H, V]`` sampled forecasts, NaN where unparsed, optional.
        n_boot: bootstrap resamples for the intervals.
        seed: bootstrap seed.

    Returns:
        Keys ``mse, mae, r2, mse_per_variable [V], mse_per_step [H], n_systems,
        parse_failures, mse_ci [lo, hi], mae_ci [lo, hi]``; plus ``coverage_80`` (of
        ``[lower, upper]``, or of the 10/90% sample quantiles when no band is given) and
        ``crps`` only when ``samples`` are given: a greedy forecast's band is the point
        itself (lower == upper), and its "coverage" would be a meaningless ~0.

    Example:
        >>> t = np.zeros((2, 1, 1)); p = np.array([[[1.0]], [[np.nan]]])
        >>> m = score_forecasts(t, p, n_boot=10)
        >>> m["mse"], m["n_systems"], m["parse_failures"]
        (1.0, 1, 1)
    """
    truth = np.asarray(truth, dtype=np.float64)
    point = np.asarray(point, dtype=np.float64)
    if truth.ndim != 3 or truth.shape != point.shape:
        raise ValueError(f"truth {truth.shape} and point {point.shape} must both be [S, H, V]")
    keep = _scored_mask(point, parsed_systems)
    t, p = truth[keep], point[keep]
    per_sys_sq = np.mean((t - p) ** 2, axis=(1, 2))  # [S_kept]
    per_sys_abs = np.mean(np.abs(t - p), axis=(1, 2))  # [S_kept]
    empty = not keep.any()
    out: dict[str, Any] = {
        "mse": None if empty else mse(t, p),
        "mae": None if empty else mae(t, p),
        "r2": None if empty else r2(t, p),
        "mse_per_variable": None if empty else mse_per_variable(t, p).tolist(),
        "mse_per_step": None if empty else mse_per_step(t, p).tolist(),
        "n_systems": int(keep.sum()),
        "parse_failures": int((~keep).sum()),
        "mse_ci": list(bootstrap_ci(per_sys_sq, n_boot, seed)),
        "mae_ci": list(bootstrap_ci(per_sys_abs, n_boot, seed)),
    }
    if samples is not None:
        samples = np.asarray(samples, dtype=np.float64)
        if lower is None or upper is None:
            lower, upper = _sample_band(samples)
        cover = interval_coverage(t, np.asarray(lower)[keep], np.asarray(upper)[keep])
        out["coverage_80"] = None if empty else cover
        out["crps"] = None if empty else crps_samples(t, samples[keep])
    return json_ready(out)


def _diff(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} shapes differ")
    return truth - pred


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} {a.shape} must be [steps, variables]")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes {a.shape} and {b.shape} differ")


def _mean_over_scaled(per_var: np.ndarray, scale: np.ndarray) -> float:
    """Mean over variables of ``per_var / scale``, leaving out variables without a scale."""
    ok = np.isfinite(scale) & (scale > 0)
    return float(np.mean(per_var[ok] / scale[ok])) if ok.any() else math.nan


def _scored_mask(point: np.ndarray, parsed_systems: np.ndarray | None) -> np.ndarray:
    finite = np.isfinite(point).all(axis=(1, 2))  # [S]
    if parsed_systems is None:
        return finite
    parsed = np.asarray(parsed_systems, dtype=bool)
    if parsed.shape != finite.shape:
        raise ValueError(f"parsed_systems {parsed.shape} must be [S] = {finite.shape}")
    return parsed & finite


def _crps_per_value(truth: np.ndarray, samples: np.ndarray) -> np.ndarray:
    truth = np.asarray(truth, dtype=np.float64)
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=1)  # [S, N, H, V], NaN last
    if x.ndim != 4 or x.shape[:1] + x.shape[2:] != truth.shape:
        raise ValueError(f"samples {x.shape} must be [S, N, H, V] for truth {truth.shape}")
    valid = np.isfinite(x)
    n = valid.sum(axis=1)  # [S, H, V]
    x0 = np.where(valid, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_err = np.sum(np.abs(x0 - truth[:, None]) * valid, axis=1) / n
        rank = np.arange(1, x.shape[1] + 1).reshape(1, -1, 1, 1)  # i = 1..N
        weights = np.where(valid, 2 * rank - n[:, None] - 1, 0)
        spread = 2.0 * np.sum(weights * x0, axis=1) / n**2
    return np.where(n > 0, abs_err - 0.5 * spread, np.nan)


def _sample_band(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """10% and 90% quantiles over the finite samples (NaN where a value has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, a miss
        lower, upper = np.nanquantile(samples, [0.1, 0.9], axis=1)
    return lower, upper
