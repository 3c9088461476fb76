"""Per-series scores, their aggregates and the ratios to seasonal naive, worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lora_forecast.evaluation.metrics import score_forecasts
from lora_forecast.evaluation.protocol import cut_eval_windows, score_baselines, score_predicted
from lora_forecast.evaluation.scoring import Predicted, reference_scores

# Two series, one variable, 3 context steps, 2 forecast steps; a third that did not parse.
CONTEXTS = np.array([[[1.0], [3.0], [2.0]], [[2.0], [2.0], [4.0]], [[1.0], [1.0], [2.0]]])
TRUTH = np.array([[[4.0], [2.0]], [[2.0], [6.0]], [[1.0], [1.0]]])
POINT = np.array([[[3.0], [2.0]], [[2.0], [4.0]], [[np.nan], [np.nan]]])
# Series A: scale (|3-1| + |2-3|) / 2 = 1.5; errors 1, 0 -> MAE 0.5, MSE 0.5, MASE 1/3,
#   sMAPE 200 * (1/7 + 0) / 2 = 100/7. Seasonal naive (m = 1) forecasts 2, 2: errors 2, 0 ->
#   MAE 1, MSE 2, MASE 2/3. Ratios: MAE 0.5, MSE 0.25, MASE 0.5.
# Series B: scale (0 + 2) / 2 = 1; errors 0, 2 -> MAE 1, MSE 2, MASE 1, sMAPE 200 * (0 + 2/10)
#   / 2 = 20. Seasonal naive forecasts 4, 4: errors 2, 2 -> MAE 2, MSE 4, MASE 2.
#   Ratios: MAE 0.5, MSE 0.5, MASE 0.5.


def test_score_predicted_by_hand() -> None:
    got = score_predicted(TRUTH, CONTEXTS, Predicted(POINT), season_length=1, n_boot=50)
    assert got["n_systems"] == 2 and got["parse_failures"] == 1
    assert got["mase"] == pytest.approx((1 / 3 + 1) / 2)
    assert got["smape"] == pytest.approx((100 / 7 + 20) / 2)
    assert got["mase_rel"] == pytest.approx(0.5)  # sqrt(0.5 * 0.5)
    assert got["mae_rel"] == pytest.approx(0.5)
    assert got["mse_rel"] == pytest.approx(math.sqrt(0.25 * 0.5))
    assert got["rel_reference"] == "seasonal_naive"
    # per-series lists in series order, the unparsed one null
    assert got["per_series"]["mase"][:2] == pytest.approx([1 / 3, 1.0])
    assert got["per_series"]["mase"][2] is None
    assert got["per_series"]["mse"][:2] == pytest.approx([0.5, 2.0])
    # greedy: no band, no samples -> none of their metrics
    assert not {"wql", "crps", "coverage_80", "msis", "wql_rel"} & set(got)


def test_score_predicted_keeps_every_existing_figure() -> None:
    old = score_forecasts(TRUTH, POINT, n_boot=50, seed=3)
    new = score_predicted(TRUTH, CONTEXTS, Predicted(POINT), n_boot=50, seed=3)
    assert {k: new[k] for k in old} == old


def test_samples_give_wql_crps_and_their_ratios() -> None:
    # One sample per series (a point mass): WQL = sum |y - f| / sum |y|, CRPS = MAE.
    # A: WQL 1 / 6, seasonal naive 2 / 6 -> ratio 0.5; B: 2 / 8 vs 4 / 8 -> 0.5.
    samples = POINT[:, None]
    lower, upper = POINT - 1.0, POINT + 1.0
    got = score_predicted(TRUTH, CONTEXTS, Predicted(POINT, lower, upper, samples), n_boot=50)
    assert got["wql"] == pytest.approx((1 / 6 + 2 / 8) / 2)
    assert got["wql_rel"] == pytest.approx(0.5)
    assert got["crps"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["crps_rel"] == pytest.approx(0.5)
    # band +-1: A covers 4? [2, 4] yes, 2 in [1, 3] yes; B: 2 in [1, 3] yes, 6 in [3, 5] no
    assert got["coverage_80"] == pytest.approx(3 / 4)
    # MSIS: A widths 2, 2, no miss -> 2 / 1.5; B widths 2, 2 + 10 * (6 - 5) = 12 -> 7 / 1
    assert got["msis"] == pytest.approx((2 / 1.5 + 7.0) / 2)


def test_reference_scores_treat_seasonal_naive_as_a_point_mass() -> None:
    ref = reference_scores(TRUTH[:2], CONTEXTS[:2], season_length=1)
    np.testing.assert_allclose(ref["mae"], [1.0, 2.0])
    np.testing.assert_allclose(ref["crps"], ref["mae"])
    np.testing.assert_allclose(ref["wql"], [2 / 6, 4 / 8])


def test_a_perfect_series_is_skipped_in_the_ratio_and_counted() -> None:
    point = TRUTH.copy()
    point[0] = [[4.0], [2.0]]  # A perfect: MASE 0, no ratio
    point[1] = [[2.0], [4.0]]
    point[2] = [[np.nan], [np.nan]]
    got = score_predicted(TRUTH, CONTEXTS, Predicted(point), n_boot=20)
    assert got["mase_rel"] == pytest.approx(0.5)  # B only
    assert got["rel_skipped"]["mase"] == 1


def test_baselines_get_the_field_metrics_and_persistence_equals_seasonal_naive() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, size=(4, 12, 2))
    window = cut_eval_windows(x, np.arange(12.0), 9, 3)
    got = score_baselines(["persistence", "seasonal_naive", "auto_ets"], window, n_boot=20)
    # with m = 1 persistence is seasonal naive: every ratio exactly 1
    for key in ("mse_rel", "mae_rel", "mase_rel", "smape_rel"):
        assert got["persistence"][key] == pytest.approx(1.0)
    assert got["persistence"]["mase"] == pytest.approx(got["seasonal_naive"]["mase"])
    # statsforecast's band gives MSIS; no samples, no WQL
    assert got["auto_ets"]["msis"] is not None and "wql" not in got["auto_ets"]
    assert len(got["auto_ets"]["per_series"]["mase"]) == 4
    # m = 2 seasonal naive differs from persistence
    m2 = score_baselines(["persistence"], window, n_boot=20, season_length=2)
    assert m2["persistence"]["mase_rel"] != pytest.approx(1.0)
