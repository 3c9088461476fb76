"""The forecasting field's per-series metrics: hand-worked examples (numbers in the comments)
and cross-checks against ``utilsforecast.losses`` (Nixtla), an independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from utilsforecast import losses as uf

from lora_forecast.evaluation.metrics import (
    crps_from_samples,
    interval_coverage,
    log_ratios,
    mase,
    msis,
    quantiles_from_samples,
    relative_geometric_mean,
    seasonal_scale,
    smape,
    weighted_quantile_loss,
)

# One series, two variables: history prey 1, 3, 2 and predator 10, 10, 14.
HISTORY = np.array([[1.0, 10.0], [3.0, 10.0], [2.0, 14.0]])
# seasonal (m = 1) scales: prey (|3-1| + |2-3|) / 2 = 1.5, predator (0 + 4) / 2 = 2.0
TRUTH = np.array([[4.0, 12.0], [2.0, 16.0]])
FORECAST = np.array([[3.0, 13.0], [2.0, 12.0]])
# absolute errors: prey 1, 0 (mean 0.5), predator 1, 4 (mean 2.5)


def test_seasonal_scale_by_hand() -> None:
    np.testing.assert_allclose(seasonal_scale(HISTORY), [1.5, 2.0])
    # m = 2 on prey 1, 3, 2, 5: |2 - 1| and |5 - 3| -> 1.5
    assert seasonal_scale(np.array([[1.0], [3.0], [2.0], [5.0]]), 2).tolist() == [1.5]
    # a history no longer than the season falls back to m = 1 (GluonTS): 1, 3, 2 with m = 5
    assert seasonal_scale(np.array([[1.0], [3.0], [2.0]]), 5).tolist() == [1.5]
    assert math.isnan(seasonal_scale(np.array([[1.0]]))[0])


def test_mase_by_hand() -> None:
    # prey 0.5 / 1.5 = 1/3, predator 2.5 / 2 = 1.25; mean over variables (1/3 + 1.25) / 2
    assert mase(TRUTH, FORECAST, HISTORY) == pytest.approx((1 / 3 + 1.25) / 2)
    # the perfect forecast scores 0
    assert mase(TRUTH, TRUTH, HISTORY) == 0.0


def test_mase_leaves_out_a_constant_variable() -> None:
    # predator history constant (scale 0): only prey counts, 0.5 / 1.5
    history = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    assert mase(TRUTH, FORECAST, history) == pytest.approx(1 / 3)
    assert math.isnan(mase(TRUTH, FORECAST, np.full((3, 2), 5.0)))


def test_smape_by_hand() -> None:
    # |1-3| / (1+3) = 0.5, |2-2| / 4 = 0, 0/0 -> 0: 200 * 0.5 / 3
    assert smape(np.array([1.0, 2.0, 0.0]), np.array([3.0, 2.0, 0.0])) == pytest.approx(100 / 3)
    # opposite signs reach the maximum: |-1 - 1| / (1 + 1) = 1 -> 200
    assert smape(np.array([-1.0]), np.array([1.0])) == pytest.approx(200.0)


def test_weighted_quantile_loss_by_hand() -> None:
    truth = np.array([[4.0], [2.0]])
    levels = [0.1, 0.5, 0.9]
    quantiles = np.array([[[3.0], [1.0]], [[4.0], [3.0]], [[6.0], [4.0]]])  # [Q=3, H=2, V=1]
    # y - q: q0.1 -> 1, 1: pinball 0.1 + 0.1 = 0.2; q0.5 -> 0, -1: 0 + 0.5 = 0.5;
    # q0.9 -> -2, -2: 0.1 * 2 + 0.1 * 2 = 0.4. sum |y| = 6.
    # WQL = mean(2 * 0.2 / 6, 2 * 0.5 / 6, 2 * 0.4 / 6) = 2.2 / 18
    assert weighted_quantile_loss(truth, quantiles, levels) == pytest.approx(2.2 / 18)
    assert math.isnan(weighted_quantile_loss(np.zeros((2, 1)), quantiles, levels))
    with pytest.raises(ValueError, match="levels"):
        weighted_quantile_loss(truth, quantiles, [0.0, 0.5, 1.0])


def test_crps_from_samples_by_hand() -> None:
    # samples 0, 1, 3 for truth 1: E|X - y| = (1 + 0 + 2) / 3 = 1;
    # E|X - X'| = 2 * (1 + 3 + 2) / 9 = 4/3; CRPS = 1 - 2/3 = 1/3.
    # As an integral of (F(x) - 1{x >= 1})^2: (1/3)^2 on [0, 1) + (1/3)^2 * 2 on [1, 3) = 1/3.
    samples = np.array([0.0, 1.0, 3.0]).reshape(3, 1, 1)
    assert crps_from_samples(np.ones((1, 1)), samples) == pytest.approx(1 / 3)
    # a NaN sample (failed parse) is ignored; a point mass scores its absolute error
    with_nan = np.array([0.0, np.nan, 1.0, 3.0]).reshape(4, 1, 1)
    assert crps_from_samples(np.ones((1, 1)), with_nan) == pytest.approx(1 / 3)
    assert crps_from_samples(np.array([[5.0]]), np.full((4, 1, 1), 2.0)) == pytest.approx(3.0)


def _crps_by_integral(y: float, xs: np.ndarray) -> float:
    """CRPS = integral of (F(x) - 1{x >= y})^2 dx for the empirical CDF F, exactly, piecewise."""
    grid = np.sort(np.append(xs, y))
    total = 0.0
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        cdf = np.mean(xs <= a)
        total += (cdf - float(a >= y)) ** 2 * (b - a)
    return total


def test_crps_from_samples_matches_the_integral_definition() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(3, 2))
    samples = rng.normal(size=(7, 3, 2))
    expected = np.mean([_crps_by_integral(truth[h, v], samples[:, h, v])
                        for h in range(3) for v in range(2)])
    assert crps_from_samples(truth, samples) == pytest.approx(expected)


def test_msis_by_hand() -> None:
    # history 1, 3, 2: scale 1.5. Step 1: band [1, 3], truth 4 -> 2 + 10 * 1 = 12;
    # step 2: band [1, 2], truth 0 -> 1 + 10 * 1 = 11. Mean 11.5, / 1.5
    got = msis(np.array([[4.0], [0.0]]), np.array([[1.0], [1.0]]), np.array([[3.0], [2.0]]),
               np.array([[1.0], [3.0], [2.0]]))
    assert got == pytest.approx(11.5 / 1.5)
    # inside the band it is the width only: width 2 / scale 1.5
    inside = msis(np.array([[2.0]]), np.array([[1.0]]), np.array([[3.0]]),
                  np.array([[1.0], [3.0], [2.0]]))
    assert inside == pytest.approx(2 / 1.5)


def test_relative_geometric_mean_by_hand() -> None:
    # ratios 1/4 and 9/1: sqrt(0.25 * 9) = 1.5; the series scored 0, and the one whose
    # baseline is NaN, are skipped
    model = np.array([1.0, 9.0, 0.0, 2.0])
    base = np.array([4.0, 1.0, 1.0, np.nan])
    assert relative_geometric_mean(model, base) == pytest.approx(1.5)
    assert len(log_ratios(model, base)) == 2
    assert math.isnan(relative_geometric_mean(np.zeros(2), np.ones(2)))
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 20), rng.uniform(0.1, 3, 20)
    assert relative_geometric_mean(a, b) == pytest.approx(stats.gmean(a / b))


def test_quantiles_from_samples_ignore_nan() -> None:
    # samples 1, 2, 3, NaN: the median of 1, 2, 3 is 2; 10% by linear interpolation 1.2
    s = np.array([1.0, np.nan, 3.0, 2.0]).reshape(4, 1, 1)
    np.testing.assert_allclose(quantiles_from_samples(s, [0.1, 0.5]).ravel(), [1.2, 2.0])


# --- cross-checks against utilsforecast.losses on random series --------------------------

def _long(values: np.ndarray, name: str = "y", ids: list[str] | None = None) -> pd.DataFrame:
    """[H, V] -> long frame, one unique_id per variable."""
    h, v = values.shape
    ids = ids or [f"v{j}" for j in range(v)]
    return pd.DataFrame({"unique_id": np.repeat(ids, h), "ds": np.tile(np.arange(h), v),
                         name: values.T.ravel()})


def test_mase_smape_coverage_match_utilsforecast() -> None:
    rng = np.random.default_rng(1)
    history = rng.uniform(0.5, 3.0, size=(12, 2))
    truth, fc = rng.uniform(0.5, 3.0, size=(2, 5, 2))
    df = _long(truth).assign(m=_long(fc)["y"])
    train = _long(history)
    for m in (1, 3):
        per_var = uf.mase(df, ["m"], seasonality=m, train_df=train)["m"].to_numpy()
        assert mase(truth, fc, history, m) == pytest.approx(per_var.mean())
    # utilsforecast's smape is a fraction per series; M4's is 200 * the pooled mean
    assert smape(truth, fc) == pytest.approx(200 * uf.smape(df, ["m"])["m"].mean())
    lo, hi = fc - 0.3, fc + 0.4
    band = df.assign(**{"m-lo-80": _long(lo)["y"], "m-hi-80": _long(hi)["y"]})
    assert interval_coverage(truth, lo, hi) == pytest.approx(
        uf.coverage(band, ["m"], level=80)["m"].mean())


def test_msis_matches_utilsforecast_winkler_over_its_mase_scale() -> None:
    rng = np.random.default_rng(2)
    history = rng.uniform(0.5, 3.0, size=(10, 2))
    truth, fc = rng.uniform(0.5, 3.0, size=(2, 4, 2))
    lo, hi = fc - 0.2, fc + 0.3
    df = _long(truth).assign(m=_long(fc)["y"], **{"m-lo-80": _long(lo)["y"],
                                                  "m-hi-80": _long(hi)["y"]})
    winkler = uf.winkler_score(df, ["m"], level=80)["m"].to_numpy()  # mean per variable
    # the seasonal scale, from utilsforecast: MAE / MASE of the same forecast
    scale = (uf.mae(df, ["m"])["m"].to_numpy()
             / uf.mase(df, ["m"], seasonality=1, train_df=_long(history))["m"].to_numpy())
    assert msis(truth, lo, hi, history, 1, alpha=0.2) == pytest.approx(np.mean(winkler / scale))


def test_wql_matches_utilsforecast_scaled_crps() -> None:
    rng = np.random.default_rng(4)
    truth = rng.uniform(0.5, 3.0, size=(6, 2))
    levels = np.round(np.arange(0.1, 1.0, 0.1), 1)
    samples = truth[None] + rng.normal(size=(50, 6, 2))
    q = quantiles_from_samples(samples, levels)  # [9, 6, 2]
    # utilsforecast pools all rows of one unique_id: both variables in one series
    df = pd.DataFrame({"unique_id": "s", "ds": np.arange(12), "y": truth.ravel()})
    cols = [f"m-q{int(lv * 100)}" for lv in levels]
    df = df.assign(**{c: q[i].ravel() for i, c in enumerate(cols)})
    expected = uf.scaled_crps(df, {"m": cols}, quantiles=levels)["m"].iloc[0]
    assert weighted_quantile_loss(truth, q, levels) == pytest.approx(expected, rel=1e-9)
