"""Metrics against values worked out by hand in the comments (never the code's own output)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lora_forecast.evaluation.metrics import (
    bootstrap_ci,
    crps_samples,
    interval_coverage,
    mae,
    mse,
    mse_per_step,
    mse_per_variable,
    r2,
    score_forecasts,
)

# One system, two steps, two variables (prey, predator).
TRUTH = np.array([[[1.0, 2.0], [3.0, 4.0]]])
PRED = np.array([[[2.0, 2.0], [1.0, 5.0]]])
# errors truth - pred: [[-1, 0], [2, -1]] -> squared [[1, 0], [4, 1]], absolute [[1, 0], [2, 1]]


def test_mse_and_mae_by_hand() -> None:
    assert mse(TRUTH, PRED) == pytest.approx((1 + 0 + 4 + 1) / 4)  # 1.5
    assert mae(TRUTH, PRED) == pytest.approx((1 + 0 + 2 + 1) / 4)  # 1.0


def test_per_variable_and_per_step_by_hand() -> None:
    # prey squared errors 1 (step 1), 4 (step 2); predator 0, 1
    np.testing.assert_allclose(mse_per_variable(TRUTH, PRED), [2.5, 0.5])
    # step 1: prey 1, predator 0; step 2: prey 4, predator 1
    np.testing.assert_allclose(mse_per_step(TRUTH, PRED), [0.5, 2.5])


def test_r2_by_hand() -> None:
    # prey truth 1, 3 (mean 2), predator 2, 4 (mean 3): SS_tot = 1 + 1 + 1 + 1 = 4; SSE = 6
    assert r2(TRUTH, PRED) == pytest.approx(1 - 6 / 4)


def test_r2_uses_each_variables_own_mean() -> None:
    # prey 10, 12 (mean 11) and predator 0, 2 (mean 1): SS_tot = 1 + 1 + 1 + 1 = 4.
    # A forecast off by 1 everywhere has SSE 4 -> R2 = 0. A single pooled mean (6) would give
    # SS_tot = 16 + 36 + 36 + 16 = 104 and flatter the forecast with R2 = 1 - 4 / 104.
    truth = np.array([[[10.0, 0.0], [12.0, 2.0]]])
    assert r2(truth, truth + 1.0) == pytest.approx(0.0)
    assert r2(truth, truth) == pytest.approx(1.0)


def test_r2_of_constant_truth_is_nan() -> None:
    assert math.isnan(r2(np.ones((1, 2, 2)), np.zeros((1, 2, 2))))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        mse(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)))


def test_interval_coverage_by_hand() -> None:
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    lower = np.array([0.0, 2.0, 3.5, 0.0])
    upper = np.array([1.0, 3.0, 4.0, 3.9])
    # 1 in [0, 1] yes (closed), 2 in [2, 3] yes, 3 in [3.5, 4] no, 4 in [0, 3.9] no
    assert interval_coverage(truth, lower, upper) == pytest.approx(0.5)
    # a NaN bound is a miss
    assert interval_coverage(truth, np.full(4, np.nan), upper) == pytest.approx(0.0)


def test_crps_of_a_point_mass_is_the_mae() -> None:
    samples = np.repeat(PRED[:, None], 3, axis=1)  # [S=1, N=3, H, V], all samples equal
    assert crps_samples(TRUTH, samples) == pytest.approx(1.0)  # = mae(TRUTH, PRED)


def test_crps_by_hand() -> None:
    # samples {0, 1, 3}, truth 1: E|X - y| = (1 + 0 + 2) / 3 = 1;
    # E|X - X'| over the 9 ordered pairs = 2 (1 + 3 + 2) / 9 = 4/3; CRPS = 1 - 2/3 = 1/3.
    # Check by the integral of (F(x) - 1{x >= 1})^2: (1/3)^2 on [0, 1) + (1/3)^2 * 2 on
    # [1, 3) = 1/9 + 2/9 = 1/3.
    samples = np.array([0.0, 1.0, 3.0]).reshape(1, 3, 1, 1)
    assert crps_samples(np.ones((1, 1, 1)), samples) == pytest.approx(1 / 3)


def test_crps_ignores_unparsed_samples() -> None:
    # {0, NaN, 2} for truth 0 is {0, 2}: E|X - y| = 1, E|X - X'| = (0 + 2 + 2 + 0) / 4 = 1
    samples = np.array([0.0, np.nan, 2.0]).reshape(1, 3, 1, 1)
    assert crps_samples(np.zeros((1, 1, 1)), samples) == pytest.approx(0.5)
    assert math.isnan(crps_samples(np.zeros((1, 1, 1)), np.full((1, 2, 1, 1), np.nan)))


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3
    low, high = bootstrap_ci(values, n_boot=2000, seed=7)
    assert 1.0 <= low < 3.0 < high <= 5.0
    assert bootstrap_ci(values, n_boot=2000, seed=7) == (low, high)
    narrow = bootstrap_ci(values, n_boot=2000, seed=7, level=0.5)
    assert low < narrow[0] < 3.0 < narrow[1] < high
    assert bootstrap_ci(np.full(4, 2.5), n_boot=100, seed=0) == (2.5, 2.5)


def test_bootstrap_ci_agrees_with_the_normal_interval_for_many_systems() -> None:
    # Independent oracle: for 400 systems the mean is close to normal, so the 95% interval is
    # about mean +- 1.96 * sd / sqrt(n); both ends within 5% of that half-width.
    values = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    low, high = bootstrap_ci(values, n_boot=4000, seed=0)
    assert low == pytest.approx(values.mean() - half, abs=0.05 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.05 * half)
    assert bootstrap_ci(np.array([0.7]), n_boot=10) == (0.7, 0.7)  # one system: zero width


def test_bootstrap_ci_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.ones(3), n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.ones(3), level=1.0)


# Three systems, one step, two variables; system 1 failed to parse.
S_TRUTH = np.array([[[1.0, 1.0]], [[5.0, 5.0]], [[0.0, 4.0]]])
S_POINT = np.array([[[2.0, 1.0]], [[np.nan, np.nan]], [[0.0, 2.0]]])
# scored systems 0 and 2: squared errors [1, 0] and [0, 4]; absolute [1, 0] and [0, 2]


def test_score_forecasts_by_hand() -> None:
    out = score_forecasts(S_TRUTH, S_POINT, parsed_systems=np.array([True, False, True]))
    assert out["mse"] == pytest.approx(5 / 4)
    assert out["mae"] == pytest.approx(3 / 4)
    # prey truth 1, 0 (mean 0.5): SS 0.5; predator 1, 4 (mean 2.5): SS 4.5; SSE 5 -> R2 = 0
    assert out["r2"] == pytest.approx(0.0)
    assert out["mse_per_variable"] == pytest.approx([0.5, 2.0])
    assert out["mse_per_step"] == pytest.approx([1.25])
    assert (out["n_systems"], out["parse_failures"]) == (2, 1)
    # per-system MSE 0.5 and 2.0: resampled means are 0.5, 1.25 or 2.0 with probabilities
    # 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are the extremes.
    assert out["mse_ci"] == pytest.approx([0.5, 2.0])
    assert out["mae_ci"] == pytest.approx([0.5, 1.0])  # per-system MAE 0.5 and 1.0
    assert "crps" not in out and "coverage_80" not in out
    json.dumps(out, allow_nan=False)


def test_non_finite_point_counts_as_a_parse_failure() -> None:
    # no mask given: system 1 is NaN, so it is excluded and counted, never silently dropped
    out = score_forecasts(S_TRUTH, S_POINT)
    assert (out["n_systems"], out["parse_failures"]) == (2, 1)
    assert out["mse"] == pytest.approx(5 / 4)


def test_nothing_parsed_gives_nulls() -> None:
    out = score_forecasts(S_TRUTH, S_POINT, parsed_systems=np.zeros(3, dtype=bool))
    assert (out["n_systems"], out["parse_failures"]) == (0, 3)
    for key in ("mse", "mae", "r2", "mse_per_variable", "mse_per_step"):
        assert out[key] is None
    assert out["mse_ci"] == [None, None]
    json.dumps(out, allow_nan=False)  # JSON-ready: no NaN anywhere


def test_score_with_band_and_samples() -> None:
    truth = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])  # [S=2, H=1, V=2]
    point = truth.copy()
    lower = np.array([[[0.0, 2.5]], [[3.0, 3.0]]])
    upper = np.array([[[2.0, 3.0]], [[3.0, 5.0]]])
    # covered: 1 in [0, 2] yes, 2 in [2.5, 3] no, 3 in [3, 3] yes, 4 in [3, 5] yes -> 3/4
    samples = np.repeat(point[:, None] + 1.0, 4, axis=1)  # point mass 1 off -> CRPS 1
    out = score_forecasts(truth, point, lower=lower, upper=upper, samples=samples, n_boot=10)
    assert out["coverage_80"] == pytest.approx(0.75)
    assert out["crps"] == pytest.approx(1.0)


def test_no_coverage_without_samples() -> None:
    # greedy decoding passes lower == upper == point: no interval to score
    out = score_forecasts(S_TRUTH, S_POINT, lower=S_POINT, upper=S_POINT, n_boot=10)
    assert "coverage_80" not in out and "crps" not in out


def test_band_is_derived_from_samples_when_not_given() -> None:
    # samples 0..10 for truth 5: the 10-90% band is [1, 9] and covers it; truth 9.5 is outside
    truth = np.array([[[5.0, 9.5]]])
    samples = np.broadcast_to(np.arange(11.0)[None, :, None, None], (1, 11, 1, 2))
    out = score_forecasts(truth, np.full((1, 1, 2), 5.0), samples=samples, n_boot=10)
    assert out["coverage_80"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "module",
    ["metrics", "baselines", "protocol"],
)
def test_docstring_examples_hold(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"lora_forecast.evaluation.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
