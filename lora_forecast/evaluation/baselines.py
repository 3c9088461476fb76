"""Forecasters without an LLM, to tell whether fine-tuning buys anything.

Every baseline forecasts one system from its context alone (no training set), through the
signature written above :data:`BASELINES`. They are pure: no I/O, no global state, the input
is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from lora_forecast.errors import ConfigError
from lora_forecast.evaluation.ode_fit import ODE_MODELS, fit_and_forecast

__all__ = [
    "BASELINES",
    "BaselineFn",
    "forecast_baseline",
    "linear_ar",
    "ode_fit",
    "persistence",
]

# fn(context [Tc, V], t_context [Tc], t_future [H]) -> forecast [H, V]
BaselineFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


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


def linear_ar(
    context: np.ndarray, t_context: np.ndarray, t_future: np.ndarray, *, order: int = 3
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

    Returns:
        ``[H, V]`` forecast, non-negative.

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
    return np.maximum(out, 0.0)


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


# Registry: name -> BaselineFn (signature above). Variants are partials, not new code paths.
BASELINES: dict[str, BaselineFn] = {
    "persistence": persistence,
    "linear_ar": linear_ar,
    "ode_fit": ode_fit,
    "ode_fit_logistic": partial(ode_fit, model="logistic"),
}


def forecast_baseline(
    name: str, contexts: np.ndarray, t_context: np.ndarray, t_future: np.ndarray
) -> np.ndarray:
    """Forecast every system with one registered baseline.

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
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; available: {', '.join(sorted(BASELINES))}")
    fn = BASELINES[name]
    contexts = np.asarray(contexts, dtype=np.float64)
    t_context = np.asarray(t_context, dtype=np.float64)
    t_future = np.asarray(t_future, dtype=np.float64)
    if contexts.ndim != 3 or contexts.shape[1] != len(t_context):
        raise ValueError(f"contexts {contexts.shape} must be [S, Tc={len(t_context)}, V]")
    out = np.empty((len(contexts), len(t_future), contexts.shape[2]))  # [S, H, V]
    for i, context in enumerate(contexts):
        out[i] = fn(context, t_context, t_future)
    return out
