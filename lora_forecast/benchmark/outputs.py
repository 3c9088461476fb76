"""The benchmark's files: ``leaderboard.csv``, ``leaderboard.md``, ``pareto.png`` and
``config.json`` (the resolved config and the command that reruns it), written together."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from lora_forecast.benchmark.table import long_frame, metric_frame, summary_frame
from lora_forecast.config import Settings
from lora_forecast.evaluation.scoring import REFERENCE
from lora_forecast.job import atomic_directory
from lora_forecast.results import json_ready

__all__ = ["PLOT_FILE", "write_leaderboard"]

PLOT_FILE = "pareto.png"


def write_leaderboard(out: Path, job: Any, settings: Settings, config: dict[str, Any],
                      results: Any) -> Path:
    """Write every file into a temporary folder renamed to ``out`` when complete."""
    from lora_forecast.benchmark.plot import plot_pareto

    ev = settings.eval
    summary = summary_frame(results, ev.bootstrap, ev.seed)
    with atomic_directory(out) as tmp:
        long_frame(results, ev.bootstrap, ev.seed).to_csv(tmp / "leaderboard.csv", index=False)
        (tmp / "leaderboard.md").write_text(markdown(job, settings, results, summary))
        plot_pareto(tmp / PLOT_FILE, summary, set(job.baselines), job.suite.name)
        payload = {"command": rerun_command(out), "config": config}
        (tmp / "config.json").write_text(json.dumps(json_ready(payload), indent=2))
    return out


def rerun_command(out: Path) -> str:
    """``python -m lora_forecast.benchmark rerun=<this config.json> out=<new folder>``."""
    return (f"python -m lora_forecast.benchmark rerun={out / 'config.json'} "
            f"out={out}-rerun")


def _num(value: float, fmt: str = ".3f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, fmt)


def _flops(value: float) -> str:
    return "0" if value == 0 else f"{value:.2e}"


def markdown(job: Any, settings: Settings, results: Any, summary: pd.DataFrame) -> str:
    """The leaderboard, the relative WQL per task, and how it was computed."""
    lines = [f"# Leaderboard: suite `{job.suite.name}`", "",
             f"Scores relative to {REFERENCE} (below 1 beats it): geometric mean over "
             f"{len(results.tasks)} tasks, 95% bootstrap interval over tasks; win rate and "
             "average rank on WQL. FLOPs: fine-tuning (from the run) + forecasting in this run; "
             "classical models' CPU fits are not counted (0).", "",
             "| # | model | WQL rel (95% CI) | MASE rel (95% CI) | win rate | avg rank | "
             "FLOPs total | fine-tune | forecast | imputed | leak |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rank, (comp, r) in enumerate(summary.iterrows(), start=1):
        cells = [str(rank), f"`{comp}`",
                 f"{_num(r.wql_rel_gmean)} ({_num(r.wql_rel_ci_low)}-{_num(r.wql_rel_ci_high)})",
                 f"{_num(r.mase_rel_gmean)} ({_num(r.mase_rel_ci_low)}-"
                 f"{_num(r.mase_rel_ci_high)})",
                 _num(r.wql_win_rate, ".2f"), _num(r.wql_avg_rank, ".2f"),
                 _flops(r.flops_total), _flops(r.flops_finetune), _flops(r.flops_forecast),
                 str(int(r.tasks_imputed)), "yes" if r.tasks_leaked else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_per_task(results, summary.index), "", *_notes(job, settings, results)]
    return "\n".join(lines) + "\n"


def _per_task(results: Any, order: pd.Index) -> list[str]:
    values, missing = metric_frame(results, "wql")
    rel = values.div(values.loc[REFERENCE], axis=1)
    names = [t.name for t in results.tasks]
    lines = ["## WQL relative to seasonal naive, per task", "",
             "| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for comp in order:
        cells = []
        for task in names:
            leak = "†" if task in results.leaks.get(comp, []) else ""
            cells.append("imputed" if missing.loc[comp, task]
                         else _num(rel.loc[comp, task]) + leak)
        lines.append(f"| `{comp}` | " + " | ".join(cells) + " |")
    return [*lines, "", "imputed: could not forecast the task (seasonal naive's score used); "
            "†: trained on the task's series (leak)."]


def _notes(job: Any, settings: Settings, results: Any) -> list[str]:
    ev = settings.eval
    lines = ["## Tasks", "", "| task | source | freq | season | horizon | windows | series | "
             "variables | note |", "|---|---|---|---|---|---|---|---|---|"]
    for task in results.tasks:
        c = task.config
        lines.append(f"| {c.name} | `{c.source}` | {c.freq} | {c.season_length} | {c.horizon} "
                     f"| {len(task.windows) // len(task.series)} | {len(task.series)} | "
                     f"{', '.join(task.series.variables)} | {c.note} |")
    lines += ["", f"Every competitor sees the same {ev.context_steps} steps of history "
              f"(`eval.context_steps`) before each rolling origin. LLMs: {ev.num_samples} "
              f"samples per window (temperature {ev.temperature}, top-p {ev.top_p}), WQL on "
              "their 0.1..0.9 quantiles; statsforecast models: their central intervals; "
              "other baselines: point forecasts scored as a point mass."]
    for comp, reasons in results.skipped.items():
        for task, reason in reasons.items():
            lines.append(f"- `{comp}` did not forecast {task}: {reason}")
    return lines
