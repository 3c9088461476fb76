"""Baselines and the evaluation protocol on series whose continuation is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from lora_forecast.errors import ConfigError
from lora_forecast.evaluation import baselines
from lora_forecast.evaluation.baselines import (
    BASELINES,
    forecast_baseline,
    linear_ar,
    ode_fit,
    persistence,
)
from lora_forecast.evaluation.protocol import cut_eval_windows, score_baselines

# Times like the reference data (100 steps over 0..200): 40 context steps, 10 forecast steps.
TIME = np.linspace(0.0, 200.0, 100)[:50]
TC, TF = TIME[:40], TIME[40:]


def lotka_volterra(
    alpha: float, beta: float, delta: float, gamma: float, capacity: float = np.inf
) -> np.ndarray:
    """Noiseless trajectory [50, 2] from (1.0, 0.5), integrated far tighter than the fit."""

    def rhs(_t: float, z: np.ndarray) -> list[float]:
        x, y = z
        return [alpha * x * (1 - x / capacity) - beta * x * y, delta * x * y - gamma * y]

    sol = solve_ivp(rhs, (0.0, TIME[-1]), [1.0, 0.5], t_eval=TIME, rtol=1e-11, atol=1e-12)
    return sol.y.T


# Period ~ 2 pi / sqrt(alpha gamma) ~ 60 time units ~ 30 steps: the context holds more than
# one cycle, as in the reference data.
LV = lotka_volterra(alpha=0.1, beta=0.1, delta=0.1, gamma=0.1)


def relative_mse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2) / np.mean(truth**2))


def test_persistence_repeats_the_last_value() -> None:
    context = np.array([[1.0, 2.0], [3.0, 4.0]])
    expected = np.array([[3.0, 4.0]] * 3)
    np.testing.assert_array_equal(
        persistence(context, np.arange(2.0), np.arange(2.0, 5.0)), expected
    )


@pytest.mark.parametrize("order", [1, 3])
def test_linear_ar_recovers_a_linear_recurrence(order: int) -> None:
    # y_t = A y_{t-1} + c, stable (|eigenvalues| = sqrt(0.74) < 1), fixed point (3, 6),
    # started at (4, 5): stays positive so clipping never acts.
    a = np.array([[0.9, -0.2], [0.1, 0.8]])
    c = np.array([1.5, 0.9])
    y = [np.array([4.0, 5.0])]
    for _ in range(39):
        y.append(a @ y[-1] + c)
    y = np.array(y)  # [40, 2]
    assert (y > 0).all()
    context, future = y[:30], y[30:]
    pred = linear_ar(context, np.arange(30.0), np.arange(30.0, 40.0), order=order)
    np.testing.assert_allclose(pred, future, rtol=1e-8)


def test_linear_ar_clips_at_zero() -> None:
    # y_t = y_{t-1} - 1 exactly: 5, 4, 3, 2 -> 1, 0, -1, -2, returned clipped to 0
    context = np.array([[5.0], [4.0], [3.0], [2.0]])
    pred = linear_ar(context, np.arange(4.0), np.arange(4.0, 8.0), order=1)
    np.testing.assert_allclose(pred.ravel(), [1.0, 0.0, 0.0, 0.0], atol=1e-12)


def test_linear_ar_short_context_falls_back_to_persistence() -> None:
    context = np.array([[1.0, 2.0], [3.0, 4.0]])
    pred = linear_ar(context, np.arange(2.0), np.arange(2.0, 4.0), order=3)
    np.testing.assert_array_equal(pred, [[3.0, 4.0], [3.0, 4.0]])


def test_ode_fit_continues_a_noiseless_lotka_volterra_orbit() -> None:
    # The data are exactly a Lotka-Volterra orbit, so the model is identifiable and the only
    # errors left are the integrator tolerance (rtol 1e-6) and the optimiser stopping early:
    # a relative MSE of 1e-3 is a ~3% RMS error, loose for those, yet persistence (which
    # misses a quarter of a cycle) is two orders of magnitude worse.
    truth = LV[40:]
    pred = ode_fit(LV[:40], TC, TF)
    assert relative_mse(pred, truth) < 1e-3
    assert relative_mse(persistence(LV[:40], TC, TF), truth) > 100 * relative_mse(pred, truth)


def test_logistic_ode_fit_continues_a_damped_orbit() -> None:
    # Prey capped by a carrying capacity: damped oscillations, like many reference series.
    damped = lotka_volterra(alpha=0.15, beta=0.1, delta=0.1, gamma=0.1, capacity=4.0)
    pred = BASELINES["ode_fit_logistic"](damped[:40], TC, TF)
    assert relative_mse(pred, damped[40:]) < 1e-3


def test_ode_fit_falls_back_to_persistence_when_the_fit_fails(monkeypatch) -> None:
    monkeypatch.setattr(baselines, "fit_and_forecast", lambda *args, **kwargs: None)
    np.testing.assert_array_equal(ode_fit(LV[:40], TC, TF), persistence(LV[:40], TC, TF))


def test_ode_fit_needs_two_variables() -> None:
    with pytest.raises(ValueError, match=r"\[Tc, 2\]"):
        ode_fit(np.ones((5, 3)), np.arange(5.0), np.arange(5.0, 7.0))


@pytest.mark.parametrize("name", ["persistence", "linear_ar"])
def test_registered_baselines_give_finite_non_negative_forecasts(name: str) -> None:
    contexts = np.stack([LV[:40], LV[:40] * 1.5])  # [2, 40, 2]
    out = forecast_baseline(name, contexts, TC, TF)
    assert out.shape == (2, 10, 2)
    assert np.isfinite(out).all() and (out >= 0).all()


def test_unknown_baseline_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="linear_ar.*ode_fit.*persistence"):
        forecast_baseline("prophet", np.ones((1, 3, 2)), np.arange(3.0), np.arange(3.0, 4.0))


def test_cut_eval_windows_by_hand() -> None:
    x = np.arange(24.0).reshape(2, 6, 2)  # system s, step t, variable v = 12 s + 2 t + v
    time = np.arange(6.0) * 2
    contexts, truth, t_context, t_future = cut_eval_windows(x, time, 3, 2, n_systems=1)
    np.testing.assert_array_equal(contexts, [[[0, 1], [2, 3], [4, 5]]])
    np.testing.assert_array_equal(truth, [[[6, 7], [8, 9]]])
    np.testing.assert_array_equal(t_context, [0, 2, 4])
    np.testing.assert_array_equal(t_future, [6, 8])
    assert cut_eval_windows(x, time, 3, 2).contexts.shape == (2, 3, 2)  # None = all systems


@pytest.mark.parametrize(
    ("context", "horizon", "n", "match"),
    [(5, 2, None, "exceeds the series length 6"), (0, 2, None, ">= 1"), (3, 2, 3, "n_systems")],
)
def test_cut_eval_windows_rejects_impossible_windows(context, horizon, n, match) -> None:
    with pytest.raises(ConfigError, match=match):
        cut_eval_windows(np.zeros((2, 6, 2)), np.arange(6.0), context, horizon, n)


def test_score_baselines_scores_each_name() -> None:
    # A line per system: prey = t, predator = 2 t. Persistence misses by (1, 2), (2, 4) on the
    # two forecast steps -> MSE (1 + 4 + 4 + 16) / 4 = 6.25; linear_ar continues lines exactly.
    t = np.arange(8.0)
    trajectories = np.stack([np.c_[t, 2 * t], np.c_[t + 1, 2 * t + 2]])  # [2, 8, 2]
    window = cut_eval_windows(trajectories, t, 6, 2, n_systems=None)
    out = score_baselines(["persistence", "linear_ar"], window, n_boot=50, seed=0)
    assert list(out) == ["persistence", "linear_ar"]
    assert out["persistence"]["mse"] == pytest.approx(6.25)
    assert out["persistence"]["n_systems"] == 2
    assert out["linear_ar"]["mse"] == pytest.approx(0.0, abs=1e-12)


def test_seasonal_naive_by_hand_and_against_statsforecast() -> None:
    from statsforecast.models import SeasonalNaive

    from lora_forecast.evaluation.baselines import seasonal_naive

    context = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    # m = 2: the last season is steps 4, 5 -> 4, 5, 4 (and 40, 50, 40)
    got = seasonal_naive(context, np.arange(5.0), np.arange(5.0, 8.0), season_length=2)
    np.testing.assert_array_equal(got, [[4.0, 40.0], [5.0, 50.0], [4.0, 40.0]])
    # m = 1 is persistence; a season longer than the context falls back to m = 1
    np.testing.assert_array_equal(
        seasonal_naive(context, np.arange(5.0), np.arange(2.0), season_length=9), [[5, 50]] * 2)
    rng = np.random.default_rng(0)
    y = rng.uniform(size=(13, 1))
    for m in (1, 3, 4):
        sf = SeasonalNaive(season_length=m).forecast(y=y[:, 0], h=7)["mean"]
        ours = seasonal_naive(y, np.arange(13.0), np.arange(7.0), season_length=m)
        np.testing.assert_allclose(ours[:, 0], sf)


def test_seasonal_naive_is_registered_and_takes_eval_season_length() -> None:
    from lora_forecast.evaluation.baselines import forecast_baseline_band

    contexts = np.arange(8.0).reshape(1, 4, 2)  # steps (0,1) (2,3) (4,5) (6,7)
    point, lower, upper, _ = forecast_baseline_band(
        "seasonal_naive", contexts, np.arange(4.0), np.arange(4.0, 7.0), season_length=2)
    np.testing.assert_array_equal(point[0], [[4.0, 5.0], [6.0, 7.0], [4.0, 5.0]])
    assert lower is None and upper is None
