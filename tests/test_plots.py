"""Every plot writes a real, non-empty PNG and leaves no figure open; the forecast figure says
what it shows (system ids, units, metrics, bands only from samples, readable y-limits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.image import imread

from lora_forecast.evaluation.plots import (
    ForecastPanels,
    forecast_figure,
    metrics_title,
    plot_error_per_step,
    plot_forecasts,
    plot_metric_bars,
    readable_ylim,
)

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
    a = forecast_arrays
    path = plot_forecasts(
        tmp_path / "sub" / "forecasts.png", a["contexts"], a["truth"], a["point"],
        band=(a["lower"], a["upper"]),
        times=(np.arange(20.0), np.arange(20.0, 25.0)),
        panels=ForecastPanels(n_systems=2),
    )
    assert path == tmp_path / "sub" / "forecasts.png"
    assert_png(path)
    assert plt.get_fignums() == before


def test_plot_forecasts_positional_times_and_no_band(tmp_path: Path, forecast_arrays) -> None:
    a = forecast_arrays
    # the call shape the run uses: times positionally after the band
    path = plot_forecasts(tmp_path / "f.png", a["contexts"], a["truth"], a["point"], None,
                          (np.arange(20.0) * 2, np.arange(20.0, 25.0) * 2))
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


def legend_labels(fig) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def panel_notes(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_forecast_figure_names_systems_units_and_metrics(forecast_arrays) -> None:
    a = forecast_arrays
    title = metrics_title(0.0231, {"persistence": {"mse": 0.045}, "ar": {"mse": 0.03}})
    fig = forecast_figure(a["contexts"], a["truth"], a["point"], None, None,
                          np.arange(20.0), np.arange(20.0, 25.0),
                          ForecastPanels(system_ids=[17, 3, 42], title=title, n_systems=3))
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[:, 0]] == [
        "system 17: prey", "system 3: prey", "system 42: prey"]
    assert axes[2, 1].get_title() == "system 42: predator"
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["value (original units)"] * 3
    assert [ax.get_xlabel() for ax in axes[-1]] == ["time", "time"]
    assert fig.get_suptitle() == "test MSE 0.0231 | best baseline: ar 0.03"
    assert panel_notes(axes[1, 0]) == ["no parsed forecast"]  # system 3 is NaN


def test_metrics_title_skips_missing_baselines_and_unparsed_runs() -> None:
    baselines = {"ode": None, "bad": {"mse": float("nan")}, "persistence": {"mse": 0.3}}
    assert metrics_title(None, baselines) == "test MSE n/a | best baseline: persistence 0.3"
    assert metrics_title(0.01234567, {}) == "test MSE 0.01235"


@pytest.mark.parametrize(("band", "expected"), [
    ("none", ["context", "truth", "forecast"]),
    ("greedy", ["context", "truth", "forecast"]),  # one sample: lower == upper == point
    ("sampled", ["context", "truth", "forecast", "10-90% of samples"]),
])
def test_band_and_its_legend_entry_only_with_samples(forecast_arrays, band, expected) -> None:
    a = forecast_arrays
    lower, upper = {"none": (None, None), "greedy": (a["point"], a["point"]),
                    "sampled": (a["lower"], a["upper"])}[band]
    fig = forecast_figure(a["contexts"], a["truth"], a["point"], lower, upper)
    assert legend_labels(fig) == expected
    assert fig.axes[0].get_xlabel() == ""  # not the bottom row
    assert fig.axes[-1].get_xlabel() == "time step"  # no times given: positions
    assert fig.get_suptitle() == ""


def test_an_exploding_forecast_keeps_context_and_truth_readable(forecast_arrays) -> None:
    a = forecast_arrays
    point = a["truth"].copy()
    point[0, :, 0] = [1.0, 10.0, 1e3, 1e5, 1e6]  # system 0, prey explodes
    fig = forecast_figure(a["contexts"], a["truth"], point)
    exploded, calm = fig.axes[0], fig.axes[1]
    shown = np.concatenate([a["contexts"][0, :, 0], a["truth"][0, :, 0]])
    lo, hi = shown.min(), shown.max()
    ymin, ymax = exploded.get_ylim()
    assert lo - (hi - lo) <= ymin <= lo and hi <= ymax <= hi + (hi - lo)  # data fill the panel
    assert panel_notes(exploded) == ["forecast off scale: [1, 1e+06]"]
    assert panel_notes(calm) == []
    ymin, ymax = calm.get_ylim()
    assert ymin <= np.nanmin(point[0, :, 1]) and np.nanmax(point[0, :, 1]) <= ymax


def test_readable_ylim_by_hand() -> None:
    shown = np.array([0.0, 2.0, np.nan])
    assert readable_ylim(shown, np.array([2.9, -0.9])) is None  # within half a span: autoscale
    assert readable_ylim(shown, np.array([1e3])) == (-1.0, 3.0)
    assert readable_ylim(np.array([5.0, 5.0]), np.array([100.0])) == (2.5, 7.5)  # flat data
    assert readable_ylim(shown, np.array([np.nan])) is None


def test_per_system_time_axes(forecast_arrays) -> None:
    a = forecast_arrays
    t = np.arange(25.0)[None] + np.array([[0.0], [100.0], [200.0]])  # [S, Tc + H]
    fig = forecast_figure(a["contexts"], a["truth"], a["point"], None, None, t[:, :20], t[:, 20:])
    x_of_system_2 = fig.axes[4].get_lines()[0].get_xdata()
    np.testing.assert_array_equal(x_of_system_2, t[2, :20])


@pytest.mark.parametrize(("samples", "band"), [(1, False), (3, True)])
def test_run_plots_test_system_ids_metrics_and_bands_from_samples(
        compose_cfg, run_dir: Path, monkeypatch, samples: int, band: bool) -> None:
    import json

    from lora_forecast.evaluation import plots
    from lora_forecast.task import run_task

    seen = []  # what the figure holds before plot_forecasts renders and clears it

    def recording(*args, **kwargs):
        fig = forecast_figure(*args, **kwargs)
        seen.append(([ax.get_title() for ax in fig.axes], fig.get_suptitle(), legend_labels(fig)))
        return fig

    monkeypatch.setattr(plots, "forecast_figure", recording)
    run_task(compose_cfg("+experiment=baseline", f"eval.num_samples={samples}"), run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    test_ids = json.loads((run_dir / "split.json").read_text())["ids"]["test"]
    ((titles, suptitle, legend),) = seen
    assert titles[::2] == [f"system {i}: prey" for i in test_ids[:2]]  # SHRINK: 2 systems
    persistence = results["baselines"]["persistence"]["mse"]
    assert suptitle == (f"test MSE {results['metrics']['mse']:.4g} | best baseline: "
                                  f"persistence {persistence:.4g}")
    assert ("10-90% of samples" in legend) is band


def test_forecasts_of_new_data_have_no_truth_entry(forecast_arrays) -> None:
    a = forecast_arrays
    fig = forecast_figure(a["contexts"], np.full_like(a["truth"], np.nan), a["point"],
                          panels=ForecastPanels(system_ids=["shop-a", "shop-b", "shop-c"],
                                                variable_names=("sales", "visits")))
    assert legend_labels(fig) == ["context", "forecast"]
    assert fig.axes[0].get_title() == "system shop-a: sales"


def test_dates_on_a_date_axis_with_series_labels(forecast_arrays) -> None:
    from matplotlib.dates import ConciseDateFormatter

    a = forecast_arrays
    days = np.arange("2024-01-01", "2024-01-26", dtype="datetime64[D]").astype("datetime64[ns]")
    t = np.broadcast_to(days, (3, 25))
    labels = ["series from in.csv", "series b", "series c"]
    fig = forecast_figure(a["contexts"], a["truth"], a["point"], None, None, t[:, :20], t[:, 20:],
                          ForecastPanels(system_labels=labels, time_label="date"))
    first = fig.axes[0]
    context, forecast = first.get_lines()[0], first.get_lines()[2]
    np.testing.assert_array_equal(context.get_xdata(), days[:20])
    np.testing.assert_array_equal(forecast.get_xdata(), days[20:])
    assert isinstance(first.xaxis.get_major_formatter(), ConciseDateFormatter)
    assert [ax.get_title() for ax in fig.axes[::2]] == [f"{label}: prey" for label in labels]
    assert [ax.get_xlabel() for ax in fig.axes[-2:]] == ["date", "date"]


def test_integer_years_get_integer_ticks() -> None:
    years = np.arange(1900, 1903)  # over 2 years the default ticks would fall on half years
    values = np.array([[[1.0], [2.0], [1.5]]])  # [1, 3, 1]
    fig = forecast_figure(values[:, :1], values[:, 1:], values[:, 1:] + 0.1, None, None,
                          years[:1], years[1:], ForecastPanels(time_label="year"))
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.get_lines()[2].get_xdata(), [1901, 1902])
    ticks = ax.get_xticks()
    assert len(ticks) > 1 and (ticks == np.round(ticks)).all()  # no 1900.5
    assert ax.get_xlabel() == "year"
