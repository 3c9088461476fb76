"""The leaderboard as tables: one long frame (competitor x task x metric) and its summary.

A competitor that could not forecast a task (other variables, a '-' its alphabet lacks) gets
seasonal naive's score there for the aggregates, as fev-bench imputes a failed task, and the
count of such tasks is in the table (``imputed``); its per-task rows say ``imputed = 1``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lora_forecast.benchmark.scores import AGGREGATED, Aggregate, aggregate, ordered, relative
from lora_forecast.evaluation.scoring import REFERENCE

__all__ = ["long_frame", "metric_frame", "summary_frame"]

TASK_METRICS = ("wql", "mase", "smape", "coverage_80")


def metric_frame(results: Any, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(values, imputed)``: competitors x tasks of ``metric`` (imputed from the reference
    where a competitor has no score) and where that happened (bool)."""
    tasks = [t.name for t in results.tasks]
    raw = pd.DataFrame([[results.scores.get(c, {}).get(t, {}).get(metric, math.nan)
                         for t in tasks] for c in results.competitors],
                       index=results.competitors, columns=tasks, dtype=float)
    missing = pd.DataFrame([[t not in results.scores.get(c, {}) for t in tasks]
                            for c in results.competitors],
                           index=results.competitors, columns=tasks)
    values = raw.where(~missing, raw.loc[REFERENCE], axis=1)
    return values, missing


def _aggregates(results: Any, n_boot: int, seed: int) -> dict[str, dict[str, Aggregate]]:
    return {m: aggregate(metric_frame(results, m)[0], REFERENCE, n_boot, seed)
            for m in AGGREGATED}


def long_frame(results: Any, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (competitor, task, metric): each task's metrics, ratios to seasonal naive,
    forecasting FLOPs, fallbacks, imputation and leak; task ``ALL`` holds the aggregates."""
    rows: list[tuple[str, str, str, float]] = []
    rel = {m: relative(metric_frame(results, m)[0], REFERENCE) for m in AGGREGATED}
    _, missing = metric_frame(results, AGGREGATED[0])
    for comp in results.competitors:
        for task in (t.name for t in results.tasks):
            scores = results.scores.get(comp, {}).get(task, {})
            rows += [(comp, task, m, scores[m]) for m in TASK_METRICS if m in scores]
            rows += [(comp, task, f"{m}_rel", float(rel[m].loc[comp, task])) for m in AGGREGATED]
            rows += [(comp, task, "flops_forecast", results.flops.get(comp, {}).get(task, 0.0)),
                     (comp, task, "fallback_windows",
                      float(results.fallbacks.get(comp, {}).get(task, 0))),
                     (comp, task, "imputed", float(missing.loc[comp, task])),
                     (comp, task, "leak", float(task in results.leaks.get(comp, [])))]
    summary = summary_frame(results, n_boot, seed)
    for comp, row in summary.iterrows():
        rows += [(str(comp), "ALL", str(k), float(v)) for k, v in row.items()]
    return pd.DataFrame(rows, columns=["model", "task", "metric", "value"])


def summary_frame(results: Any, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per competitor, best geometric-mean relative WQL first: the aggregates of WQL
    and MASE, FLOPs (fine-tuning, forecasting in this run, total), tasks imputed and leaked."""
    aggs = _aggregates(results, n_boot, seed)
    _, missing = metric_frame(results, AGGREGATED[0])
    rows = {}
    for comp in ordered(results.competitors, aggs["wql"]):
        row: dict[str, float] = {}
        for m in AGGREGATED:
            a = aggs[m][comp]
            row.update({f"{m}_rel_gmean": a.gmean, f"{m}_rel_ci_low": a.ci_low,
                        f"{m}_rel_ci_high": a.ci_high, f"{m}_win_rate": a.win_rate,
                        f"{m}_avg_rank": a.avg_rank})
        forecast = sum(results.flops.get(comp, {}).values())
        finetune = results.finetune_flops.get(comp, 0.0)
        row.update({"flops_finetune": finetune, "flops_forecast": forecast,
                    "flops_total": finetune + forecast,
                    "tasks_imputed": float(missing.loc[comp].sum()),
                    "tasks_leaked": float(len(results.leaks.get(comp, [])))})
        rows[comp] = row
    return pd.DataFrame.from_dict(rows, orient="index")
