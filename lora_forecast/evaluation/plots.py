"""Figures for runs and reports, written straight to PNG files.

Figures are built as ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, without
``pyplot``: no backend switch, no global figure registry, nothing to leak in long sweeps or to
clash with a notebook's backend. Each function writes one file and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_error_per_step", "plot_forecasts", "plot_metric_bars"]

_DPI = 120


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    fig.clear()
    return path


def plot_forecasts(
    path: str | Path,
    contexts: np.ndarray,
    truth: np.ndarray,
    point: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    t_context: np.ndarray | None = None,
    t_future: np.ndarray | None = None,
    *,
    variable_names: Sequence[str] = ("prey", "predator"),
    n_systems: int = 4,
) -> Path:
    """Plot context, truth, point forecast and the 10-90% band for the first systems.

    One row per system, one column per variable. Unparsed forecasts (NaN) leave gaps.

    Args:
        path: PNG file to write (parent folders are created).
        contexts: ``[S, Tc, V]`` context values.
        truth: ``[S, H, V]`` true continuation.
        point: ``[S, H, V]`` point forecast.
        lower: ``[S, H, V]`` 10% quantile, optional (drawn with ``upper`` as a band).
        upper: ``[S, H, V]`` 90% quantile, optional.
        t_context: ``[Tc]`` context times; None = step numbers ``0 .. Tc-1``.
        t_future: ``[H]`` forecast times; None = step numbers ``Tc .. Tc+H-1``.
        variable_names: one name per variable.
        n_systems: how many systems (rows) to draw at most.

    Returns:
        The written path.
    """
    n_ctx, horizon = contexts.shape[1], truth.shape[1]
    t_context = np.arange(n_ctx) if t_context is None else np.asarray(t_context)
    t_future = np.arange(n_ctx, n_ctx + horizon) if t_future is None else np.asarray(t_future)
    n_rows = max(1, min(n_systems, len(contexts)))
    n_vars = contexts.shape[2]
    names = list(variable_names) + [f"var {v}" for v in range(len(variable_names), n_vars)]
    fig = Figure(figsize=(4.5 * n_vars, 2.4 * n_rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_vars, squeeze=False))
    for s in range(min(n_rows, len(contexts))):
        for v in range(n_vars):
            ax = axes[s, v]
            ax.plot(t_context, contexts[s, :, v], color="0.4", lw=1.2, label="context")
            ax.plot(t_future, truth[s, :, v], color="black", lw=1.5, label="truth")
            ax.plot(t_future, point[s, :, v], color="tab:red", lw=1.5, ls="--", label="forecast")
            if lower is not None and upper is not None:
                ax.fill_between(
                    t_future,
                    lower[s, :, v],
                    upper[s, :, v],
                    color="tab:red",
                    alpha=0.2,
                    lw=0,
                    label="10-90%",
                )
            ax.axvline(t_future[0], color="0.7", lw=0.8)
            ax.set_title(f"system {s}: {names[v]}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("time")
    return _save(fig, path)


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
    ax.set_ylabel("MSE")
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
    ax.set_ylabel(metric.upper())
    ax.grid(axis="y", alpha=0.3)
    if not labels:
        ax.text(0.5, 0.5, f"no {metric} to show", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def _all_positive(per_step: Mapping[str, Sequence[float] | None]) -> bool:
    values = [v for vs in per_step.values() if vs for v in vs if v is not None]
    return bool(values) and min(values) > 0
