"""Per-series scores of a forecaster and their aggregates across series; pure, no I/O.

The field compares forecasters series by series: each series gets its own MASE, sMAPE, ...
(:mod:`lora_forecast.evaluation.metrics`), then the scores are aggregated across series two
ways: the plain mean (with a bootstrap interval over series, like MSE's) and the geometric mean
of the ratio to seasonal naive on the same series (GIFT-Eval, Chronos benchmark II), which no
single badly-scaled series dominates. Per-series scores are also what a paired comparison of
two forecasters needs (:mod:`lora_forecast.evaluation.paired`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_forecast.evaluation.baselines import seasonal_naive
from lora_forecast.evaluation.metrics import (
    bootstrap_ci,
    crps_from_samples,
    interval_coverage,
    log_ratios,
    mase,
    msis,
    quantiles_from_samples,
    relative_geometric_mean,
    smape,
    weighted_quantile_loss,
)
from lora_forecast.results import json_ready

__all__ = ["FIELD_METRICS", "POINT_MONITORS", "QUANTILE_LEVELS", "RELATIVE_METRICS",
           "REFERENCE", "SUM_KEYS", "Predicted", "field_scores", "per_series_scores", "point_sums",
           "reference_scores", "scores_from_sums"]

QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # WQL's levels (Chronos)
FIELD_METRICS = ("mase", "smape", "msis", "wql")  # aggregated here, beside score_forecasts'
RELATIVE_METRICS = ("mse", "mae", "mase", "smape", "wql", "crps")  # ratios to the reference
REFERENCE = "seasonal_naive"
# what a greedy (point) forecast of validation series can be monitored on (train.monitor)
POINT_MONITORS = ("mse", "mae", "mase", "smape", "mase_rel")
SUM_KEYS = ("sq", "abs", "values", "mase", "mase_n", "smape", "series", "log_rel", "rel_n")


@dataclass(frozen=True)
class Predicted:
    """One forecaster's output on ``S`` series: a point forecast ``[S, H, V]``, optionally a
    10%/90% band (``lower``/``upper``), samples ``[S, N, H, V]`` (NaN where unparsed) and which
    series parsed (``[S]`` bool; None = all)."""

    point: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    samples: np.ndarray | None = None
    parsed: np.ndarray | None = None


def per_series_scores(truth: np.ndarray, contexts: np.ndarray, pred: Predicted,
                      season_length: int = 1) -> dict[str, np.ndarray]:
    """Every metric of every series: ``{name: [S]}``, NaN for a series without a usable point
    forecast (unparsed or not finite), as :func:`score_forecasts` leaves it out.

    Always ``mse``, ``mae``, ``mase``, ``smape``; with a band ``coverage_80`` and ``msis``
    (alpha 0.2); with samples ``wql`` (on :data:`QUANTILE_LEVELS` of the samples) and
    ``crps``. ``contexts`` (``[S, Tc, V]`` or S arrays) are the in-sample histories of MASE's
    and MSIS's scales, with ``season_length`` (``eval.season_length``).
    """
    truth = np.asarray(truth, dtype=np.float64)
    point = np.asarray(pred.point, dtype=np.float64)
    ok = np.isfinite(point).all(axis=(1, 2))
    if pred.parsed is not None:
        ok &= np.asarray(pred.parsed, dtype=bool)
    names = ["mse", "mae", "mase", "smape"]
    names += ["coverage_80", "msis"] if pred.lower is not None and pred.upper is not None else []
    names += ["wql", "crps"] if pred.samples is not None else []
    out = {name: np.full(len(truth), np.nan) for name in names}
    for s in np.flatnonzero(ok):
        for name, value in _one_series(truth[s], np.asarray(contexts[s], dtype=np.float64),
                                       pred, s, season_length).items():
            out[name][s] = value
    return out


def _one_series(y: np.ndarray, history: np.ndarray, pred: Predicted, s: int,
                m: int) -> dict[str, float]:
    f = np.asarray(pred.point[s], dtype=np.float64)
    row = {"mse": float(np.mean((y - f) ** 2)), "mae": float(np.mean(np.abs(y - f))),
           "mase": mase(y, f, history, m), "smape": smape(y, f)}
    if pred.lower is not None and pred.upper is not None:
        lo, hi = np.asarray(pred.lower[s]), np.asarray(pred.upper[s])
        row["coverage_80"] = interval_coverage(y, lo, hi)
        row["msis"] = msis(y, lo, hi, history, m, alpha=0.2)
    if pred.samples is not None:
        samples = np.asarray(pred.samples[s], dtype=np.float64)  # [N, H, V]
        row["wql"] = weighted_quantile_loss(
            y, quantiles_from_samples(samples, QUANTILE_LEVELS), QUANTILE_LEVELS)
        row["crps"] = crps_from_samples(y, samples)
    return row


def reference_scores(truth: np.ndarray, contexts: np.ndarray,
                     season_length: int = 1) -> dict[str, np.ndarray]:
    """Seasonal naive's per-series scores, the denominators of the relative aggregates.

    Its forecast is a point, scored as a point mass for the probabilistic metrics: its CRPS is
    its MAE and its WQL its weighted absolute error ``sum |y - f| / sum |y|`` (every quantile is
    the point), as GIFT-Eval scores point forecasters.
    """
    point = np.stack([seasonal_naive(np.asarray(c, dtype=np.float64), np.arange(len(c)),
                                     np.arange(truth.shape[1]), season_length=season_length)
                      for c in contexts])
    return per_series_scores(truth, contexts, Predicted(point, samples=point[:, None]),
                             season_length)


def field_scores(per_series: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                 n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Aggregates of per-series scores across series (JSON-ready, NaN as None).

    Plain means of :data:`FIELD_METRICS` present, over the series that have the score, each
    with a percentile-bootstrap interval (``<name>_ci``, :func:`bootstrap_ci`); and for each of
    :data:`RELATIVE_METRICS` that both sides have, ``<name>_rel``: the geometric mean of the
    per-series ratio to the reference (seasonal naive), with its interval ``<name>_rel_ci``
    (the bootstrap of the mean log-ratio, exponentiated). Series where a ratio is undefined (a
    score of 0 or missing) are skipped and counted in ``rel_skipped[name]``. ``per_series``
    holds the lists themselves, in series order, for paired comparisons.
    """
    out: dict[str, Any] = {}
    for name in FIELD_METRICS:
        if name in per_series:
            values = per_series[name][np.isfinite(per_series[name])]
            out[name] = float(np.mean(values)) if values.size else math.nan
            out[f"{name}_ci"] = list(bootstrap_ci(values, n_boot, seed))
    skipped: dict[str, int] = {}
    for name in RELATIVE_METRICS:
        if name in per_series and name in reference:
            logs = log_ratios(per_series[name], reference[name])
            out[f"{name}_rel"] = relative_geometric_mean(per_series[name], reference[name])
            out[f"{name}_rel_ci"] = [float(np.exp(v)) for v in bootstrap_ci(logs, n_boot, seed)]
            skipped[name] = int(np.isfinite(per_series[name]).sum() - logs.size)
    out["rel_reference"] = REFERENCE
    out["rel_skipped"] = skipped
    out["per_series"] = {name: values.tolist() for name, values in per_series.items()}
    return json_ready(out)


def point_sums(truth: np.ndarray, contexts: np.ndarray, pred: Predicted,
               season_length: int = 1) -> dict[str, float]:
    """Additive pieces of :data:`POINT_MONITORS` over some series, so that data-parallel
    ranks can each score their share, sum the pieces, and get the single-process values
    (:func:`scores_from_sums`): squared and absolute errors and their count over the scored
    values (MSE and MAE pool values, as :func:`score_forecasts` does), per-series MASE and
    sMAPE and their count, the log-ratios of MASE to seasonal naive and theirs."""
    per = per_series_scores(truth, contexts, pred, season_length)
    ok = np.isfinite(per["mse"])
    err = np.asarray(truth, dtype=np.float64)[ok] - np.asarray(pred.point, dtype=np.float64)[ok]
    logs = log_ratios(per["mase"], reference_scores(truth, contexts, season_length)["mase"])
    return {"sq": float((err**2).sum()), "abs": float(np.abs(err).sum()),
            "values": float(err.size), "mase": float(np.nansum(per["mase"][ok])),
            "mase_n": float(np.isfinite(per["mase"][ok]).sum()),
            "smape": float(np.sum(per["smape"][ok])), "series": float(ok.sum()),
            "log_rel": float(np.sum(logs)), "rel_n": float(logs.size)}


def scores_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """:data:`POINT_MONITORS` from (summed) :func:`point_sums`; ``inf`` where nothing was
    scored (an unusable forecast is the worst value a monitor can see)."""
    def ratio(num: str, den: str) -> float:
        return sums[num] / sums[den] if sums[den] else math.inf
    rel = math.exp(ratio("log_rel", "rel_n")) if sums["rel_n"] else math.inf
    return {"mse": ratio("sq", "values"), "mae": ratio("abs", "values"),
            "mase": ratio("mase", "mase_n"), "smape": ratio("smape", "series"), "mase_rel": rel}
