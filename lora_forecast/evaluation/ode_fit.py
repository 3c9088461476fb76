"""Fit a predator-prey ODE to one context window and integrate it forward.

The model is integrated in log space, ``u = log(prey)``, ``v = log(predator)``, which keeps
both populations positive and tames the fast collapses near zero. Classic Lotka-Volterra:

    dx/dt = alpha x - beta x y          ->  du/dt = alpha - beta e^v
    dy/dt = delta x y - gamma y         ->  dv/dt = delta e^u - gamma

The ``logistic`` variant caps prey growth with a carrying capacity ``K``
(``alpha x (1 - x / K)``), which produces the damped oscillations many series of the reference
data show; classic Lotka-Volterra orbits never damp.

Fitting: ``scipy.optimize.least_squares`` over ``[log params..., u0, v0]`` (rates in log space
so they stay positive; the initial state is fitted too, so noise in the first point does not
pin the whole orbit), residuals on the original scale divided by each variable's context
standard deviation. The Jacobian is a forward difference computed in a single ``solve_ivp``
call that stacks the base and all perturbed systems, so they share one step sequence (smooth
differences, one Python integration per Jacobian). Several starting points are tried: a
gradient-matching estimate (regress finite-difference ``du/dt, dv/dt`` on the populations,
linear in the rates) and oscillation-frequency guesses spread over the context span; the
lowest cost wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

__all__ = ["ODE_MODELS", "OdeModel", "fit_and_forecast", "simulate"]

_EPS = 1e-6  # floor for log of a zero population (only used for starting guesses)
_LOG_CAP = 50.0  # exp() argument cap against overflow while the optimiser explores
_FREQ_FACTORS = (0.75, 1.5, 3.0)  # guessed oscillation periods per context span


@dataclass(frozen=True)
class OdeModel:
    """One right-hand side and its linear gradient-matching guess.

    Attributes:
        param_names: names of the positive rate parameters, in order.
        rhs: ``(x[B], y[B], p[B, P]) -> (du/dt[B], dv/dt[B])`` for B stacked systems.
        guess: ``(x[T], y[T], du/dt[T], dv/dt[T]) -> p[P]`` positive starting rates.
    """

    param_names: tuple[str, ...]
    rhs: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    guess: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _lv_rhs(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha, beta, delta, gamma = p.T
    return alpha - beta * y, delta * x - gamma


def _lv_guess(x: np.ndarray, y: np.ndarray, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
    one = np.ones_like(x)
    (alpha, neg_beta), *_ = np.linalg.lstsq(np.c_[one, y], du, rcond=None)
    (delta, neg_gamma), *_ = np.linalg.lstsq(np.c_[x, one], dv, rcond=None)
    return np.array([alpha, -neg_beta, delta, -neg_gamma])


def _logistic_rhs(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha, beta, delta, gamma, capacity = p.T
    return alpha * (1.0 - x / capacity) - beta * y, delta * x - gamma


def _logistic_guess(x: np.ndarray, y: np.ndarray, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
    one = np.ones_like(x)
    (alpha, neg_a_over_k, neg_beta), *_ = np.linalg.lstsq(np.c_[one, x, y], du, rcond=None)
    (delta, neg_gamma), *_ = np.linalg.lstsq(np.c_[x, one], dv, rcond=None)
    capacity = alpha / -neg_a_over_k if neg_a_over_k < 0 and alpha > 0 else 10.0 * x.max()
    return np.array([alpha, -neg_beta, delta, -neg_gamma, capacity])


# Registry of fittable models; every entry follows the OdeModel contract above.
ODE_MODELS: dict[str, OdeModel] = {
    "lotka_volterra": OdeModel(("alpha", "beta", "delta", "gamma"), _lv_rhs, _lv_guess),
    "logistic": OdeModel(
        ("alpha", "beta", "delta", "gamma", "capacity"), _logistic_rhs, _logistic_guess
    ),
}


def simulate(
    model: OdeModel, thetas: np.ndarray, t0: float, times: np.ndarray, rtol: float = 1e-8
) -> np.ndarray | None:
    """Integrate B parameter vectors at once and return the populations at ``times``.

    Args:
        model: the ODE.
        thetas: ``[B, P + 2]`` rows of ``[log rates..., log prey0, log predator0]``.
        t0: time of the initial state.
        times: ``[T]`` increasing output times, all ``>= t0``.
        rtol: relative tolerance of the integrator (absolute is ``rtol / 100`` in log units).

    Returns:
        ``[B, T, 2]`` populations, or None if the integration failed.
    """
    n_par = len(model.param_names)
    rates = np.exp(thetas[:, :n_par])  # [B, P]
    z0 = thetas[:, n_par:].ravel()  # [2B]: u0, v0 interleaved

    def rhs(_t: float, z: np.ndarray) -> np.ndarray:
        uv = np.exp(np.minimum(z.reshape(-1, 2), _LOG_CAP))  # [B, 2]
        du, dv = model.rhs(uv[:, 0], uv[:, 1], rates)
        return np.stack([du, dv], axis=1).ravel()

    if times[-1] <= t0:
        return np.exp(np.repeat(thetas[:, None, n_par:], len(times), axis=1))
    sol = solve_ivp(
        rhs, (t0, times[-1]), z0, t_eval=times, method="DOP853", rtol=rtol, atol=rtol / 100
    )
    if sol.status != 0 or sol.y.shape[1] != len(times) or not np.isfinite(sol.y).all():
        return None
    return np.exp(np.minimum(sol.y.T.reshape(len(times), -1, 2), _LOG_CAP)).transpose(1, 0, 2)


def _starting_points(model: OdeModel, context: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """Gradient-matching start first, then frequency guesses around the context's scale."""
    logs = np.log(np.maximum(context, _EPS))  # [T, 2]
    z0 = logs[0]
    starts = []
    if len(t) >= 3:
        du, dv = np.gradient(logs[:, 0], t), np.gradient(logs[:, 1], t)
        rates = model.guess(context[:, 0], context[:, 1], du, dv)
        if np.isfinite(rates).all():
            starts.append(np.r_[np.log(np.maximum(rates, 1e-4)), z0])
    span = float(t[-1] - t[0]) or 1.0
    mean_x, mean_y = np.maximum(context.mean(axis=0), _EPS)
    for factor in _FREQ_FACTORS:
        w = 2.0 * np.pi * factor / span  # omega ~ sqrt(alpha gamma) near equilibrium
        rates = [w, w / mean_y, w / mean_x, w] + [10.0 * mean_x] * (len(model.param_names) - 4)
        starts.append(np.r_[np.log(rates), z0])
    return starts


def fit_and_forecast(
    model: OdeModel,
    context: np.ndarray,
    t_context: np.ndarray,
    t_future: np.ndarray,
    *,
    max_nfev: int = 30,
    good_fit_rms: float = 0.05,
    rtol: float = 1e-6,
) -> np.ndarray | None:
    """Fit ``model`` to one context window and return its forecast, or None if it failed.

    Args:
        model: the ODE to fit.
        context: ``[Tc, 2]`` prey and predator values.
        t_context: ``[Tc]`` their times.
        t_future: ``[H]`` forecast times (after ``t_context``).
        max_nfev: least-squares iterations per starting point.
        good_fit_rms: stop trying further starting points once the root-mean-square
            standardised residual is at most this (5% of a standard deviation).
        rtol: integrator relative tolerance.

    Returns:
        ``[H, 2]`` forecast, or None when every start failed or the forecast is not finite.
    """
    context = np.asarray(context, dtype=np.float64)
    t_context = np.asarray(t_context, dtype=np.float64)
    scale = np.maximum(context.std(axis=0), 1e-3)  # [2]
    t0 = float(t_context[0])
    step = 1e-6

    def residuals(theta: np.ndarray) -> np.ndarray:
        pred = simulate(model, theta[None], t0, t_context, rtol)
        return np.full(context.size, 1e3) if pred is None else ((pred[0] - context) / scale).ravel()

    def jacobian(theta: np.ndarray) -> np.ndarray:
        thetas = theta + np.vstack([np.zeros_like(theta), step * np.eye(theta.size)])
        pred = simulate(model, thetas, t0, t_context, rtol)
        if pred is None:
            return np.zeros((context.size, theta.size))
        flat = ((pred - context) / scale).reshape(len(thetas), -1)  # [1 + P', Tc * 2]
        return ((flat[1:] - flat[0]) / step).T

    best = None
    good_cost = 0.5 * context.size * good_fit_rms**2  # least_squares cost = 0.5 * sum(r^2)
    for start in _starting_points(model, context, t_context):
        try:
            with np.errstate(all="ignore"):
                result = least_squares(residuals, start, jac=jacobian, max_nfev=max_nfev)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if np.isfinite(result.cost) and (best is None or result.cost < best.cost):
            best = result
        if best is not None and best.cost <= good_cost:
            break
    if best is None:
        return None
    times = np.r_[t_context, np.asarray(t_future, dtype=np.float64)]
    pred = simulate(model, best.x[None], t0, times, rtol)
    if pred is None or not np.isfinite(pred).all():
        return None
    return pred[0, len(t_context) :]
