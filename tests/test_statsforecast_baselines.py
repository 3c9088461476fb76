"""statsforecast baselines (AutoARIMA, AutoETS, Theta) checked against properties of the
series, not against statsforecast itself."""

from __future__ import annotations

import numpy as np
import pytest

from lora_forecast.evaluation.baselines import forecast_baseline_band, statsforecast_model
from lora_forecast.evaluation.protocol import cut_eval_windows, score_baselines

MODELS = ["AutoARIMA", "AutoETS", "Theta"]
TC, TF = np.arange(30.0), np.arange(30.0, 35.0)


@pytest.mark.parametrize("model", MODELS)
def test_constant_series_continue_exactly_with_zero_width_band(model: str) -> None:
    context = np.full((30, 2), [3.0, 0.5])
    band = statsforecast_model(context, TC, TF, model=model)
    np.testing.assert_allclose(band.point, np.full((5, 2), [3.0, 0.5]), atol=1e-6)
    np.testing.assert_allclose(band.upper - band.lower, 0.0, atol=1e-3)
    assert not band.fallback


@pytest.mark.parametrize("model", ["AutoARIMA", "AutoETS"])
def test_linear_trend_is_extrapolated(model: str) -> None:
    # y = 1 + 0.5 t (and a second variable falling): the next values lie on the same line
    context = np.stack([1.0 + 0.5 * TC, 20.0 - 0.25 * TC], axis=1)
    band = statsforecast_model(context, TC, TF, model=model)
    want = np.stack([1.0 + 0.5 * TF, 20.0 - 0.25 * TF], axis=1)
    np.testing.assert_allclose(band.point, want, atol=1e-4)


def test_theta_drift_is_half_the_trend_slope() -> None:
    # The Theta method equals simple exponential smoothing with drift b/2, b the regression
    # slope (Hyndman & Billah 2003): on y = 1 + 0.5 t the forecast climbs 0.25 per step.
    band = statsforecast_model((1.0 + 0.5 * TC)[:, None], TC, TF, model="Theta")
    np.testing.assert_allclose(np.diff(band.point[:, 0]), 0.25, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_band_brackets_point_and_widens_on_noise(model: str) -> None:
    rng = np.random.default_rng(0)
    noisy = 5.0 + rng.normal(0.0, 1.0, size=(60, 1))
    band = statsforecast_model(noisy, np.arange(60.0), np.arange(60.0, 64.0), model=model)
    assert (band.lower <= band.point).all() and (band.point <= band.upper).all()
    # 80% of N(0, 1) lies within +-1.28: the band of a fitted white-noise level is about 2.56
    width = (band.upper - band.lower)[0, 0]
    assert 1.5 < width < 4.0, width


def test_too_short_context_falls_back_to_persistence() -> None:
    context = np.array([[1.0], [2.0], [4.0]])
    band = statsforecast_model(context, np.arange(3.0), np.arange(3.0, 5.0), model="AutoETS")
    assert band.fallback
    np.testing.assert_array_equal(band.point, [[4.0], [4.0]])


def test_ragged_contexts_and_registry_names() -> None:
    contexts = [np.full((20, 1), 2.0), np.full((35, 1), 7.0)]
    point, lower, upper, fallbacks = forecast_baseline_band(
        "theta", contexts, [np.arange(20.0), np.arange(35.0)], np.arange(3.0))
    assert point.shape == (2, 3, 1) and fallbacks == 0
    np.testing.assert_allclose(point[:, :, 0], [[2.0] * 3, [7.0] * 3], atol=1e-6)


def test_scored_like_the_llm_with_interval_coverage() -> None:
    rng = np.random.default_rng(1)
    series = 5.0 + rng.normal(0.0, 1.0, size=(40, 40, 1))
    out = score_baselines(["auto_ets", "persistence"],
                          cut_eval_windows(series, np.arange(40.0), 30, 10), n_boot=20)
    ets = out["auto_ets"]
    assert ets["n_systems"] == 40 and ets["fallbacks"] == 0
    # white noise around a level: the fitted 80% band covers roughly 80% of the truth
    assert 0.65 < ets["coverage_80"] < 0.92, ets["coverage_80"]
    assert ets["mse"] < out["persistence"]["mse"]  # the level beats the last noisy value
    assert "coverage_80" not in out["persistence"]
