"""What a run writes beside ``results.json``: ``forecasts.png``, ``error_per_step.png`` and
``forecasts.csv``, on the input's own series ids and times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lora_forecast.config import Settings
from lora_forecast.data.forecast_table import scored_frame, write_frame
from lora_forecast.data.series import SeriesSet
from lora_forecast.evaluation.plots import (
    ForecastPanels,
    metrics_title,
    plot_error_per_step,
    plot_forecasts,
)
from lora_forecast.evaluation.protocol import SeriesWindows

FORECASTS_FILE = "forecasts.csv"  # a run's scored test forecasts, beside results.json


def write_run_outputs(run_dir: Path, scored: SeriesSet, window: SeriesWindows, fc: Any,
                      payload: dict[str, Any], settings: Settings) -> None:  # fmt: skip
    """The run's figures and scored forecast table (the main process only)."""
    _plots(run_dir, window, fc, payload, settings, scored)
    _write_forecasts(run_dir, scored, window, fc, settings)


def _window_times(scored: SeriesSet, window: SeriesWindows) -> tuple[np.ndarray, np.ndarray]:
    """``([S, Tc], [S, H])`` times of the scored series' context and horizon as the input
    holds them (numbers, or dates), not the windows' float days."""
    n_ctx, horizon = window.contexts.shape[1], window.truth.shape[1]
    times = np.stack([t[:n_ctx + horizon] for t in scored.times])  # [S, Tc + H]
    return times[:, :n_ctx], times[:, n_ctx:]


def _plots(run_dir: Path, window: SeriesWindows, fc: Any, payload: dict[str, Any],
           settings: Settings, scored: SeriesSet) -> None:
    """``forecasts.png`` (the test series under their ids in ``split.json``, on their own
    times, bands only from samples) and ``error_per_step.png``."""
    sampled = settings.eval.num_samples > 1
    variables = scored.variables
    named = {} if variables[0] == "var0" else {"variable_names": variables}
    panels = ForecastPanels(
        system_ids=window.ids, n_systems=settings.eval.plot_systems,
        title=metrics_title(payload["metrics"]["mse"], payload["baselines"]),
        system_labels=[scored.label(i) for i in range(len(scored))],
        time_label=scored.time_name, **named,
    )  # fmt: skip
    plot_forecasts(run_dir / "forecasts.png", window.contexts, window.truth, fc.point,
                   (fc.lower, fc.upper) if sampled else None, _window_times(scored, window),
                   panels)
    per_step = {"LLM": payload["metrics"]["mse_per_step"]}
    per_step.update({name: m["mse_per_step"] for name, m in payload["baselines"].items()})
    plot_error_per_step(run_dir / "error_per_step.png", per_step)


def _write_forecasts(run_dir: Path, scored: SeriesSet, window: SeriesWindows, fc: Any,
                     settings: Settings) -> None:
    """``forecasts.csv``: the scored test forecasts beside their truth, on the input's times
    (see :func:`lora_forecast.data.forecast_table.scored_frame`), written atomically."""
    sampled = settings.eval.num_samples > 1
    frame = scored_frame(scored, _window_times(scored, window)[1], window.truth, fc, sampled)
    write_frame(frame, run_dir / FORECASTS_FILE)
