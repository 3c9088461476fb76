"""Sweep tables: trials, the learning-rate x rank grid and the context-length table (pure).

A trial's parameters come from its resolved config, overridden by what the sweeper recorded
(its line in ``optimization_results.yaml``, then ``sweep.params`` in its results).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lora_forecast.report.collect import RunRecord, Sweep, flatten
from lora_forecast.report.tables import DASH, fmt, fmt_ci, fmt_flops, markdown_table, monitored

__all__ = ["context_table", "grid_table", "sweep_params", "sweep_table", "varying_keys"]

# Config keys that never count as swept parameters (identity, paths, bookkeeping).
IGNORED_PREFIXES = ("trial.", "hydra.", "logger.", "budget.", "output_dir", "experiment")


def sweep_params(run: RunRecord, sweep: Sweep) -> dict[str, Any]:
    """The trial's parameters: the run's config, overridden by what the sweeper recorded
    (the trial's line in ``optimization_results.yaml``, then ``sweep.params``)."""
    params = flatten(run.config)
    number = run.get("config.trial.number")
    for trial in (sweep.summary or {}).get("trials") or []:
        if number is not None and trial.get("number") == number:
            params.update(trial.get("params") or {})
    params.update(run.sweep_params)
    return params


def varying_keys(sweep: Sweep) -> list[str]:
    """Parameters whose value differs between the sweep's runs.

    Candidates are the keys the sweeper names (trial params, ``sweep.params``); without any,
    every config key except bookkeeping (:data:`IGNORED_PREFIXES`).
    """
    params = [sweep_params(r, sweep) for r in sweep.runs]
    named = {k for r in sweep.runs for k in r.sweep_params}
    named |= {k for t in (sweep.summary or {}).get("trials") or [] for k in t.get("params") or {}}
    keys = sorted(named) if named else sorted({k for p in params for k in p})
    keys = [k for k in keys if named or not k.startswith(IGNORED_PREFIXES)]
    return [k for k in keys if len({json.dumps(p.get(k), default=str) for p in params}) > 1]


def sweep_table(sweep: Sweep, keys: Sequence[str], labels: Mapping[int, str]) -> str:
    """One row per trial: its varying parameters, status, monitored value, test MSE, FLOPs.

    ``labels`` maps a trial's position in ``sweep.runs`` to its label. The best monitored
    value is bold.
    """
    values = [monitored(r) for r in sweep.runs]
    best = min((v for v in values if v is not None), default=None)
    body = []
    for i, (run, value) in enumerate(zip(sweep.runs, values, strict=True)):
        params = sweep_params(run, sweep)
        shown = f"**{fmt(value)}**" if value is not None and value == best else fmt(value)
        body.append(
            [
                labels[i],
                *(fmt(params.get(k)) for k in keys),
                str(run.results.get("status") or DASH),
                shown,
                fmt_ci(run.get("metrics.mse"), run.get("metrics.mse_ci")),
                fmt_flops(run.get("flops.spent")),
            ]
        )
    header = ["trial", *keys, "status", "monitored", "test MSE [95% CI]", "FLOPs spent"]
    return markdown_table(header, body, "l" + "r" * len(keys) + "lrlr")


def grid_table(
    sweep: Sweep, row_key: str, col_key: str, value: Callable[[RunRecord], float | None]
) -> str:
    """A ``row_key`` x ``col_key`` grid of ``value`` (the best over runs sharing a cell).

    Example: rows learning rate, columns LoRA rank, cells the best monitored validation loss;
    the best cell of the grid is bold, empty cells are em dashes.
    """
    cells: dict[tuple[Any, Any], float] = {}
    for run in sweep.runs:
        run_params = sweep_params(run, sweep)
        v = value(run)
        key = (run_params.get(row_key), run_params.get(col_key))
        if v is not None and (key not in cells or v < cells[key]):
            cells[key] = v
    params = [sweep_params(r, sweep) for r in sweep.runs]
    rows = sorted({p.get(row_key) for p in params}, key=_sort_key)
    cols = sorted({p.get(col_key) for p in params}, key=_sort_key)
    best = min(cells.values(), default=None)
    body = []
    for r in rows:
        line = [fmt(r)]
        for c in cols:
            v = cells.get((r, c))
            line.append(f"**{fmt(v)}**" if v is not None and v == best else fmt(v))
        body.append(line)
    return markdown_table([f"{row_key} \\ {col_key}", *map(fmt, cols)], body, "l" + "r" * len(cols))


def context_table(sweep: Sweep, key: str) -> str:
    """Per value of ``key`` (context length): runs, best monitored value, that run's test MSE
    with CI and steps, and the FLOPs spent by all runs with that value."""
    groups: dict[Any, list[RunRecord]] = {}
    for run in sweep.runs:
        groups.setdefault(sweep_params(run, sweep).get(key), []).append(run)
    body = []
    for value in sorted(groups, key=_sort_key):
        members = groups[value]
        scored = [r for r in members if monitored(r) is not None]
        best = min(scored, key=lambda r: monitored(r) or 0.0) if scored else None
        body.append(
            [
                fmt(value),
                str(len(members)),
                fmt(monitored(best) if best else None),
                fmt_ci(best.get("metrics.mse"), best.get("metrics.mse_ci")) if best else DASH,
                fmt(best.get("train.steps")) if best else DASH,
                fmt_flops(sum(float(r.get("flops.spent") or 0.0) for r in members)),
            ]
        )
    header = [key, "runs", "best monitored", "test MSE [95% CI]", "steps", "FLOPs spent"]
    return markdown_table(header, body, "rrrlrr")


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers first in numeric order, then everything else by its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))
