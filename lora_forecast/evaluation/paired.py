"""Paired comparison of two forecasters on the same series; pure, no I/O.

Two forecasters' mean errors with overlapping confidence intervals can still differ clearly:
the series-to-series spread (some systems are hard for everyone) is shared. The paired test
removes it: the per-series *difference* ``a - b`` and a bootstrap interval of its mean over
series (``scipy.stats.bootstrap``, percentile, via
:func:`lora_forecast.evaluation.metrics.bootstrap_ci`). An interval that excludes 0 says one
forecaster is better on these series; below 0 means ``a`` has the lower error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_forecast.evaluation.metrics import bootstrap_ci

__all__ = ["PAIRED_METRICS", "PairedComparison", "paired_block", "paired_difference",
           "per_series_by_id", "within_run"]

PAIRED_METRICS = ("mse", "mae", "mase")  # compared LLM vs each baseline in results.json


@dataclass(frozen=True)
class PairedComparison:
    """Mean per-series difference ``a - b`` with its 95% bootstrap interval over ``n`` series
    (those where both have a score)."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci": [self.low, self.high], "n": self.n}


def paired_difference(a_by_id: Mapping[str, float | None], b_by_id: Mapping[str, float | None],
                      n_resamples: int = 1000, seed: int = 0) -> PairedComparison:
    """Mean of ``a[id] - b[id]`` over the series ids both score, with a bootstrap interval.

    Args:
        a_by_id: per-series scores of forecaster ``a`` (None/NaN: no score, e.g. unparsed).
        b_by_id: the same series' scores of ``b``.
        n_resamples: bootstrap resamples; seed: their seed.

    Returns:
        A :class:`PairedComparison` (NaN mean and interval when no series has both scores).

    Raises:
        ValueError: the two hold different series ids (the comparison would not be paired).

    Example:
        >>> paired_difference({"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 2.0}, 50).mean
        0.0
    """
    if set(a_by_id) != set(b_by_id):
        only_a, only_b = sorted(set(a_by_id) - set(b_by_id)), sorted(set(b_by_id) - set(a_by_id))
        raise ValueError(f"different series ids: {len(only_a)} only in the first "
                         f"({only_a[:3]}...), {len(only_b)} only in the second ({only_b[:3]}...)")
    pairs = np.array([(_float(a_by_id[k]), _float(b_by_id[k])) for k in a_by_id]).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    diff = pairs[:, 0] - pairs[:, 1]
    mean = float(np.mean(diff)) if diff.size else math.nan
    low, high = bootstrap_ci(diff, n_resamples, seed)
    return PairedComparison(mean, low, high, int(diff.size))


def per_series_by_id(scores: Mapping[str, Any], ids: Sequence[str],
                     metric: str) -> dict[str, float | None]:
    """``{series id: score}`` from a results entry's ``per_series[metric]`` list (in the order
    of ``eval_series.ids``). Raises KeyError when the entry has no such per-series score."""
    values = (scores.get("per_series") or {})[metric]
    if len(values) != len(ids):
        raise ValueError(f"{len(values)} per-series {metric} values for {len(ids)} series ids")
    return dict(zip(ids, values, strict=True))


def within_run(results: Mapping[str, Any], metric: str = "mse", n_resamples: int = 1000,
               seed: int = 0) -> dict[str, PairedComparison]:
    """The LLM against every baseline of one run's results: ``{baseline: LLM - baseline}``.

    Empty when the run has no LLM metrics or no per-series scores (runs before they existed).
    """
    ids = (results.get("eval_series") or {}).get("ids")
    llm = results.get("metrics") or {}
    if not ids or metric not in (llm.get("per_series") or {}):
        return {}
    mine = per_series_by_id(llm, ids, metric)
    return {name: paired_difference(mine, per_series_by_id(scores, ids, metric), n_resamples,
                                    seed)
            for name, scores in (results.get("baselines") or {}).items()
            if metric in (scores.get("per_series") or {})}


def paired_block(results: Mapping[str, Any], n_resamples: int = 1000,
                 seed: int = 0) -> dict[str, dict[str, Any]]:
    """``results.json``'s ``paired`` block: ``{metric: {baseline: {mean, ci, n}}}`` of the LLM
    minus each baseline, for :data:`PAIRED_METRICS` (empty without LLM per-series scores)."""
    block = {metric: {name: cmp.to_dict()
                      for name, cmp in within_run(results, metric, n_resamples, seed).items()}
             for metric in PAIRED_METRICS}
    return {metric: rows for metric, rows in block.items() if rows}


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)
