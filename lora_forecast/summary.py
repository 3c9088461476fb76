"""The end-of-run summary: a pure function from a run's results to the text a user reads.

A run used to end silently; the numbers were in ``results.json`` only. :func:`format_summary`
renders the same dictionary (status, end reason, monitored validation value, test metrics with
intervals beside every baseline's, parse failures, the study's FLOPs) plus what to run next,
so the console, the run's log and ``results.json`` always agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STATUS_WORDS = {
    "completed": "finished",
    "stopped_budget": "stopped before its FLOPs reservation ran out",
    "interrupted": "was interrupted (checkpoint written)",
    "pruned": "was pruned by the sweeper",
    "rejected": "was rejected by the FLOPs budget: nothing ran, nothing was spent",
    "failed": "failed",
}


@dataclass(frozen=True)
class SummaryContext:
    """What the results dictionary does not hold: where the run is and how it was started."""

    run_dir: str
    command: str = "python -m lora_forecast"  # the rerun command, overrides included
    monitor: str = "val/loss"
    log_file: str | None = None
    error: str | None = None


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"


def _flops(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3e}"


def _with_ci(metrics: Mapping[str, Any], key: str) -> str:
    ci = metrics.get(f"{key}_ci")
    text = _num(metrics.get(key))
    return f"{text} [{_num(ci[0])}, {_num(ci[1])}]" if ci else text


def _metric_rows(results: Mapping[str, Any]) -> list[str]:
    """A small table: this run's test metrics, then each baseline's, same columns."""
    named = [("this run", results.get("metrics"))]
    named += sorted((results.get("baselines") or {}).items())
    named = [(name, m) for name, m in named if m]
    if not named:
        return []
    cells = [("", "MSE [95% CI]", "MAE [95% CI]", "R2")]
    cells += [(name, _with_ci(m, "mse"), _with_ci(m, "mae"), _num(m.get("r2")))
              for name, m in named]
    widths = [max(len(row[c]) for row in cells) for c in range(4)]
    systems = next((m.get("n_systems") for _, m in named if m.get("n_systems")), None)
    head = f"  test ({systems} systems):" if systems else "  test:"
    return [head, *("    " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
                    .rstrip() for row in cells)]


def _named_metrics(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    named = [("this run", results.get("metrics"))]
    named += sorted((results.get("baselines") or {}).items())
    return [(name, m) for name, m in named if m]


def _table(cells: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    return ["    " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


def _field_rows(results: Mapping[str, Any]) -> list[str]:
    """The field's scale-free metrics: MASE, sMAPE and the geometric mean of the ratios to
    seasonal naive, plus WQL and 80% coverage where a forecaster has them."""
    named = [(name, m) for name, m in _named_metrics(results) if m.get("mase") is not None]
    if not named:
        return []
    extra = [k for k in ("wql", "coverage_80") if any(m.get(k) is not None for _, m in named)]
    cells = [("", "MASE [95% CI]", "sMAPE %", "MASE/seasonal naive [95% CI]", *extra)]
    cells += [(name, _with_ci(m, "mase"), _num(m.get("smape")), _with_ci(m, "mase_rel"),
               *(_num(m.get(k)) for k in extra)) for name, m in named]
    return ["  scale-free (ratio: geometric mean over systems of each one's ratio):",
            *_table(cells)]


def _paired_lines(results: Mapping[str, Any]) -> list[str]:
    """``LLM vs linear_ar: MSE diff ... [lo, hi]`` per baseline (paired bootstrap)."""
    rows = (results.get("paired") or {}).get("mse") or {}
    return [f"  LLM vs {name}: MSE diff {_num(c.get('mean'))} [{_num(c['ci'][0])}, "
            f"{_num(c['ci'][1])}] over {c.get('n')} systems (paired)"
            for name, c in sorted(rows.items())]


def _flops_line(results: Mapping[str, Any]) -> list[str]:
    flops = results.get("flops") or {}
    if not flops:
        return []
    budget, remaining = flops.get("budget"), flops.get("remaining")
    used = budget - remaining if budget is not None and remaining is not None else None
    return [f"  FLOPs: predicted {_flops(flops.get('predicted'))}, spent "
            f"{_flops(flops.get('spent'))}; study '{results.get('study')}' used {_flops(used)}, "
            f"{_flops(remaining)} left of {_flops(budget)}"]


def _next_steps(status: str, results: Mapping[str, Any], ctx: SummaryContext) -> Sequence[str]:
    study = results.get("study")
    budget_report = f"python -m lora_forecast.budget report --study {study}"
    if status == "completed":
        return [f"python -m lora_forecast.report {ctx.run_dir} --out report.md"]
    if status == "interrupted":
        return [f"{ctx.command} train.resume=auto hydra.run.dir={ctx.run_dir}"]
    if status in ("stopped_budget", "rejected"):
        return [budget_report, "then raise budget.max_flops, pick a new budget.study, or shrink "
                               "the run (add budget.dry_run=true to see its cost)"]
    if status == "failed":
        hint = f"read {ctx.log_file}, fix, and rerun" if ctx.log_file else "fix and rerun"
        return [f"{hint}: {ctx.command} (HYDRA_FULL_ERROR=1 shows the traceback)"]
    return []


def format_summary(results: Mapping[str, Any], ctx: SummaryContext) -> str:
    """The end-of-run summary printed on the console and written to the run's log.

    Args:
        results: the run's ``results.json`` content (status, end_reason, train, metrics,
            baselines, flops).
        ctx: the run directory, the rerun command, the monitored metric's name, the log file
            and the error (failed runs).

    Returns:
        Several lines, no trailing newline.
    """
    status = str(results.get("status", "failed"))
    end = results.get("end_reason")
    title = f"run {results.get('experiment')} {STATUS_WORDS.get(status, status)}"
    lines = [title + (f" (status {status}, end reason {end})" if end else f" (status {status})")]
    if ctx.error:
        lines.append(f"  error: {ctx.error}")
    train = results.get("train") or {}
    if train.get("best_metric") is not None:
        lines.append(f"  validation {ctx.monitor}: best {_num(train['best_metric'])} at step "
                     f"{train.get('best_step')} of {train.get('steps')}")
    if train.get("kept") == "untrained":
        lines.append(f"  compare_zero_shot: no adapter beat the untrained model "
                     f"({ctx.monitor} {_num(train['zero_shot_metric'])} at step 0): kept the "
                     "untrained model (best/ holds it; fine-tuning did not help)")
    elif train.get("kept") == "adapter":
        lines.append(f"  compare_zero_shot: the adapter beat the untrained model "
                     f"({_num(train['best_metric'])} < {_num(train['zero_shot_metric'])}): kept")
    lines += _metric_rows(results)
    lines += _field_rows(results)
    lines += _paired_lines(results)
    metrics = results.get("metrics") or {}
    if metrics:
        lines.append(f"  parse failures: {metrics.get('parse_failures', 0)} of "
                     f"{metrics.get('n_systems', '?')} forecasts")
    lines += _flops_line(results)
    lines.append(f"  run directory: {ctx.run_dir}")
    lines += [f"  next: {step}" for step in _next_steps(status, results, ctx)]
    return "\n".join(lines)
