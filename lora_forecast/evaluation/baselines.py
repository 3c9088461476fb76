"""Forecasters without an LLM, to tell whether fine-tuning buys anything.

Every baseline forecasts one system from its context alone (no training set), through the
signature written above :data:`BASELINES`. They are pure: no I/O, no global state, the input
is never modified. Besides our own (persistence, linear AR, ODE fits) the registry holds the
classical forecasters users already trust, from statsforecast (``auto_arima``, ``auto_ets``,
``theta``), fitted per variable, with their 80% prediction interval as the 10%/90% band.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from lora_forecast.errors import ConfigError
from lora_forecast.evaluation.ode_fit import ODE_MODELS, fit_and_forecast

__all__ = [
    "BASELINES",
    "BaselineFn",
    "Band",
    "QUANTILED",
    "baseline_fn",
    "SEASONAL",
    "forecast_baseline",
    "forecast_baseline_band",
    "linear_ar",
    "ode_fit",
    "persistence",
    "seasonal_naive",
    "statsforecast_model",
]


@dataclass(frozen=True)
class Band:
    """A point forecast ``[H, V]`` with its 10%/90% band (``lower``/``upper``, ``[H, V]``);
    ``fallback`` marks a forecast that fell back to persistence (zero-width band);
    ``quantiles`` ``[Q, H, V]`` at the levels asked for, when asked for."""

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fallback: bool = False
    quantiles: np.ndarray | None = None


# fn(context [Tc, V], t_context [Tc], t_future [H]) -> forecast [H, V] or a Band
BaselineFn = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | Band"]


def persistence(context: np.ndarray, t_context: np.ndarray, t_future: np.ndarray) -> np.ndarray:
    """Repeat the last observed value over the whole horizon.

    Args:
        context: ``[Tc, V]`` observed values.
        t_context: ``[Tc]`` their times (unused).
        t_future: ``[H]`` forecast times (only their count is used).

    Returns:
        ``[H, V]`` forecast.

    Example:
        >>> persistence(np.array([[1.0, 2.0], [3.0, 4.0]]), np.arange(2), np.arange(2, 5))
        array([[3., 4.],
               [3., 4.],
               [3., 4.]])
    """
    context = np.asarray(context, dtype=np.float64)
    return np.repeat(context[-1:], len(t_future), axis=0)


def seasonal_naive(context: np.ndarray, t_context: np.ndarray, t_future: np.ndarray, *,
                   season_length: int = 1) -> np.ndarray:
    """Repeat the last observed season: ``forecast[h] = context[Tc - m + (h mod m)]``.

    The reference of the relative metrics (MASE's in-sample scale is this forecast's error);
    with ``season_length = 1`` it is :func:`persistence`. A context shorter than one season
    falls back to ``m = 1``. The same numbers as statsforecast's ``SeasonalNaive`` (tested),
    written out because it is one indexing line and importing statsforecast (numba) for it
    would slow down every run, which always computes this reference.

    Args:
        context: ``[Tc, V]`` observed values.
        t_context: ``[Tc]`` their times (unused).
        t_future: ``[H]`` forecast times (only their count is used).
        season_length: the season ``m`` in steps (``eval.season_length``).

    Returns:
        ``[H, V]`` forecast.

    Example:
        >>> seasonal_naive(np.array([[1.0], [2.0], [3.0]]), np.arange(3), np.arange(3, 6),
        ...                season_length=2).ravel().tolist()
        [2.0, 3.0, 2.0]
    """
    context = np.asarray(context, dtype=np.float64)
    if season_length < 1:
        raise ValueError(f"season_length must be >= 1, got {season_length}")
    m = season_length if season_length <= len(context) else 1
    steps = len(context) - m + np.arange(len(t_future)) % m
    return context[steps].copy()


def linear_ar(
    context: np.ndarray, t_context: np.ndarray, t_future: np.ndarray, *, order: int = 3,
    clip_at_zero: bool = True,
) -> np.ndarray:
    """Vector autoregression VAR(order) with intercept, fitted by least squares, iterated.

    Model: ``y_t = c + A_1 y_{t-1} + ... + A_p y_{t-p}`` over all ``V`` variables jointly,
    fitted on the context only with ``numpy.linalg.lstsq`` (minimum-norm solution, so
    collinear lags, e.g. a constant series, still give a unique fit). The recurrence is
    iterated on its own (unclipped) predictions, one step at a time, and only the returned
    forecast is clipped at 0, since populations cannot be negative. Feeding clipped values
    back would push the state off the orbit the model was fitted on; on the reference data
    that made about 1% of VAR(3) forecasts diverge (MSE in the hundreds), while clipping the
    output only keeps the iteration linear and bounded by its own stability. The
    steps are assumed equally spaced (times are not used). With fewer than ``order + 1``
    context steps the forecast falls back to persistence; a forecast that overflows (an
    explosive fit) also falls back to persistence.

    Args:
        context: ``[Tc, V]`` observed values.
        t_context: ``[Tc]`` their times (unused).
        t_future: ``[H]`` forecast times (only their count is used).
        order: number of lags ``p``.
        clip_at_zero: clip the forecast at 0 (populations); False for signed series.

    Returns:
        ``[H, V]`` forecast, non-negative when ``clip_at_zero``.

    Example:
        The recurrence ``y_t = 0.5 y_{t-1} + 1`` (fixed point 2) is recovered exactly:

        >>> y = np.array([[0.0], [1.0], [1.5], [1.75], [1.875], [1.9375]])
        >>> linear_ar(y, np.arange(6), np.arange(6, 8), order=1).round(6).ravel().tolist()
        [1.96875, 1.984375]
    """
    context = np.asarray(context, dtype=np.float64)
    n_steps, n_vars = context.shape
    if order < 1:
        raise ValueError(f"linear_ar order must be >= 1, got {order}")
    if n_steps <= order:
        return persistence(context, t_context, t_future)
    # Row t of the design: [1, y_{t-1}, ..., y_{t-p}] for t = p .. Tc-1.
    lags = [context[order - k : n_steps - k] for k in range(1, order + 1)]  # p x [Tc-p, V]
    design = np.hstack([np.ones((n_steps - order, 1)), *lags])  # [Tc-p, 1 + p V]
    coef, *_ = np.linalg.lstsq(design, context[order:], rcond=None)  # [1 + p V, V]
    history = list(context[-order:])
    out = np.empty((len(t_future), n_vars))
    with np.errstate(over="ignore", invalid="ignore"):
        for h in range(len(t_future)):
            row = np.concatenate([[1.0], *history[::-1][:order]])
            out[h] = row @ coef
            history.append(out[h])
    if not np.isfinite(out).all():
        return persistence(context, t_context, t_future)
    return np.maximum(out, 0.0) if clip_at_zero else out


def ode_fit(
    context: np.ndarray,
    t_context: np.ndarray,
    t_future: np.ndarray,
    *,
    model: str = "lotka_volterra",
) -> np.ndarray:
    """Fit a predator-prey ODE to the context and integrate it over the forecast times.

    Fits the rates (``alpha, beta, delta, gamma``; plus the prey carrying capacity for
    ``model="logistic"``) and the initial state by least squares in log-parameter space,
    from several starting points, then integrates with ``solve_ivp``; see
    :mod:`lora_forecast.evaluation.ode_fit` for the details. If every fit fails or the
    integration does not produce a finite forecast, it falls back to :func:`persistence`,
    so it always returns a forecast. Expects ``V == 2`` (prey, predator).

    Args:
        context: ``[Tc, 2]`` prey and predator values.
        t_context: ``[Tc]`` their times.
        t_future: ``[H]`` forecast times.
        model: key of :data:`lora_forecast.evaluation.ode_fit.ODE_MODELS`.

    Returns:
        ``[H, 2]`` forecast (positive, or persistence's on failure).

    Example:
        On a noiseless Lotka-Volterra context the fitted model continues the orbit (see
        ``tests/test_baselines.py``); on a flat context it stays flat.
    """
    context = np.asarray(context, dtype=np.float64)
    if context.ndim != 2 or context.shape[1] != 2:
        raise ValueError(f"ode_fit needs a [Tc, 2] prey/predator context, got {context.shape}")
    if model not in ODE_MODELS:
        raise ValueError(f"unknown ODE model {model!r}; available: {sorted(ODE_MODELS)}")
    forecast = fit_and_forecast(ODE_MODELS[model], context, t_context, t_future)
    return persistence(context, t_context, t_future) if forecast is None else forecast


def _statsforecast_models() -> dict[str, type]:
    from statsforecast.models import AutoARIMA, AutoETS, Theta  # numba-compiled: import late

    return {"AutoARIMA": AutoARIMA, "AutoETS": AutoETS, "Theta": Theta}


def statsforecast_model(
    context: np.ndarray,
    t_context: np.ndarray,
    t_future: np.ndarray,
    *,
    model: str,
    season_length: int = 1,
    quantile_levels: tuple[float, ...] | None = None,
) -> Band:
    """One statsforecast model fitted to each variable of the context on its own.

    The 80% prediction interval (``level=[80]``) is the 10%/90% band, the same quantiles the
    LLM's samples give. A context too short for the model (statsforecast raises on "tiny
    datasets", e.g. AutoETS below 8 steps) falls back to :func:`persistence` with a zero-width
    band and ``fallback=True``, so every system still gets a forecast and the count is known.
    Steps are assumed equally spaced (times are not used).

    Args:
        context: ``[Tc, V]`` observed values.
        t_context: ``[Tc]`` their times (unused).
        t_future: ``[H]`` forecast times (only their count is used).
        model: ``AutoARIMA``, ``AutoETS`` or ``Theta``.
        season_length: the season in steps (1 = no seasonality).
        quantile_levels: also return these quantiles, each the edge of a central interval
            (level ``q < 0.5`` the lower edge of the ``100 (1 - 2q)``% interval, 0.5 the mean:
            statsforecast's intervals are symmetric), as the Chronos benchmark scores them.

    Returns:
        A :class:`Band` of ``[H, V]`` arrays (``quantiles`` ``[Q, H, V]`` when asked for).
    """
    context = np.asarray(context, dtype=np.float64)
    columns = ["mean", "lo-80", "hi-80", *_interval_columns(quantile_levels or ())]
    out = np.empty((len(columns), len(t_future), context.shape[1]))  # column x [H, V]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for j in range(context.shape[1]):
                fit = _statsforecast_models()[model](season_length=season_length).forecast(
                    y=context[:, j], h=len(t_future), level=_interval_levels(columns))
                out[:, :, j] = [np.asarray(fit[k], dtype=np.float64) for k in columns]
        failed = not np.isfinite(out).all()
    except (NotImplementedError, ValueError, IndexError, ZeroDivisionError,
            np.linalg.LinAlgError):
        failed = True
    if failed:
        out[:] = persistence(context, t_context, t_future)
    quantiles = out[3:] if quantile_levels else None
    if quantiles is not None and not failed:  # monotone in the level, as quantiles are
        quantiles = np.sort(quantiles, axis=0)
    return Band(out[0], np.minimum(out[1], out[0]), np.maximum(out[2], out[0]),
                fallback=failed, quantiles=quantiles)


def _interval_columns(levels: tuple[float, ...]) -> list[str]:
    """statsforecast's column for each quantile level (0.1 -> lo-80, 0.5 -> mean, 0.9 -> hi-80).

    Example:
        >>> _interval_columns((0.1, 0.5, 0.75))
        ['lo-80', 'mean', 'hi-50']
    """
    columns = []
    for q in levels:
        if not 0 < q < 1:
            raise ValueError(f"quantile levels must be in (0, 1), got {q}")
        width = round(100 * abs(2 * q - 1), 6)
        columns.append("mean" if width == 0 else f"{'lo' if q < 0.5 else 'hi'}-{width:g}")
    return columns


def _interval_levels(columns: list[str]) -> list[int | float]:
    """The interval widths behind ``columns``, as statsforecast names them (80, not 80.0)."""
    widths = {float(c.split("-")[1]) for c in columns if c != "mean"}
    return sorted(int(w) if w.is_integer() else w for w in widths)


# Registry: name -> BaselineFn (signature above). Variants are partials, not new code paths.
BASELINES: dict[str, BaselineFn] = {
    "persistence": persistence,
    "seasonal_naive": seasonal_naive,
    "linear_ar": linear_ar,
    "ode_fit": ode_fit,
    "ode_fit_logistic": partial(ode_fit, model="logistic"),
    "auto_arima": partial(statsforecast_model, model="AutoARIMA"),
    "auto_ets": partial(statsforecast_model, model="AutoETS"),
    "theta": partial(statsforecast_model, model="Theta"),
}
# take ``season_length``
SEASONAL = frozenset({"seasonal_naive", "auto_arima", "auto_ets", "theta"})
# take ``quantile_levels`` (statsforecast's interval forecasts)
QUANTILED = frozenset({"auto_arima", "auto_ets", "theta"})


def baseline_fn(name: str, season_length: int = 1,
                quantile_levels: tuple[float, ...] | None = None) -> BaselineFn:
    """The registered baseline ``name`` with its season (and, for statsforecast's models, the
    quantile levels to return) bound.

    Raises:
        ConfigError: for an unknown name; the message lists the available ones.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; available: {', '.join(sorted(BASELINES))}")
    fn = BASELINES[name]
    if name in SEASONAL:
        fn = partial(fn, season_length=season_length)
    if quantile_levels is not None and name in QUANTILED:
        fn = partial(fn, quantile_levels=tuple(quantile_levels))
    return fn


def forecast_baseline_band(
    name: str,
    contexts: np.ndarray | list[np.ndarray],
    t_context: np.ndarray | list[np.ndarray],
    t_future: np.ndarray | list[np.ndarray],
    season_length: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int]:
    """Forecast every system with one registered baseline, with its band when it has one.

    Args:
        name: key of :data:`BASELINES`.
        contexts: ``[S, Tc, V]``, or S arrays ``[Tc_s, V]`` of different lengths.
        t_context: ``[Tc]`` shared times, or one array per system.
        t_future: ``[H]`` shared forecast times, or one ``[H]`` array per system.
        season_length: for the statsforecast models.

    Returns:
        ``(point [S, H, V], lower, upper, fallbacks)``: ``lower``/``upper`` are ``[S, H, V]``
        for baselines with a band and None otherwise; ``fallbacks`` counts systems whose model
        fell back to persistence.

    Raises:
        ConfigError: for an unknown name; the message lists the available ones.
    """
    fn = baseline_fn(name, season_length)
    n = len(contexts)
    t_cs = list(t_context) if _per_system(t_context, n) else [t_context] * n
    t_fs = list(t_future) if _per_system(t_future, n) else [t_future] * n
    results = [fn(np.asarray(c, dtype=np.float64), np.asarray(tc, dtype=np.float64),
                  np.asarray(tf, dtype=np.float64))
               for c, tc, tf in zip(contexts, t_cs, t_fs, strict=True)]
    if not all(isinstance(r, Band) for r in results):
        return np.stack([np.asarray(r) for r in results]), None, None, 0
    stack = {k: np.stack([getattr(r, k) for r in results]) for k in ("point", "lower", "upper")}
    return stack["point"], stack["lower"], stack["upper"], sum(r.fallback for r in results)


def _per_system(times: np.ndarray | list[np.ndarray], n: int) -> bool:
    """True when ``times`` holds one array per system rather than one shared axis."""
    return isinstance(times, list | tuple) or np.ndim(times) == 2


def forecast_baseline(
    name: str, contexts: np.ndarray, t_context: np.ndarray, t_future: np.ndarray
) -> np.ndarray:
    """Point forecasts of every system with one registered baseline.

    Args:
        name: key of :data:`BASELINES`.
        contexts: ``[S, Tc, V]`` observed values.
        t_context: ``[Tc]`` their times (shared by all systems).
        t_future: ``[H]`` forecast times.

    Returns:
        ``[S, H, V]`` forecasts.

    Raises:
        ConfigError: for an unknown name; the message lists the available ones.

    Example:
        >>> forecast_baseline("persistence", np.ones((2, 3, 2)), np.arange(3),
        ...                   np.arange(3, 5)).shape
        (2, 2, 2)
    """
    contexts = np.asarray(contexts, dtype=np.float64)
    if contexts.ndim != 3 or contexts.shape[1] != len(t_context):
        raise ValueError(f"contexts {contexts.shape} must be [S, Tc={len(t_context)}, V]")
    return forecast_baseline_band(name, contexts, t_context, t_future)[0]
