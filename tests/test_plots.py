"""Every plot writes a real, non-empty PNG and leaves no figure open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.image import imread

from lora_forecast.evaluation.plots import plot_error_per_step, plot_forecasts, plot_metric_bars

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width = imread(path).shape[:2]
    assert height > 100 and width > 100


@pytest.fixture
def forecast_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    contexts = rng.uniform(0.5, 2.0, size=(3, 20, 2))
    truth = rng.uniform(0.5, 2.0, size=(3, 5, 2))
    point = truth + 0.1
    point[1] = np.nan  # an unparsed system leaves a gap, not an error
    return {
        "contexts": contexts,
        "truth": truth,
        "point": point,
        "lower": point - 0.2,
        "upper": point + 0.2,
    }


def test_plot_forecasts_with_band(tmp_path: Path, forecast_arrays) -> None:
    before = plt.get_fignums()
    path = plot_forecasts(
        tmp_path / "sub" / "forecasts.png",
        **forecast_arrays,
        t_context=np.arange(20.0),
        t_future=np.arange(20.0, 25.0),
        n_systems=2,
    )
    assert path == tmp_path / "sub" / "forecasts.png"
    assert_png(path)
    assert plt.get_fignums() == before


def test_plot_forecasts_positional_times_and_no_band(tmp_path: Path, forecast_arrays) -> None:
    a = forecast_arrays
    # the call shape the run uses: times positionally after the band
    path = plot_forecasts(
        tmp_path / "f.png",
        a["contexts"],
        a["truth"],
        a["point"],
        None,
        None,
        np.arange(20.0) * 2,
        np.arange(20.0, 25.0) * 2,
    )
    assert_png(path)
    assert_png(plot_forecasts(tmp_path / "g.png", a["contexts"], a["truth"], a["point"]))


def test_plot_error_per_step(tmp_path: Path) -> None:
    path = plot_error_per_step(
        tmp_path / "e.png",
        {"LLM": [0.01, 0.02, 0.04], "persistence": [0.1, 0.3, 0.5], "failed": None},
    )
    assert_png(path)


def test_plot_metric_bars_with_and_without_intervals(tmp_path: Path) -> None:
    runs = {
        "final": {"mse": 0.0169, "mse_ci": [0.012, 0.023]},
        "persistence": {"mse": 0.3},  # no interval: bar without error bar
        "rejected": None,
    }  # no metrics: skipped
    assert_png(plot_metric_bars(tmp_path / "m.png", runs))
    assert_png(plot_metric_bars(tmp_path / "empty.png", {}))
