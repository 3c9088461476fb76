"""Assemble ``report.md`` from run directories: read, draw figures, render, write.

:func:`render_report` is pure (inputs in, Markdown out); :func:`build_report` does the I/O
around it (loading runs, reading ledgers, writing figures and the file).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_forecast.budget.ledger import OPEN_STATUSES
from lora_forecast.budget.report import spend_of
from lora_forecast.report.collect import (
    LedgerRead,
    RunRecord,
    Sweep,
    group_sweeps,
    load_runs,
    read_ledger,
)
from lora_forecast.report.sweeps import context_table, grid_table, sweep_table, varying_keys
from lora_forecast.report.tables import (
    field_table,
    flops_by_experiment,
    fmt,
    fmt_flops,
    ledger_rows_from_runs,
    monitored,
    paired_table,
    result_rows,
    results_table,
    run_labels,
    sweep_name,
    trial_id,
)

__all__ = ["ReportInputs", "build_report", "render_report", "resolve_budget"]

LR_KEY, RANK_KEY, CONTEXT_KEY = "train.lr", "lora.rank", "data.context_tokens"
METRIC_BARS, ERROR_PER_STEP, FORECASTS = "metric_bars.png", "error_per_step.png", "forecasts.png"
FIELD_NOTE = (
    "Means over the test systems (95% bootstrap intervals). MASE: mean absolute error over "
    "the in-sample seasonal naive error (`eval.season_length`), per variable; sMAPE in %; "
    "MSIS and coverage of the 10%/90% band; WQL on the 0.1..0.9 quantiles of the samples. "
    "*x/SN*: geometric mean over systems of each system's ratio to seasonal naive (below 1: "
    "better than seasonal naive on a typical system).")
PAIRED_NOTE = (
    "The LLM minus each baseline on the same systems: mean per-system difference with a 95% "
    "paired bootstrap interval; an interval below 0 means the LLM has the lower error.")


@dataclass(frozen=True)
class ReportInputs:
    """Everything :func:`render_report` needs, already read from disk.

    Attributes:
        runs: loaded runs, in report order.
        sweeps: the sweeps among them.
        ledgers: what each ledger URL gave (rows or an error); empty = none known.
        budget: the study budget in FLOPs, or None if unknown.
        figures: ``{caption: path relative to the report}`` of the report's own figures.
        forecast_links: ``(run label, path relative to the report)`` of runs' forecast plots.
        sources: the paths the report was built from, as given.
    """

    runs: Sequence[RunRecord]
    sweeps: Sequence[Sweep]
    ledgers: Sequence[LedgerRead]
    budget: float | None
    figures: dict[str, str]
    forecast_links: Sequence[tuple[str, str]]
    sources: Sequence[str] = ()


def resolve_budget(
    cli: float | None, runs: Sequence[RunRecord], ledgers: Sequence[LedgerRead]
) -> float | None:
    """``--budget`` if given, else the runs' recorded budget, the ledger's, or the config's."""
    candidates = [cli]
    candidates += [r.get("flops.budget") for r in runs]
    candidates += [row.budget for read in ledgers for row in reversed(read.rows)]
    candidates += [r.get("config.budget.max_flops") for r in runs]
    return next((float(c) for c in candidates if c is not None), None)


def render_report(inputs: ReportInputs) -> str:
    """The whole report as Markdown (pure).

    Args:
        inputs: see :class:`ReportInputs`.

    Returns:
        Markdown text ending in a newline.
    """
    parts = [
        "# lora-forecast report",
        f"{len(inputs.runs)} run(s), {len(inputs.sweeps)} sweep(s), from: "
        + ", ".join(f"`{s}`" for s in inputs.sources),
        *_results_section(inputs),
        *_flops_section(inputs),
        *[block for sweep in inputs.sweeps for block in _sweep_section(sweep)],
        *_forecast_section(inputs.forecast_links),
    ]
    return "\n\n".join(parts) + "\n"


def _results_section(inputs: ReportInputs) -> list[str]:
    note = (
        "MSE and MAE over the scored test systems with 95% bootstrap intervals (systems "
        "resampled); *parse failures* are systems without a usable forecast, excluded from "
        "the errors and counted here. Baselines need no LLM and spend no model FLOPs."
    )
    out = ["## Results", results_table(result_rows(inputs.runs)), note]
    field = field_table(result_rows(inputs.runs))
    if field is not None:
        out += ["### Scale-free metrics", field, FIELD_NOTE]
    paired = paired_table(inputs.runs)
    if paired is not None:
        out += ["### Paired comparisons", paired, PAIRED_NOTE]
    out += [f"![{caption}]({path})" for caption, path in inputs.figures.items()]
    return out


def _flops_section(inputs: ReportInputs) -> list[str]:
    out = ["## FLOPs"]
    readable = [read for read in inputs.ledgers if read.error is None]
    for read in inputs.ledgers:
        if read.error is not None:
            out.append(f"Ledger `{read.url}` could not be read: {read.error}")
    if not readable:
        out.append(
            "From the runs' `results.json` (no ledger read; runs that never wrote "
            "results are missing):"
        )
        out.append(flops_by_experiment(ledger_rows_from_runs(inputs.runs), inputs.budget))
        return out
    for read in readable:
        for study in dict.fromkeys(row.study for row in read.rows):
            rows = [row for row in read.rows if row.study == study]
            out.append(f"### Study `{study}` (ledger `{read.url}`)")
            out.append(flops_by_experiment(rows, inputs.budget))
            out.append(_spend_line(rows, inputs.budget))
            per_run = _per_run_table([r for r in read.raw if r.study == study], inputs.budget)
            if per_run:
                out.append(f"<details><summary>per run</summary>\n\n{per_run}\n\n</details>")
    return out


def _spend_line(rows: Sequence[Any], budget: float | None) -> str:
    """Committed spend plus open reservations, against the budget (the ledger's arithmetic)."""
    open_ = [r for r in rows if r.status in OPEN_STATUSES]
    spend = spend_of(rows)
    committed, reserved = spend.committed, spend.reserved_open
    line = f"Spent {fmt_flops(committed)}"
    if open_:
        line += f" + {fmt_flops(reserved)} reserved by {len(open_)} open run(s)"
    if budget:
        used = committed + reserved
        line += (
            f" of the {fmt_flops(budget)} budget ({100 * used / budget:.2f}%); "
            f"remaining {fmt_flops(budget - used)}"
        )
    return line + "."


def _per_run_table(raw_rows: Sequence[Any], budget: float | None) -> str | None:
    """The budget module's own per-run Markdown table, when it can render these rows."""
    if not raw_rows or not budget:
        return None
    from lora_forecast.budget.report import format_table

    return format_table(raw_rows, budget, "markdown")


def _sweep_section(sweep: Sweep) -> list[str]:
    keys = varying_keys(sweep)
    labels = {i: f"#{trial_id(run)}" for i, run in enumerate(sweep.runs)}
    monitor = sweep.runs[0].get("config.train.monitor") or "monitored value"
    out = [
        f"## Sweep `{sweep_name(sweep.runs[0])}`",
        f"`{sweep.path}`: {len(sweep.runs)} trial(s); *monitored* is the best "
        f"`{monitor}` a trial reached (its test MSE where it has none).",
    ]
    summary = sweep.summary or {}
    if summary.get("best_params") is not None:
        params = ", ".join(f"`{k}={v}`" for k, v in summary["best_params"].items())
        out.append(
            f"Best trial (optimization_results.yaml): {params} -> {fmt(summary.get('best_value'))}"
        )
    out.append(sweep_table(sweep, keys, labels))
    if LR_KEY in keys and RANK_KEY in keys:
        out += [
            f"### Learning rate x rank: best {monitor}",
            grid_table(sweep, LR_KEY, RANK_KEY, monitored),
        ]
        if any(r.get("metrics.mse") is not None for r in sweep.runs):
            out += [
                "### Learning rate x rank: test MSE",
                grid_table(sweep, LR_KEY, RANK_KEY, lambda r: r.get("metrics.mse")),
            ]
    if CONTEXT_KEY in keys:
        out += ["### Context length", context_table(sweep, CONTEXT_KEY)]
    return out


def _forecast_section(links: Sequence[tuple[str, str]]) -> list[str]:
    if not links:
        return []
    return ["## Forecast plots", "\n".join(f"- {label}: [{path}]({path})" for label, path in links)]


def _figures(runs: Sequence[RunRecord], out_dir: Path) -> dict[str, str]:
    """Draw the metric-bar and error-per-step figures beside the report."""
    from lora_forecast.evaluation.plots import plot_error_per_step, plot_metric_bars

    rows = result_rows(runs)
    metrics = {row.label: row.metrics for row in rows if row.metrics}
    if not metrics:
        return {}
    plot_metric_bars(out_dir / METRIC_BARS, metrics, "mse")
    per_step = {label: m.get("mse_per_step") for label, m in metrics.items()}
    plot_error_per_step(out_dir / ERROR_PER_STEP, per_step)
    return {"Test MSE per run (95% CI)": METRIC_BARS, "MSE per forecast step": ERROR_PER_STEP}


def build_report(
    paths: Iterable[str | Path],
    out: str | Path = "report.md",
    *,
    ledger_url: str | None = None,
    budget: float | None = None,
) -> Path:
    """Read runs below ``paths``, write figures and ``out``; return the report's path.

    Args:
        paths: run directories (holding ``results.json``) or multirun directories.
        out: the Markdown file to write; figures go beside it.
        ledger_url: FLOPs ledger to read; None = every ``config.budget.ledger_url`` of the runs.
        budget: study budget in FLOPs; None = as recorded by the runs or the ledger.

    Returns:
        The path of the written report.
    """
    sources = [str(p) for p in paths]
    runs = load_runs(sources)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    urls = (
        [ledger_url]
        if ledger_url
        else list(
            dict.fromkeys(
                r.get("config.budget.ledger_url") for r in runs if r.get("config.budget.ledger_url")
            )
        )
    )
    studies = None if ledger_url else sorted({str(r.results.get("study")) for r in runs})
    ledgers = [read_ledger(url, studies) for url in urls]
    labels = run_labels(runs)
    links = [
        (labels[i], os.path.relpath(r.path / FORECASTS, out.parent))
        for i, r in enumerate(runs)
        if (r.path / FORECASTS).is_file()
    ]
    inputs = ReportInputs(
        runs,
        group_sweeps(runs),
        ledgers,
        resolve_budget(budget, runs, ledgers),
        _figures(runs, out.parent),
        links,
        sources,
    )
    out.write_text(render_report(inputs))
    return out
