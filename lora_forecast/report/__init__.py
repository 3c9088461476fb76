"""The study report: runs x metrics, FLOPs per experiment, sweep grids and figures.

``python -m lora_forecast.report PATH... [--out report.md] [--ledger URL] [--budget FLOPS]``;
in code, :func:`build_report`. Tables are pure functions in :mod:`lora_forecast.report.tables`.
"""

from lora_forecast.report.build import ReportInputs, build_report, render_report
from lora_forecast.report.collect import RunRecord, Sweep, group_sweeps, load_runs

__all__ = [
    "ReportInputs",
    "RunRecord",
    "Sweep",
    "build_report",
    "group_sweeps",
    "load_runs",
    "render_report",
]
