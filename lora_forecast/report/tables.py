"""Markdown tables from loaded runs: pure functions, no file access.

Numbers are shown with 4 significant digits, FLOPs in scientific notation, missing values as
an em dash, and confidence intervals as ``value [low, high]``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lora_forecast.report.collect import LedgerRow, RunRecord

__all__ = [
    "ResultRow",
    "field_table",
    "flops_by_experiment",
    "fmt",
    "ledger_rows_from_runs",
    "markdown_table",
    "monitored",
    "paired_table",
    "result_rows",
    "results_table",
    "run_labels",
    "sweep_name",
    "trial_id",
]

DASH = "—"


def fmt(value: Any, digits: int = 4) -> str:
    """A cell: floats to ``digits`` significant digits, None/NaN to an em dash.

    Example:
        >>> fmt(0.016912), fmt(None), fmt(3), fmt("x")
        ('0.01691', '—', '3', 'x')
    """
    if value is None or (isinstance(value, float) and value != value):
        return DASH
    if isinstance(value, bool | int | str):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_ci(value: Any, ci: Sequence[Any] | None) -> str:
    """``0.0169 [0.012, 0.023]``; the bracket is left out when the interval is missing."""
    if value is None:
        return DASH
    if not ci or any(c is None for c in ci):
        return fmt(value)
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def fmt_flops(value: float | None) -> str:
    return DASH if value is None else f"{value:.3e}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` holds one ``l``/``r`` per column (default left).

    Example:
        >>> print(markdown_table(["a", "b"], [["1", "2"]], "lr"))
        | a | b |
        |---|---:|
        | 1 | 2 |
    """
    rule = "|" + "|".join("---:" if align[i : i + 1] == "r" else "---" for i in range(len(header)))
    lines = ["| " + " | ".join(line) + " |" for line in [header, *rows]]
    return "\n".join([lines[0], rule + "|", *lines[1:]])


def monitored(run: RunRecord) -> float | None:
    """The value a sweep optimised: ``train.best_metric`` (or ``best_val_loss``), else test MSE."""
    for key in ("train.best_metric", "train.best_val_loss", "metrics.mse"):
        value = run.get(key)
        if value is not None:
            return float(value)
    return None


def sweep_name(run: RunRecord) -> str:
    """The sweep a run belongs to: the Optuna study name, else the sweep directory's name."""
    name = run.get("config.trial.study_name")
    return str(name) if name else (run.sweep_dir.name if run.sweep_dir else "")


def trial_id(run: RunRecord) -> str:
    """The trial number the sweeper gave the run, else its directory name (Hydra's job num)."""
    number = run.get("config.trial.number")
    return str(number) if number is not None else run.path.name


def run_labels(runs: Sequence[RunRecord]) -> dict[int, str]:
    """A short label per run (keyed by position): the experiment, made unique when several
    runs share it by ``[sweep #trial]`` for sweep members or ``[run directory]`` otherwise."""
    base = [str(r.results.get("experiment") or r.path.name) for r in runs]
    counts = Counter(base)
    labels = {}
    for i, (run, name) in enumerate(zip(runs, base, strict=True)):
        if counts[name] == 1:
            labels[i] = name
        elif run.sweep_dir is not None:
            labels[i] = f"{name} [{sweep_name(run)} #{trial_id(run)}]"
        else:
            labels[i] = f"{name} [{run.path.name}]"
    return labels


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table: a run or a baseline."""

    label: str
    experiment: str
    status: str
    metrics: Mapping[str, Any] | None
    flops_spent: float | None
    run_id: str = ""


def result_rows(runs: Sequence[RunRecord]) -> list[ResultRow]:
    """Run rows in the given order, then one row per distinct baseline result.

    Baselines scored identically by several runs (same windows, same numbers) appear once; a
    baseline that differs between runs (e.g. other context lengths) gets the run's label.
    """
    labels = run_labels(runs)
    rows = [
        ResultRow(
            labels[i],
            str(r.results.get("experiment") or DASH),
            str(r.results.get("status") or DASH),
            r.metrics,
            r.get("flops.spent"),
            str(r.results.get("run_id") or "")[:8],
        )
        for i, r in enumerate(runs)
    ]
    seen: dict[str, list[tuple[str, Mapping[str, Any], str]]] = {}
    for i, run in enumerate(runs):
        for name, metrics in (run.results.get("baselines") or {}).items():
            key = json.dumps(metrics, sort_keys=True)
            variants = seen.setdefault(name, [])
            if all(k != key for k, _, _ in variants):
                variants.append((key, metrics, labels[i]))
    for name, variants in seen.items():
        for _, metrics, origin in variants:
            label = f"baseline: {name}" + (f" (eval of {origin})" if len(variants) > 1 else "")
            rows.append(ResultRow(label, DASH, "baseline", metrics, 0.0))
    return rows


def results_table(rows: Sequence[ResultRow]) -> str:
    """Runs x metrics: MSE and MAE with 95% CI, R2, systems scored, parse failures, FLOPs;
    plus CRPS and 80%-band coverage columns when any row was scored from samples."""
    probabilistic = any((row.metrics or {}).get("crps") is not None for row in rows)
    extra = ["CRPS", "80% coverage"] if probabilistic else []
    header = ["run", "experiment", "status", "MSE [95% CI]", "MAE [95% CI]", "R²", *extra,
              "systems", "parse failures", "FLOPs spent"]  # fmt: skip
    body = []
    for row in rows:
        m = row.metrics or {}
        label = f"{row.label} (`{row.run_id}`)" if row.run_id else row.label
        cells = [fmt(m.get("crps")), fmt(m.get("coverage_80"))] if probabilistic else []
        body.append([label, row.experiment, row.status, fmt_ci(m.get("mse"), m.get("mse_ci")),
                     fmt_ci(m.get("mae"), m.get("mae_ci")), fmt(m.get("r2")), *cells,
                     fmt(m.get("n_systems")), fmt(m.get("parse_failures")),
                     fmt_flops(row.flops_spent)])  # fmt: skip
    return markdown_table(header, body, "lllllr" + "r" * len(extra) + "rrr")


FIELD_COLUMNS = (("MASE", "mase"), ("sMAPE %", "smape"), ("MSIS", "msis"), ("WQL", "wql"),
                 ("80% coverage", "coverage_80"))
RELATIVE_COLUMNS = (("MASE", "mase_rel"), ("MAE", "mae_rel"), ("WQL", "wql_rel"),
                    ("CRPS", "crps_rel"))


def field_table(rows: Sequence[ResultRow]) -> str | None:
    """Runs x the field's scale-free metrics: mean MASE, sMAPE, MSIS, WQL, coverage over the
    test series (95% CI where bootstrapped) and each metric's geometric mean of per-series
    ratios to seasonal naive (``x/SN``); columns nobody has are left out. None when no row
    has them (runs from before these metrics)."""
    rows = [row for row in rows if (row.metrics or {}).get("mase") is not None]
    if not rows:
        return None
    cols = [(f"{title} x/SN [95% CI]" if key.endswith("_rel") else title, key)
            for title, key in (*FIELD_COLUMNS, *RELATIVE_COLUMNS)
            if any((row.metrics or {}).get(key) is not None for row in rows)]
    body = [[row.label, *(fmt_ci(m.get(key), m.get(f"{key}_ci")) for _, key in cols)]
            for row in rows for m in [row.metrics or {}]]
    return markdown_table(["run", *(title for title, _ in cols)], body, "l" + "r" * len(cols))


def paired_table(runs: Sequence[RunRecord]) -> str | None:
    """Each run's LLM minus each of its baselines, per series, for MSE, MAE and MASE: the mean
    difference with its 95% paired bootstrap interval (results' ``paired`` block). None when
    no run holds one."""
    labels = run_labels(runs)
    body = []
    for i, run in enumerate(runs):
        paired = run.results.get("paired") or {}
        names = dict.fromkeys(name for block in paired.values() for name in block)
        for name in names:
            cells = [_paired_cell((paired.get(metric) or {}).get(name))
                     for metric in ("mse", "mae", "mase")]
            n = next((c["n"] for b in paired.values() if (c := b.get(name))), None)
            body.append([labels[i], name, *cells, fmt(n)])
    if not body:
        return None
    header = ["run", "vs baseline", "MSE diff [95% CI]", "MAE diff [95% CI]",
              "MASE diff [95% CI]", "systems"]
    return markdown_table(header, body, "llrrrr")


def _paired_cell(comparison: Mapping[str, Any] | None) -> str:
    if not comparison:
        return DASH
    return fmt_ci(comparison.get("mean"), comparison.get("ci"))


def ledger_rows_from_runs(runs: Sequence[RunRecord]) -> list[LedgerRow]:
    """Ledger-like rows from the runs' own ``flops`` blocks (when no ledger is available)."""
    return [
        LedgerRow(
            str(r.results.get("study") or DASH),
            str(r.results.get("experiment") or DASH),
            str(r.results.get("run_id") or r.path.name),
            str(r.results.get("status")),
            float(r.get("flops.predicted") or 0.0),
            float(r.get("flops.spent") or 0.0),
            r.get("flops.budget"),
        )
        for r in runs
    ]


def flops_by_experiment(rows: Sequence[LedgerRow], budget: float | None) -> str:
    """FLOPs per experiment and in total, as a share of the budget.

    Predicted FLOPs of rejected runs are left out (they never ran); spent FLOPs are summed over
    every row. Experiments keep the order in which they first appear.

    Args:
        rows: ledger rows (or :func:`ledger_rows_from_runs`).
        budget: the study's budget in FLOPs; None leaves the percentage column empty.

    Returns:
        A Markdown table with a bold total row.
    """
    groups: dict[str, list[LedgerRow]] = {}
    for row in rows:
        groups.setdefault(row.experiment, []).append(row)

    def pct(flops: float) -> str:
        return f"{100.0 * flops / budget:.2f}" if budget else DASH

    body = []
    for experiment, members in groups.items():
        statuses = Counter(m.status for m in members)
        spent = sum(m.spent_flops for m in members)
        predicted = sum(m.predicted_flops for m in members if m.status != "rejected")
        body.append(
            [
                experiment,
                str(len(members)),
                ", ".join(f"{n} {s}" for s, n in statuses.items()),
                fmt_flops(predicted),
                fmt_flops(spent),
                pct(spent),
            ]
        )
    total = sum(r.spent_flops for r in rows)
    predicted = sum(r.predicted_flops for r in rows if r.status != "rejected")
    body.append(
        [
            "**total**",
            f"**{len(rows)}**",
            "",
            f"**{fmt_flops(predicted)}**",
            f"**{fmt_flops(total)}**",
            f"**{pct(total)}**",
        ]
    )
    header = ["experiment", "runs", "status", "predicted FLOPs", "spent FLOPs", "% of budget"]
    return markdown_table(header, body, "lrlrrr")
