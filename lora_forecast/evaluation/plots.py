"""Figures for runs and reports, written straight to PNG files.

Figures are built as ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, without
``pyplot``: no backend switch, no global figure registry, nothing to leak in long sweeps or to
clash with a notebook's backend. Each function writes one file and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["ForecastPanels", "forecast_figure", "metrics_title", "plot_error_per_step",
           "plot_forecasts", "plot_metric_bars", "readable_ylim"]

_DPI = 120


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    fig.clear()
    return path


@dataclass(frozen=True)
class ForecastPanels:
    """What the forecast figure shows, beyond the arrays: who the systems are and the headline.

    Attributes:
        system_ids: the id of each system (row) in the data, e.g. the split's test ids; None =
            positions ``0 .. S-1``.
        title: the figure title, e.g. :func:`metrics_title`; None = no title.
        variable_names: one name per variable (extra variables get ``var i``).
        n_systems: how many systems (rows) to draw at most.
        band_label: legend entry of the ``lower``-``upper`` band.
        value_label: the y-axis label.
        system_labels: each row's full name (e.g. ``series s01``, ``series from in.csv``:
            :meth:`lora_forecast.data.series.SeriesSet.label`); None = ``system <id>``.
        time_label: the x-axis label when times are given (the input's time column).
    """

    system_ids: Sequence[Any] | None = None
    title: str | None = None
    variable_names: Sequence[str] = ("prey", "predator")
    n_systems: int = 4
    band_label: str = "10-90% of samples"
    value_label: str = "value (original units)"
    system_labels: Sequence[str] | None = None
    time_label: str = "time"

    def row_names(self, n_sys: int) -> list[str]:
        """The name of each of ``n_sys`` rows: its label, or ``system <id>``."""
        if self.system_labels is not None:
            return list(self.system_labels)
        ids = list(self.system_ids) if self.system_ids is not None else list(range(n_sys))
        return [f"system {i}" for i in ids]


def metrics_title(mse: float | None, baselines: Mapping[str, Mapping[str, Any] | None]) -> str:
    """``test MSE 0.0231 | best baseline: persistence 0.0450`` (the baseline part only if any).

    Args:
        mse: the run's test MSE (None or NaN when no forecast parsed).
        baselines: ``{name: metrics}`` as in ``results.json``; the lowest finite ``mse`` wins.
    """
    def shown(value: Any) -> str:
        return "n/a" if value is None or not np.isfinite(value) else f"{value:.4g}"

    scores = {name: m.get("mse") for name, m in baselines.items() if m}
    scores = {name: v for name, v in scores.items() if v is not None and np.isfinite(v)}
    title = f"test MSE {shown(mse)}"
    if scores:
        best = min(scores, key=scores.get)
        title += f" | best baseline: {best} {shown(scores[best])}"
    return title


def readable_ylim(shown: np.ndarray, forecast: np.ndarray,
                  slack: float = 0.5) -> tuple[float, float] | None:
    """Y-limits that keep ``shown`` (context and truth) readable, or None when autoscale does.

    A forecast (or band) reaching further than ``slack`` times the span of ``shown`` beyond
    it would flatten context and truth to a line; then the limits are the range of ``shown``
    widened by ``slack`` of its span on each side. Non-finite values are ignored.
    """
    data, fc = shown[np.isfinite(shown)], forecast[np.isfinite(forecast)]
    if data.size == 0 or fc.size == 0:
        return None
    lo, hi = float(data.min()), float(data.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    limits = (lo - slack * span, hi + slack * span)
    if limits[0] <= fc.min() and fc.max() <= limits[1]:
        return None
    return limits


def _has_band(point: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None) -> bool:
    """A band exists when both quantiles are given and are not all equal to the point (greedy
    forecasts, one sample, give ``lower == upper == point``)."""
    if lower is None or upper is None:
        return False
    return not (np.array_equal(lower, point, equal_nan=True)
                and np.array_equal(upper, point, equal_nan=True))


def _draw_panel(ax: Any, t_context: np.ndarray, t_future: np.ndarray, context: np.ndarray,
                truth: np.ndarray, point: np.ndarray, band: tuple[np.ndarray, np.ndarray] | None,
                band_label: str) -> None:
    """One system x variable: context, truth, forecast, band; y-limits kept readable."""
    ax.plot(t_context, context, color="0.4", lw=1.2, label="context")
    if np.isfinite(truth).any():  # a forecast of new data has no truth to draw
        ax.plot(t_future, truth, color="black", lw=1.5, label="truth")
    ax.plot(t_future, point, color="tab:red", lw=1.5, ls="--", label="forecast")
    if band is not None:
        ax.fill_between(t_future, band[0], band[1], color="tab:red", alpha=0.2, lw=0,
                        label=band_label)
    ax.axvline(t_future[0], color="0.7", lw=0.8)
    predicted = np.concatenate([point, *(band or ())])
    limits = readable_ylim(np.concatenate([context, truth]), predicted)
    if limits is not None:
        ax.set_ylim(*limits)
        finite = predicted[np.isfinite(predicted)]
        ax.text(0.02, 0.95, f"forecast off scale: [{finite.min():.3g}, {finite.max():.3g}]",
                transform=ax.transAxes, fontsize=7, va="top", color="tab:red")
    elif not np.isfinite(point).any():
        ax.text(0.02, 0.95, "no parsed forecast", transform=ax.transAxes, fontsize=7, va="top",
                color="tab:red")


def _time_ticks(ax: Any, dtype: np.dtype) -> None:
    """Dates get a date axis with concise labels; integer times (years) integer ticks
    (``dtype``: of the forecast times, which padding never turns into floats)."""
    if np.issubdtype(dtype, np.datetime64):
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    elif np.issubdtype(dtype, np.integer):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def forecast_figure(
    contexts: np.ndarray,
    truth: np.ndarray,
    point: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    t_context: np.ndarray | None = None,
    t_future: np.ndarray | None = None,
    panels: ForecastPanels = ForecastPanels(),
) -> Figure:
    """The forecast figure: one row per system, one column per variable.

    Unparsed forecasts (NaN) leave gaps. The band is drawn only when there is one (see
    :func:`_has_band`); a forecast that explodes is cut off by :func:`readable_ylim` and the
    panel says so.

    Args:
        contexts: ``[S, Tc, V]`` context values.
        truth: ``[S, H, V]`` true continuation.
        point: ``[S, H, V]`` point forecast.
        lower: ``[S, H, V]`` lower quantile, optional (drawn with ``upper`` as a band).
        upper: ``[S, H, V]`` upper quantile, optional.
        t_context: ``[Tc]`` shared or ``[S, Tc]`` per-system context times (numbers, or
            ``datetime64`` for a date axis; NaN/NaT where a shorter context has no step);
            None = steps.
        t_future: ``[H]`` or ``[S, H]`` forecast times; None = steps ``Tc .. Tc+H-1``.
        panels: ids, title, names and labels (see :class:`ForecastPanels`).

    Returns:
        The figure (not yet rendered).
    """
    n_sys, n_ctx, n_vars = contexts.shape
    horizon = truth.shape[1]
    timed = t_context is not None and t_future is not None
    t_c = np.broadcast_to(np.asarray(t_context) if timed else np.arange(n_ctx), (n_sys, n_ctx))
    t_f = np.broadcast_to(np.asarray(t_future) if timed else np.arange(n_ctx, n_ctx + horizon),
                          (n_sys, horizon))
    rows = panels.row_names(n_sys)
    names = list(panels.variable_names) + [f"var {v}" for v in
                                           range(len(panels.variable_names), n_vars)]
    n_rows = max(1, min(panels.n_systems, n_sys))
    band = _has_band(point, lower, upper)
    fig = Figure(figsize=(4.5 * n_vars, 2.4 * n_rows + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_vars, squeeze=False))
    for s in range(min(n_rows, n_sys)):
        for v in range(n_vars):
            _draw_panel(axes[s, v], t_c[s], t_f[s], contexts[s, :, v], truth[s, :, v],
                        point[s, :, v], (lower[s, :, v], upper[s, :, v]) if band else None,
                        panels.band_label)
            axes[s, v].set_title(f"{rows[s]}: {names[v]}", fontsize=9)
            _time_ticks(axes[s, v], t_f.dtype)
        axes[s, 0].set_ylabel(panels.value_label, fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8,
               frameon=False)  # below the panels: never hides data or a panel's note
    for ax in axes[-1]:
        ax.set_xlabel(panels.time_label if timed else "time step")
    if panels.title:
        fig.suptitle(panels.title, fontsize=10)
    return fig


def plot_forecasts(
    path: str | Path,
    contexts: np.ndarray,
    truth: np.ndarray,
    point: np.ndarray,
    band: tuple[np.ndarray, np.ndarray] | None = None,
    times: tuple[np.ndarray, np.ndarray] | None = None,
    panels: ForecastPanels = ForecastPanels(),
) -> Path:
    """Write :func:`forecast_figure` to the PNG ``path``; return ``path``. ``band`` is its
    ``(lower, upper)``, ``times`` its ``(t_context, t_future)``."""
    lower, upper = band if band is not None else (None, None)
    t_context, t_future = times if times is not None else (None, None)
    figure = forecast_figure(contexts, truth, point, lower, upper, t_context, t_future, panels)
    return _save(figure, path)


def plot_error_per_step(path: str | Path, per_step: Mapping[str, Sequence[float] | None]) -> Path:
    """Plot MSE against forecast step, one line per run or baseline.

    Args:
        path: PNG file to write.
        per_step: ``{label: [H] MSE per step}``; entries that are None are skipped.

    Returns:
        The written path.
    """
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for label, values in per_step.items():
        if values is None:
            continue
        y = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        ax.plot(np.arange(1, len(y) + 1), y, marker="o", ms=3, label=label)
    ax.set_xlabel("steps ahead")
    ax.set_ylabel("MSE (original units squared)")
    if _all_positive(per_step):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_metric_bars(
    path: str | Path, runs: Mapping[str, Mapping[str, Any] | None], metric: str = "mse"
) -> Path:
    """Bar chart of one metric per run, with its confidence interval where present.

    Args:
        path: PNG file to write.
        runs: ``{label: metrics dict}``; ``metrics[metric]`` is the bar, ``metrics[metric +
            "_ci"]`` (``[lo, hi]``) the error bar when present. Missing values are skipped.
        metric: the metric key.

    Returns:
        The written path.
    """
    labels, values, err_lo, err_hi = [], [], [], []
    for label, metrics in runs.items():
        value = (metrics or {}).get(metric)
        if value is None:
            continue
        ci = (metrics or {}).get(f"{metric}_ci") or [None, None]
        labels.append(label)
        values.append(float(value))
        err_lo.append(value - ci[0] if ci[0] is not None else 0.0)
        err_hi.append(ci[1] - value if ci[1] is not None else 0.0)
    fig = Figure(figsize=(max(4.0, 0.7 * len(labels) + 2.0), 4.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(labels))
    ax.bar(
        x,
        values,
        yerr=np.array([err_lo, err_hi]).reshape(2, -1),
        capsize=3,
        color="tab:blue",
        alpha=0.8,
    )
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric.upper()}")
    ax.grid(axis="y", alpha=0.3)
    if not labels:
        ax.text(0.5, 0.5, f"no {metric} to show", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def _all_positive(per_step: Mapping[str, Sequence[float] | None]) -> bool:
    values = [v for vs in per_step.values() if vs for v in vs if v is not None]
    return bool(values) and min(values) > 0
