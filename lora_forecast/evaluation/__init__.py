"""Scoring forecasts: metrics, baselines without an LLM, the evaluation protocol, plots.

Pure parts (:mod:`metrics`, :mod:`baselines`, :mod:`protocol`) do no I/O; :mod:`plots` writes
PNG files and is imported on demand (``from lora_forecast.evaluation.plots import ...``) so that
scoring does not pull in matplotlib.
"""

from lora_forecast.evaluation.baselines import BASELINES, BaselineFn, forecast_baseline
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
from lora_forecast.evaluation.protocol import EvalWindow, cut_eval_windows, score_baselines

__all__ = [
    "BASELINES",
    "BaselineFn",
    "EvalWindow",
    "bootstrap_ci",
    "crps_samples",
    "cut_eval_windows",
    "forecast_baseline",
    "interval_coverage",
    "mae",
    "mse",
    "mse_per_step",
    "mse_per_variable",
    "r2",
    "score_baselines",
    "score_forecasts",
]
