"""The end-of-run summary: the formatter on hand-made results, then real runs' console and log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lora_forecast.results import read_results
from lora_forecast.summary import SummaryContext, format_summary
from lora_forecast.task import run_task

RESULTS = {
    "experiment": "smoke",
    "study": "lv",
    "status": "completed",
    "end_reason": "early_stopped",
    "train": {"steps": 300, "best_metric": 0.8123, "best_step": 250},
    "metrics": {"mse": 0.0213, "mae": 0.0871, "r2": 0.9312, "mse_ci": [0.015, 0.029],
                "mae_ci": [0.07, 0.1], "n_systems": 8, "parse_failures": 1},
    "baselines": {"persistence": {"mse": 0.0416, "mae": 0.139, "r2": 0.099, "n_systems": 8,
                                  "mse_ci": [0.0064, 0.0768], "mae_ci": [0.0756, 0.2024]}},
    "flops": {"predicted": 4.0e14, "spent": 3.0e14, "budget": 1.0e17, "remaining": 9.0e16},
}


def _summary(status: str = "completed", **ctx: str) -> list[str]:
    results = {**RESULTS, "status": status}
    context = SummaryContext(run_dir="outputs/runs/smoke/t", command="python -m lora_forecast x=1",
                             **ctx)
    return format_summary(results, context).splitlines()


def test_completed_summary_has_every_number_next_to_its_baseline() -> None:
    lines = _summary()
    assert lines[0] == "run smoke finished (status completed, end reason early_stopped)"
    assert "  validation val/loss: best 0.8123 at step 250 of 300" in lines
    run = next(line for line in lines if line.strip().startswith("this run"))
    base = next(line for line in lines if line.strip().startswith("persistence"))
    assert run.split() == ["this", "run", "0.0213", "[0.015,", "0.029]", "0.0871", "[0.07,",
                           "0.1]", "0.9312"]
    assert base.split()[1:4] == ["0.0416", "[0.0064,", "0.0768]"]
    assert run.index("[0.015") == base.index("[0.0064")  # same column
    assert "  parse failures: 1 of 8 forecasts" in lines
    # used = budget - remaining = 1e17 - 9e16, computed by hand
    assert ("  FLOPs: predicted 4.000e+14, spent 3.000e+14; study 'lv' used 1.000e+16, "
            "9.000e+16 left of 1.000e+17") in lines
    assert "  run directory: outputs/runs/smoke/t" in lines
    assert lines[-1] == ("  next: python -m lora_forecast.report outputs/runs/smoke/t "
                         "--out report.md")


@pytest.mark.parametrize(("status", "next_step"), [
    ("interrupted",
     "python -m lora_forecast x=1 train.resume=auto hydra.run.dir=outputs/runs/smoke/t"),
    ("stopped_budget", "python -m lora_forecast.budget report --study lv"),
    ("rejected", "python -m lora_forecast.budget report --study lv"),
    ("failed", "read run.log, fix, and rerun: python -m lora_forecast x=1"),
])
def test_unfinished_runs_say_what_happened_and_what_to_run_next(status, next_step) -> None:
    lines = _summary(status, log_file="run.log", error="boom" if status == "failed" else None)
    assert lines[0].startswith("run smoke ") and f"(status {status}," in lines[0]
    assert any(line.startswith(f"  next: {next_step}") for line in lines), lines
    assert ("  error: boom" in lines) == (status == "failed")


def test_a_real_run_ends_with_the_summary_on_the_console_and_in_its_log(
    compose_cfg, run_dir: Path, capsys
) -> None:
    log_file = run_dir / "job.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    try:
        run_task(compose_cfg(), run_dir)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    out = capsys.readouterr().out
    results = read_results(run_dir)
    summary = out[out.index("run default "):].strip().splitlines()
    assert summary[0] == (f"run default finished (status completed, end reason "
                          f"{results['end_reason']})")
    llm = next(line for line in summary if line.strip().startswith("this run")).split()
    assert float(llm[2]) == pytest.approx(results["metrics"]["mse"], rel=1e-3)
    assert float(llm[-1]) == pytest.approx(results["metrics"]["r2"], rel=1e-3)
    assert any(line.strip().startswith("persistence") for line in summary)
    assert f"  run directory: {run_dir}" in summary
    assert "\n".join(summary) in log_file.read_text()  # the same text, in the run's log


def test_a_rejected_run_says_so_and_names_the_budget_report(
    compose_cfg, run_dir: Path, capsys
) -> None:
    with pytest.raises(SystemExit):
        run_task(compose_cfg("budget.max_flops=1000", "budget.study=tight"), run_dir)
    captured = capsys.readouterr()
    assert "(status rejected, end reason rejected)" in captured.out
    assert "  next: python -m lora_forecast.budget report --study tight" in captured.out
    assert len(captured.err.strip().splitlines()) == 1  # the error itself stays one line


FIELD_RESULTS = {
    **RESULTS,
    "metrics": {**RESULTS["metrics"], "mase": 0.8, "mase_ci": [0.6, 1.1], "smape": 12.5,
                "mase_rel": 0.5, "mase_rel_ci": [0.4, 0.7], "wql": 0.05},
    "baselines": {"persistence": {**RESULTS["baselines"]["persistence"], "mase": 1.6,
                                  "smape": 20.0, "mase_rel": 1.0, "mase_rel_ci": [1.0, 1.0]}},
    "paired": {"mse": {"persistence": {"mean": -0.0203, "ci": [-0.031, -0.0101], "n": 7}}},
}


def test_summary_shows_the_field_metrics_and_the_paired_difference() -> None:
    context = SummaryContext(run_dir="outputs/runs/smoke/t")
    lines = format_summary(FIELD_RESULTS, context).splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  scale-free"))
    assert lines[head + 1].split() == ["MASE", "[95%", "CI]", "sMAPE", "%",
                                       "MASE/seasonal", "naive", "[95%", "CI]", "wql"]
    assert lines[head + 2].split() == ["this", "run", "0.8", "[0.6,", "1.1]", "12.5", "0.5",
                                       "[0.4,", "0.7]", "0.05"]
    assert lines[head + 3].split() == ["persistence", "1.6", "20", "1", "[1,", "1]", "n/a"]
    assert ("  LLM vs persistence: MSE diff -0.0203 [-0.031, -0.0101] over 7 systems (paired)"
            in lines)


def test_summary_without_field_metrics_is_unchanged() -> None:
    lines = _summary()
    assert not any(line.startswith(("  scale-free", "  LLM vs")) for line in lines)
