"""The report built from real run directories of tiny runs sharing one ledger."""

from __future__ import annotations

import json
from pathlib import Path

from lora_forecast.budget.ledger import Ledger
from lora_forecast.report.build import build_report
from lora_forecast.task import run_task


def test_report_from_tiny_runs_has_metrics_baselines_flops_and_figures(
    compose_cfg, tmp_path: Path
) -> None:
    runs = {}
    for experiment in ("smoke", "baselines"):
        run_dir = tmp_path / experiment
        run_dir.mkdir()
        cfg = compose_cfg(f"+experiment={experiment}", "train.max_steps=2", "budget.study=s")
        run_task(cfg, run_dir)
        runs[experiment] = json.loads((run_dir / "results.json").read_text())
    ledger_url = runs["smoke"]["config"]["budget"]["ledger_url"]

    report = build_report([tmp_path / "smoke", tmp_path / "baselines"], tmp_path / "report.md")

    text = report.read_text()
    assert "smoke" in text and "baselines" in text and "persistence" in text
    assert f"{runs['smoke']['metrics']['mse']:.4g}"[:5] in text
    with Ledger(ledger_url, create=False) as ledger:
        spent = {row.experiment: row.spent_flops for row in ledger.rows("s")}
    assert spent["smoke"] == runs["smoke"]["flops"]["spent"] > 0
    assert f"{spent['smoke']:.3e}" in text  # the FLOPs table comes from the ledger
    assert (tmp_path / "metric_bars.png").stat().st_size > 0
    assert "forecasts.png" in text
