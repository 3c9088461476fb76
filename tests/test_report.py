"""The report, built from realistic run directories and a real SQLite ledger in tmp_path.

Expected cells are written out by hand from the numbers put into the fake runs below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_forecast.budget import Ledger
from lora_forecast.report.__main__ import main
from lora_forecast.report.build import build_report
from lora_forecast.report.collect import LedgerRow, RunRecord, Sweep, load_runs
from lora_forecast.report.sweeps import grid_table
from lora_forecast.report.tables import (
    ResultRow,
    flops_by_experiment,
    fmt,
    markdown_table,
    results_table,
)

BUDGET = 1e17
BASELINES = {
    "persistence": {
        "mse": 0.3,
        "mae": 0.4,
        "r2": -0.1,
        "mse_ci": [0.25, 0.35],
        "mae_ci": [0.35, 0.45],
        "mse_per_step": [0.1, 0.3, 0.5],
        "n_systems": 10,
        "parse_failures": 0,
    },
    "linear_ar": {
        "mse": 0.2,
        "mae": 0.3,
        "r2": 0.2,
        "mse_ci": [0.15, 0.25],
        "mae_ci": [0.25, 0.35],
        "mse_per_step": [0.05, 0.2, 0.35],
        "n_systems": 10,
        "parse_failures": 0,
    },
}


def metrics(mse: float, lo: float, hi: float) -> dict[str, Any]:
    return {
        "mse": mse,
        "mae": 0.3,
        "r2": 0.25,
        "mse_ci": [lo, hi],
        "mae_ci": [0.28, 0.33],
        "mse_per_variable": [mse, mse],
        "mse_per_step": [mse / 2, mse, 1.5 * mse],
        "n_systems": 9,
        "parse_failures": 1,
    }


def write_run(
    run_dir: Path,
    *,
    experiment: str,
    spent: float,
    run_id: str,
    ledger_url: str | None,
    lr: float = 1e-5,
    rank: int = 4,
    context: int = 512,
    status: str = "completed",
    best: float | None = None,
    run_metrics: dict[str, Any] | None = None,
    trial: int | None = None,
) -> None:
    config = {
        "experiment": experiment,
        "model": {"name": "qwen2.5-0.5b-instruct"},
        "lora": {"rank": rank, "alpha": None, "target_modules": ["q_proj", "v_proj"]},
        "data": {"context_tokens": context, "alpha": 10.0, "decimals": 2},
        "train": {"lr": lr, "max_steps": 1500, "monitor": "val/loss", "seed": 0},
        "budget": {"max_flops": BUDGET, "study": "lv", "ledger_url": ledger_url},
        "trial": {
            "storage": None,
            "study_name": "lv-lr_rank" if trial is not None else None,
            "number": trial,
        },
        "output_dir": str(run_dir.parent),
    }
    results = {
        "run_id": run_id,
        "experiment": experiment,
        "study": "lv",
        "status": status,
        "end_reason": "early_stopped" if status == "completed" else status,
        "config_digest": "0" * 64,
        "config": config,
        "train": {"steps": 700, "best_metric": best, "history": []},
        "metrics": run_metrics,
        "baselines": BASELINES,
        "flops": {
            "predicted": 2 * spent,
            "spent": spent,
            "accounting": "exact",
            "budget": BUDGET,
            "remaining": None,
            "breakdown": {},
        },
    }
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))


@pytest.fixture
def study(tmp_path: Path) -> dict[str, Any]:
    """Baseline and default runs, a 2 x 2 lr x rank sweep (one trial pruned), a context sweep
    and a rejected run, all settled in one SQLite ledger."""
    out = tmp_path / "outputs"
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    runs: list[tuple[Path, dict[str, Any]]] = [
        (
            out / "runs/baseline/t0",
            dict(experiment="baseline", spent=1e15, run_metrics=metrics(0.2747, 0.2, 0.35)),
        ),
        (
            out / "runs/default/t1",
            dict(
                experiment="default", spent=2e16, best=0.9, run_metrics=metrics(0.0889, 0.05, 0.12)
            ),
        ),
        (out / "runs/rejected/t2", dict(experiment="final", spent=0.0, status="rejected")),
    ]
    sweep = out / "multirun/lr_rank/s0"
    grid = [
        (1e-5, 4, 0.8, 0.06),
        (1e-5, 8, 0.7, 0.05),
        (5e-5, 4, 0.6, None),
        (5e-5, 8, 0.5, 0.0444),
    ]  # lr, rank, best val loss, test MSE (None: pruned)
    for i, (lr, rank, best, mse) in enumerate(grid):
        runs.append(
            (
                sweep / str(i),
                dict(
                    experiment="search",
                    spent=5e15,
                    lr=lr,
                    rank=rank,
                    best=best,
                    trial=i,
                    status="completed" if mse is not None else "pruned",
                    context=320,
                    run_metrics=metrics(mse, mse / 2, mse * 2) if mse is not None else None,
                ),
            )
        )
    (sweep.parent).mkdir(parents=True)
    context_sweep = out / "multirun/context/s1"
    for i, (context, best) in enumerate([(128, 0.6), (512, 0.4), (768, 0.45)]):
        runs.append(
            (
                context_sweep / str(i),
                dict(
                    experiment="search",
                    spent=1e16,
                    lr=5e-5,
                    rank=8,
                    context=context,
                    best=best,
                    run_metrics=metrics(best / 10, best / 20, best / 5),
                ),
            )
        )
    with Ledger(url) as ledger:
        for run_dir, fields in runs:
            status = fields.get("status", "completed")
            spent = fields["spent"]
            reservation = ledger.reserve(
                study="lv",
                experiment=fields["experiment"],
                config_digest="0" * 64,
                accounting="exact",
                predicted=2 * spent if status != "rejected" else 2e17,
                budget=BUDGET,
            )
            if status != "rejected":
                ledger.start(reservation.run_id)
                ledger.finish(reservation.run_id, status, spent)
            write_run(run_dir, run_id=reservation.run_id, ledger_url=url, **fields)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "optimization_results.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "budgeted_optuna",
                "best_params": {"train.lr": 5e-5, "lora.rank": 8},
                "best_value": 0.5,
                "trials": [
                    {"number": i, "state": "COMPLETE", "params": {"train.lr": lr, "lora.rank": r}}
                    for i, (lr, r, _, _) in enumerate(grid)
                ],
            },
            sort_keys=False,
        )
    )
    (context_sweep / "multirun.yaml").write_text("hydra: {}\n")
    (out / "runs/default/t1/forecasts.png").write_bytes(b"\x89PNG fake")
    return {"out": out, "url": url, "tmp": tmp_path}


def test_report_tables_from_runs_and_ledger(study: dict[str, Any]) -> None:
    report = build_report([study["out"]], study["tmp"] / "rep" / "report.md")
    text = report.read_text()
    lines = text.split("<details>")[0].splitlines()  # before the ledger's own per-run table

    def row(prefix: str) -> str:
        found = [line for line in lines if line.startswith(prefix)]
        assert len(found) == 1, (prefix, found)
        return found[0]

    # results: the MSE cell is "value [low, high]"; R2, systems, parse failures, FLOPs spent
    baseline = row("| baseline (`")
    assert "| 0.2747 [0.2, 0.35] | 0.3 [0.28, 0.33] | 0.25 | 9 | 1 | 1.000e+15 |" in baseline
    # baselines scored identically by every run appear once, with no FLOPs
    assert row("| baseline: persistence |").endswith(
        "| 0.3 [0.25, 0.35] | 0.4 [0.35, 0.45] | -0.1 | 10 | 0 | 0.000e+00 |"
    )
    assert "| final (`" in text and "| rejected |" in row("| final (`")
    assert "CRPS" not in text  # greedy runs only: no probabilistic columns
    # FLOPs per experiment from the ledger: baseline 1e15 = 1% of 1e17; search: 4 x 5e15 +
    # 3 x 1e16 = 5e16 = 50%; total 1e15 + 2e16 + 5e16 = 7.1e16 = 71%. The rejected run's
    # 2e17 prediction is left out of the predicted total (2e15 + 4e16 + 1e17 = 1.42e17).
    assert row("| baseline | 1 |") == (
        "| baseline | 1 | 1 completed | 2.000e+15 | 1.000e+15 | 1.00 |"
    )
    assert row("| search | 7 |") == (
        "| search | 7 | 6 completed, 1 pruned | 1.000e+17 | 5.000e+16 | 50.00 |"
    )
    assert row("| final | 1 |").endswith("| 1 rejected | 0.000e+00 | 0.000e+00 | 0.00 |")
    assert row("| **total** |") == (
        "| **total** | **10** |  | **1.420e+17** | **7.100e+16** | **71.00** |"
    )
    assert "Spent 7.100e+16 of the 1.000e+17 budget (71.00%); remaining 2.900e+16." in text
    assert "<details><summary>per run</summary>" in text  # the ledger's own per-run table


def test_report_sweep_grids_and_figures(study: dict[str, Any]) -> None:
    report = build_report([study["out"]], study["tmp"] / "rep" / "report.md")
    text = report.read_text()
    # lr x rank grid of the best validation loss; the best cell (5e-5, rank 8) is bold
    assert (
        "| train.lr \\ lora.rank | 4 | 8 |\n|---|---:|---:|\n| 1e-05 | 0.8 | 0.7 |\n"
        "| 5e-05 | 0.6 | **0.5** |"
    ) in text
    # test-MSE grid: the pruned trial (5e-5, rank 4) has no test MSE
    assert "| 1e-05 | 0.06 | 0.05 |\n| 5e-05 | — | **0.0444** |" in text
    assert "Best trial (optimization_results.yaml): `train.lr=5e-05`, `lora.rank=8` -> 0.5" in text
    # context sweep: only data.context_tokens varies there
    assert "| data.context_tokens | runs | best monitored |" in text
    assert "| 512 | 1 | 0.4 | 0.04 [0.02, 0.08] | 700 | 1.000e+16 |" in text
    for name in ("metric_bars.png", "error_per_step.png"):
        assert (report.parent / name).stat().st_size > 1000
        assert f"]({name})" in text
    assert "../outputs/runs/default/t1/forecasts.png" in text


def test_report_without_a_ledger_uses_the_runs_flops(study: dict[str, Any], monkeypatch) -> None:
    monkeypatch.chdir(study["tmp"])
    run = study["out"] / "runs/baseline/t0"
    report = build_report([run], study["tmp"] / "r.md", ledger_url="sqlite:///nowhere/x.sqlite")
    text = report.read_text()
    assert "could not be read: ledger not found" in text
    assert not Path("nowhere").exists()  # reading never creates a ledger
    assert "| baseline | 1 | 1 completed | 2.000e+15 | 1.000e+15 | 1.00 |" in text
    assert "## Sweep" not in text


def test_cli_writes_the_report_and_reports_errors(study: dict[str, Any], capsys) -> None:
    out = study["tmp"] / "cli" / "report.md"
    assert main([str(study["out"] / "runs"), "--out", str(out), "--budget", "2e17"]) == 0
    # 1e15 of a 2e17 budget is 0.50%
    assert "| baseline | 1 | 1 completed | 2.000e+15 | 1.000e+15 | 0.50 |" in out.read_text()
    assert main([str(study["tmp"] / "missing"), "--out", str(out)]) == 2
    assert "error: no such run or multirun directory" in capsys.readouterr().err


def test_sweep_membership(study: dict[str, Any]) -> None:
    runs = load_runs([study["out"]])
    sweeps = {r.sweep_dir.name for r in runs if r.sweep_dir is not None}
    assert sweeps == {"s0", "s1"}
    assert sum(r.sweep_dir is None for r in runs) == 3


def test_results_table_adds_probabilistic_columns() -> None:
    sampled = {"mse": 0.1, "mse_ci": [0.05, 0.2], "crps": 0.12, "coverage_80": 0.75}
    table = results_table([ResultRow("sampled", "final", "completed", sampled, 1e16, "abcd")])
    assert "| R² | CRPS | 80% coverage | systems |" in table
    assert "| 0.1 [0.05, 0.2] | — | — | 0.12 | 0.75 | — | — | 1.000e+16 |" in table


def test_pure_table_builders() -> None:
    assert (fmt(0.016912), fmt(None), fmt(float("nan")), fmt(12)) == ("0.01691", "—", "—", "12")
    assert markdown_table(["a", "b"], [["1", "2"]], "lr") == "| a | b |\n|---|---:|\n| 1 | 2 |"
    rows = [
        LedgerRow("s", "a", "1", "completed", 4e16, 3e16),
        LedgerRow("s", "b", "2", "running", 1e16, 5e15),
    ]
    table = flops_by_experiment(rows, None)
    assert "| a | 1 | 1 completed | 4.000e+16 | 3.000e+16 | — |" in table
    assert "| **total** | **2** |  | **5.000e+16** | **3.500e+16** | **—** |" in table
    runs = tuple(
        RunRecord(
            Path(str(i)),
            {"config": {"train": {"lr": lr}, "lora": {"rank": r}}, "train": {"best_metric": v}},
        )
        for i, (lr, r, v) in enumerate([(1e-4, 2, 3.0), (1e-4, 2, 2.0), (1e-3, 4, 1.0)])
    )
    grid = grid_table(
        Sweep(Path("s"), runs), "train.lr", "lora.rank", lambda run: run.get("train.best_metric")
    )
    # two runs share (1e-4, 2): the cell keeps the better one; (1e-3, 2) was never run
    assert grid.splitlines()[2:] == ["| 0.0001 | 2 | — |", "| 0.001 | — | **1** |"]


def test_field_and_paired_tables_from_hand_made_runs(tmp_path: Path) -> None:
    from lora_forecast.report.tables import field_table, paired_table, result_rows

    results = {
        "experiment": "smoke", "status": "completed",
        "metrics": {"mse": 0.1, "mase": 0.81234, "mase_ci": [0.7, 0.9], "smape": 12.0,
                    "mase_rel": 0.5, "mase_rel_ci": [0.4, 0.6]},
        "baselines": {"persistence": {"mse": 0.3, "mase": 1.6, "smape": 20.0, "mase_rel": 1.0}},
        "paired": {"mse": {"persistence": {"mean": -0.2, "ci": [-0.3, -0.1], "n": 5}},
                   "mae": {"persistence": {"mean": -0.1, "ci": [-0.2, 0.05], "n": 5}}},
    }
    runs = [RunRecord(tmp_path / "r", results)]
    table = field_table(result_rows(runs)).splitlines()
    assert table[0] == "| run | MASE | sMAPE % | MASE x/SN [95% CI] |"
    assert table[2] == "| smoke | 0.8123 [0.7, 0.9] | 12 | 0.5 [0.4, 0.6] |"
    assert table[3] == "| baseline: persistence | 1.6 | 20 | 1 |"
    paired = paired_table(runs).splitlines()
    assert paired[2] == "| smoke | persistence | -0.2 [-0.3, -0.1] | -0.1 [-0.2, 0.05] | — | 5 |"
    assert field_table(result_rows([RunRecord(tmp_path / "o", {"metrics": {"mse": 1.0}})])) is None
    assert paired_table([RunRecord(tmp_path / "o", {"metrics": {"mse": 1.0}})]) is None
