"""The leaderboard (``python -m lora_forecast.benchmark``): scores worked by hand on the toy
suite, seasonal naive exactly 1, real statsmodels series, trained runs with their FLOPs and
leaks, and one-line errors that reserve and write nothing."""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import lora_forecast.benchmark.__main__ as benchmark_main
from lora_forecast.budget.ledger import Ledger
from lora_forecast.config import resolved_config
from lora_forecast.errors import ConfigError
from lora_forecast.task import run_task
from tests.conftest import CONF_DIR, SHRINK, subprocess_env


def _config(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    """The composed ``benchmark`` config (tiny model, no bars, outputs under ``tmp_path``)."""
    base = ["model=tiny", "progress=false", f"output_dir={tmp_path / 'outputs'}",
            f"out={tmp_path / 'lb'}", "eval.bootstrap=200"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return resolved_config(compose(config_name="benchmark", overrides=[*base, *overrides]))


def _table(out: Path) -> pd.DataFrame:
    """leaderboard.csv as (model, task, metric) -> value."""
    frame = pd.read_csv(out / "leaderboard.csv")
    return frame.set_index(["model", "task", "metric"])["value"]


def test_toy_scores_match_the_hand_worked_example(tmp_path: Path) -> None:
    # trend t + 1 and seasonal t + 4 (t mod 2), t = 0..11; season 2, horizon 2, windows at
    # steps 8 and 10. Seasonal naive repeats the last two values, persistence the last one:
    #   trend:    SN errors 2,2 | 2,2 -> WQL 8/42;  persistence 1,2 | 1,2 -> 6/42
    #   seasonal: SN errors 2,2 | 2,2 -> WQL 8/46;  persistence 3,2 | 3,2 -> 10/46
    # MASE scale (mean |y_t - y_{t-2}| of the context) is 2 on both: SN 1, persistence
    # (1 + 2) / 2 / 2 = 0.75 and (3 + 2) / 2 / 2 = 1.25.
    out = benchmark_main.benchmark(_config(tmp_path, "suite=toy", "zero_shot=false",
                                           "baselines=[seasonal_naive,persistence]"))
    v = _table(out)
    assert v["seasonal_naive", "trend", "wql"] == pytest.approx(8 / 42)
    assert v["persistence", "trend", "wql"] == pytest.approx(6 / 42)
    assert v["seasonal_naive", "seasonal", "wql"] == pytest.approx(8 / 46)
    assert v["persistence", "seasonal", "wql"] == pytest.approx(10 / 46)
    assert v["seasonal_naive", "trend", "mase"] == pytest.approx(1.0)
    assert v["persistence", "trend", "mase"] == pytest.approx(0.75)
    assert v["persistence", "seasonal", "mase"] == pytest.approx(1.25)
    for metric in ("wql", "mase"):
        assert v["persistence", "trend", f"{metric}_rel"] == pytest.approx(0.75)
        assert v["persistence", "seasonal", f"{metric}_rel"] == pytest.approx(1.25)
        gmean = v["persistence", "ALL", f"{metric}_rel_gmean"]
        assert gmean == pytest.approx(math.sqrt(0.75 * 1.25))
        low, high = (v["persistence", "ALL", f"{metric}_rel_ci_{s}"] for s in ("low", "high"))
        assert 0.75 - 1e-9 <= low <= gmean <= high <= 1.25 + 1e-9
        for task in ("trend", "seasonal", "ALL"):
            key = f"{metric}_rel" if task != "ALL" else f"{metric}_rel_gmean"
            assert v["seasonal_naive", task, key] == 1.0  # exactly, not approximately
    # one win each, ranks tied
    assert v["persistence", "ALL", "wql_win_rate"] == v["seasonal_naive", "ALL", "wql_win_rate"]
    assert v["persistence", "ALL", "wql_win_rate"] == 0.5
    assert v["persistence", "ALL", "wql_avg_rank"] == 1.5
    markdown = (out / "leaderboard.md").read_text()
    assert "| `persistence` | 0.750 | 1.250 |" in markdown
    assert (out / "pareto.png").stat().st_size > 0
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["config"]["suite"]["name"] == "toy"
    assert recorded["command"].startswith("python -m lora_forecast.benchmark rerun=")


def test_rerun_from_config_json_gives_the_same_leaderboard(tmp_path: Path) -> None:
    out = benchmark_main.benchmark(_config(tmp_path, "suite=toy", "zero_shot=false",
                                           "baselines=[seasonal_naive,theta]"))
    again = benchmark_main.benchmark(_config(tmp_path, f"rerun={out / 'config.json'}",
                                             f"out={tmp_path / 'again'}"))
    pd.testing.assert_frame_equal(pd.read_csv(out / "leaderboard.csv"),
                                  pd.read_csv(again / "leaderboard.csv"))


def _nile_last_window_wql(horizon: int) -> float:
    """Persistence's WQL on the Nile's last window, straight from statsmodels' data."""
    import statsmodels.datasets.nile as nile

    flow = np.asarray(nile.load().data["volume"], dtype=float)
    truth, last = flow[-horizon:], flow[-horizon - 1]
    return float(np.abs(truth - last).sum() / np.abs(truth).sum())


def test_statsmodels_suite_loads_real_series_and_seasonal_naive_is_one(tmp_path: Path) -> None:
    out = benchmark_main.benchmark(_config(tmp_path, "suite=statsmodels", "zero_shot=false",
                                           "baselines=[seasonal_naive,persistence]",
                                           "max_windows=1"))
    v = _table(out)
    tasks = [t for t in v.index.get_level_values("task").unique() if t != "ALL"]
    assert len(tasks) == 8
    for task in tasks:
        assert v["seasonal_naive", task, "wql_rel"] == 1.0
        assert v["seasonal_naive", task, "mase_rel"] == 1.0
    # the Nile has season 1: seasonal naive is persistence, and both match numpy on the raw data
    assert v["persistence", "nile", "wql_rel"] == 1.0
    assert v["persistence", "nile", "wql"] == pytest.approx(_nile_last_window_wql(6))
    markdown = (out / "leaderboard.md").read_text()
    assert "| macro_growth | `statsmodels:macrodata` | QS | 4 | 8 | 1 | 1 | infl, realint, " \
           "tbilrate, unemp |" in markdown


def test_a_dataset_the_package_lacks_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    out, ledger = tmp_path / "lb", tmp_path / "outputs" / "ledger.sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "lora_forecast.benchmark", "suite=toy", "model=tiny",
         "suite.tasks.1.source=statsmodels:no_such_data", f"output_dir={tmp_path / 'outputs'}",
         f"out={out}"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: suite.tasks.1.source: statsmodels:no_such_data: the "
                               "installed statsmodels ")
    assert lines[0].endswith("has no dataset 'no_such_data'")
    assert not out.exists() and not ledger.exists()


def _write_csv(path: Path, n_series: int = 30, steps: int = 30) -> Path:
    """Many short signed series (long layout): a noisy sine per series."""
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    rows = [(f"s{i}", int(k), float(np.sin(0.5 * k + i) * 2 + rng.normal(0, 0.1)))
            for i in range(n_series) for k in t]
    pd.DataFrame(rows, columns=["series_id", "time", "value"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained_on_csv(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run trained a few steps on a CSV of 30 short univariate series."""
    root = tmp_path_factory.mktemp("lb_run")
    csv = _write_csv(root / "series.csv")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *SHRINK, "data=table", f"data.path={csv}", f"output_dir={root / 'outputs'}",
            ])
    run_dir = root / "run"
    run_dir.mkdir()
    run_task(cfg, run_dir)
    return run_dir, csv


def _suite_with(config: dict[str, Any], csv: Path) -> dict[str, Any]:
    config["suite"] = {"name": "mine", "tasks": [
        {"name": "own", "source": str(csv), "freq": "YS", "season_length": 2, "horizon": 2,
         "n_windows": 1},
        {"name": "toy", "source": "toy:seasonal", "freq": "YS", "season_length": 2,
         "horizon": 2, "n_windows": 2},
        {"name": "two", "source": "statsmodels:interest_inflation", "freq": "QS",
         "season_length": 4, "horizon": 2, "n_windows": 1}]}
    config["budget"]["study"] = "benchmark-mine"  # as ${suite.name} resolves on the command line
    return config


def test_a_trained_run_is_scored_with_its_flops_and_its_leak_flagged(
        trained_on_csv, tmp_path: Path) -> None:
    run_dir, csv = trained_on_csv
    config = _suite_with(_config(tmp_path, f"models=[{run_dir}]", "baselines=[seasonal_naive]",
                                 "eval.num_samples=3", "eval.context_steps=8"), csv)
    out = benchmark_main.benchmark(config)
    v = _table(out)
    models = list(v.index.get_level_values("model").unique())
    run_label = next(m for m in models if m.endswith(" run"))
    zero_shot = next(m for m in models if m.startswith("zero-shot "))
    assert v[run_label, "own", "leak"] == 1.0 and v[run_label, "toy", "leak"] == 0.0
    # the univariate run forecasts the two-variable task one variable at a time
    assert v[run_label, "two", "imputed"] == 0.0 and v[run_label, "two", "flops_forecast"] > 0
    assert v[zero_shot, "own", "leak"] == 0.0
    assert "†" in (out / "leaderboard.md").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    kinds = results["flops"]["spent_by_kind"]
    assert v[run_label, "ALL", "flops_finetune"] == pytest.approx(
        kinds["training"] + kinds["validation"])
    assert v[zero_shot, "ALL", "flops_finetune"] == 0.0
    # every LLM forecast is in the ledger: one completed row per LLM, spent = its FLOPs column
    with Ledger(config["budget"]["ledger_url"]) as ledger:
        rows = {r.experiment: r for r in ledger.rows("benchmark-mine")}
    assert set(rows) == {f"benchmark:{run_label}", f"benchmark:{zero_shot}"}
    for label in (run_label, zero_shot):
        row = rows[f"benchmark:{label}"]
        assert row.status == "completed"
        forecast = sum(v[label, t, "flops_forecast"] for t in ("own", "toy", "two"))
        assert forecast > 0
        assert row.spent_flops == pytest.approx(forecast)
        assert row.spent_flops <= row.predicted_flops
        assert v[label, "ALL", "flops_forecast"] == pytest.approx(forecast)
    report = subprocess.run(
        [sys.executable, "-m", "lora_forecast.budget", "report", "--ledger",
         config["budget"]["ledger_url"], "--study", "benchmark-mine"],
        capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert f"benchmark:{run_label}" in report.stdout and "completed" in report.stdout


def test_leak_refuse_is_one_line_before_anything_is_reserved(trained_on_csv,
                                                             tmp_path: Path) -> None:
    run_dir, csv = trained_on_csv
    config = _suite_with(_config(tmp_path, f"models=[{run_dir}]", "leak=refuse",
                                 "baselines=[seasonal_naive]"), csv)
    with pytest.raises(ConfigError, match=r"^leak: default run trained on .*series\.csv \(series "):
        benchmark_main.benchmark(config)
    assert not (tmp_path / "lb").exists()
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()


def test_benchmark_modules_doctests_pass() -> None:
    import importlib

    for name in ("suite", "windows", "scores", "plot", "llm"):
        module = importlib.import_module(f"lora_forecast.benchmark.{name}")
        result = doctest.testmod(module, extraglobs={"np": np, "pd": pd})
        assert result.failed == 0 and result.attempted > 0, name


def test_channel_independent_rows_go_back_to_their_windows_and_variables() -> None:
    from lora_forecast.benchmark.llm import TaskPlan

    contexts = [np.arange(6.0).reshape(3, 2) + 10 * w for w in range(3)]  # 3 windows, [3, 2]
    for plan in (TaskPlan(None, None, [1, 0], None, independent=True),
                 TaskPlan(None, None, [1, 0], None)):
        rows = plan.rows(contexts)
        assert len(rows) == (6 if plan.independent else 3)
        outputs = np.stack(rows)[:, -2:]  # pretend each row forecasts its last 2 steps
        back = plan.to_task(outputs, 3)
        np.testing.assert_array_equal(back, np.stack([c[-2:] for c in contexts]))


def test_a_budget_refusal_reserves_spends_and_writes_nothing(tmp_path: Path) -> None:
    from lora_forecast.errors import BudgetExceededError

    config = _config(tmp_path, "suite=toy", "budget.max_flops=1000",
                     "baselines=[seasonal_naive]")
    with pytest.raises(BudgetExceededError):
        benchmark_main.benchmark(config)
    assert not (tmp_path / "lb").exists()
    with Ledger(config["budget"]["ledger_url"]) as ledger:
        study = config["budget"]["study"]
        assert study.startswith("benchmark-toy-")  # a study per benchmark run
        rows, spend = ledger.rows(study), ledger.study_spend(study)
    assert [r.status for r in rows] == ["rejected"]
    assert spend.committed == 0 and spend.reserved_open == 0


def test_an_exported_adapter_scores_as_its_run(trained_on_csv, tmp_path: Path) -> None:
    from lora_forecast.export import export_run

    run_dir, _ = trained_on_csv
    export = export_run(run_dir, tmp_path / "export", merge=False)
    info = json.loads((export / "lora_forecast.json").read_text())
    assert info["example_prompt"] == "0.25;0.27"  # one variable: one value per step
    config = _config(tmp_path, "suite=toy", f"models=[{run_dir},{export}]", "zero_shot=false",
                     "baselines=[seasonal_naive]", "eval.num_samples=3", "eval.context_steps=8")
    v = _table(benchmark_main.benchmark(config))
    from_export = v.xs("default export (export)", level="model")
    from_run = v.xs("default run", level="model")
    pd.testing.assert_series_equal(from_export, from_run)  # same weights, same forecasts
    assert from_run["trend", "flops_forecast"] > 0
