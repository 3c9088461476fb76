"""The task wrapper: admission before any model load, dry runs that touch nothing, clean stops
at the reservation's edge, settled results and ledger rows whatever happens, and one-line
errors from the command line."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHRINK, subprocess_env

import lora_forecast.data.prepare as prepare_module
import lora_forecast.models.build as build_module
import lora_forecast.task as task_module
from lora_forecast.budget.callback import read_run_id
from lora_forecast.budget.ledger import Ledger
from lora_forecast.config import to_settings
from lora_forecast.planning import predict_cost
from lora_forecast.results import read_results
from lora_forecast.task import run_task
from lora_forecast.tracking import NullTracker
from lora_forecast.training import checkpoint as ckpt


@pytest.fixture
def no_model_or_data(monkeypatch) -> None:
    """Loading a model or the data fails the test: admission must decide before either."""

    def forbidden(*args, **kwargs):
        raise AssertionError("model or data loaded before the budget decision")

    monkeypatch.setattr(build_module, "load_base_model", forbidden)
    monkeypatch.setattr(prepare_module, "ensure_synthetic", forbidden)
    monkeypatch.setattr(prepare_module, "read_series", forbidden)


def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "ledger.sqlite"  # budget.ledger_url under compose_cfg


# ---- admission ----------------------------------------------------------------------------------


def test_over_budget_run_is_rejected_before_any_model_load(
    compose_cfg, run_dir: Path, tmp_path: Path, capsys, no_model_or_data
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_task(compose_cfg("budget.max_flops=1000"), run_dir)
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: budget: study 'default'"), err
    assert "budget 1.00e+03" in err[0]

    results = read_results(run_dir)
    assert results["status"] == results["end_reason"] == "rejected"
    assert results["flops"]["spent"] == 0 and results["flops"]["predicted"] > 1000
    assert [p.name for p in run_dir.iterdir()] == ["results.json"]  # no .run_id, no model
    with Ledger(f"sqlite:///{ledger_path(tmp_path)}", create=False) as ledger:
        rows = ledger.rows()
    assert [(r.run_id, r.status, r.spent_flops) for r in rows] == [
        (results["run_id"], "rejected", 0.0)
    ]


def test_dry_run_prints_the_breakdown_and_creates_no_ledger_and_no_model(
    compose_cfg, run_dir: Path, tmp_path: Path, capsys, no_model_or_data
) -> None:
    cfg = compose_cfg("budget.dry_run=true", "budget.max_flops=1e15")
    assert run_task(cfg, run_dir) is None
    out = capsys.readouterr().out.strip().splitlines()
    predicted = predict_cost(to_settings(cfg))
    assert out[-2] == f"predicted_flops={predicted.total:.6e}"
    assert out[-1] == f"remaining_flops={1e15:.6e}"
    for phase in ("training", "validation", "forecasting", "total"):
        assert any(line.split()[:1] == [phase] for line in out), phase
    assert not ledger_path(tmp_path).exists()
    assert list(run_dir.iterdir()) == []


def test_dry_run_reads_an_existing_ledger_without_writing_it(
    compose_cfg, run_dir: Path, tmp_path: Path, capsys, no_model_or_data
) -> None:
    url = f"sqlite:///{ledger_path(tmp_path)}"
    with Ledger(url) as ledger:
        spent = ledger.reserve(
            study="default",
            experiment="earlier",
            config_digest="x",
            accounting="exact",
            predicted=4e14,
            budget=1e15,
        )
        ledger.finish(spent.run_id, "completed", 3e14)
        before = ledger.rows()
    run_task(compose_cfg("budget.dry_run=true", "budget.max_flops=1e15"), run_dir)
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"remaining_flops={7e14:.6e}"
    with Ledger(url, create=False) as ledger:
        assert ledger.rows() == before


# ---- stopping at the reservation ----------------------------------------------------------------


def test_a_reservation_short_of_the_run_stops_it_cleanly_with_a_checkpoint(
    compose_cfg, run_dir: Path, monkeypatch
) -> None:
    """The reservation covers 2 training steps of 8 (plus validation and forecasting): the
    loop stops before a step it cannot afford, checkpoints, and settles stopped_budget."""

    def short_prediction(settings, arch=None):
        full = predict_cost(settings, arch)
        return dataclasses.replace(full, training=2 * full.per_train_step)

    monkeypatch.setattr(task_module, "predict_cost", short_prediction)
    cfg = compose_cfg("train.max_steps=8", "train.eval_every=2")
    run_task(cfg, run_dir)
    results = read_results(run_dir)
    reserved = short_prediction(to_settings(cfg)).total
    assert results["status"] == results["end_reason"] == "stopped_budget"
    steps = results["train"]["steps"]
    assert 2 <= steps < 8
    spent = results["flops"]["spent"]
    assert 0 < spent <= reserved
    assert results["flops"]["predicted"] == pytest.approx(reserved)
    checkpoint = ckpt.latest_valid_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None and checkpoint.state["step"] == steps
    assert (run_dir / "adapter" / "trainable.pt").is_file()
    with Ledger(results["config"]["budget"]["ledger_url"], create=False) as ledger:
        row = ledger.get(read_run_id(run_dir))
    assert row.status == "stopped_budget"
    assert row.spent_flops == pytest.approx(spent) and row.spent_flops <= row.predicted_flops


# ---- a crash is still settled -------------------------------------------------------------------


def test_a_crash_mid_training_settles_failed_with_the_metered_spend(
    compose_cfg, run_dir: Path, monkeypatch
) -> None:
    class CrashingTracker(NullTracker):
        def log(self, metrics: dict[str, float], step: int) -> None:
            if step == 2:
                raise RuntimeError("bug in the tracker")

    monkeypatch.setattr(task_module, "make_tracker", lambda *a, **k: CrashingTracker())
    with pytest.raises(RuntimeError, match="bug in the tracker"):  # a bug keeps its traceback
        run_task(compose_cfg(), run_dir)
    results = read_results(run_dir)
    assert results["status"] == results["end_reason"] == "failed"
    spent = results["flops"]["spent"]
    assert spent > 0 and results["flops"]["spent_by_kind"]["training"] > 0
    with Ledger(results["config"]["budget"]["ledger_url"], create=False) as ledger:
        row = ledger.get(read_run_id(run_dir))
    assert (row.status, row.spent_flops) == ("failed", pytest.approx(spent))


# ---- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (["lora.rank=0"], "lora.rank"),
        (["model.attn_implementation=bogus"], "model.attn_implementation: must be one of "
                                              "auto, eager,"),
        (["data.source=file", "data.path=/nonexistent.h5"], "/nonexistent.h5"),
        # Hydra's own composition errors, which it would print over several lines
        (["train.lr=abc"], "train.lr: Value 'abc'"),
        (["train.lrr=1"], "train.lrr: unknown key; did you mean train.lr?"),
        (["model=nope"], "Could not find 'model/nope' (available: gemma3-270m, hf, "
                         "llama-3.2-1b-instruct, "
                         "qwen2.5-0.5b-instruct, qwen2.5-1.5b-instruct, qwen3-0.6b, "
                         "smollm2-360m-instruct, tiny)"),
        (["train.lr=("], "Error parsing override 'train.lr=('"),
        (["train.lr=${oops}"], "train.lr: Interpolation key 'oops' not found"),
        (["hydra/sweeper=budgeted_optuna", "hydra.sweeper.sampler.name=nope", "--multirun"],
         "hydra.sweeper.sampler.name: must be one of"),
        (["hydra/sweeper=budgeted_optuna", 'hydra.sweeper.params={train.lr:"interval(1,2)"}',
          "--multirun"], "To append to your config use +hydra.sweeper.params="),
    ],
    ids=["lora-rank-0", "unknown-attention", "missing-data-file", "not-a-float", "unknown-key",
         "unknown-option", "override-syntax", "bad-interpolation", "sweeper-option",
         "sweeper-params-without-plus"],
)
def test_cli_bad_input_is_one_line_exit_1_and_charges_nothing(
    tmp_path: Path, bad: list[str], named: str
) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lora_forecast",
        *SHRINK,
        f"output_dir={tmp_path / 'outputs'}",
        f"hydra.run.dir={run_dir}",
        *bad,
    ]
    env = subprocess_env()
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and named in lines[0], lines
    results = read_results(run_dir)
    assert results is None or results["status"] != "completed"
    assert read_run_id(run_dir) is None
    if ledger_path(tmp_path).exists():
        with Ledger(f"sqlite:///{ledger_path(tmp_path)}", create=False) as ledger:
            assert all(r.status == "rejected" and r.spent_flops == 0 for r in ledger.rows())


@pytest.mark.parametrize("bad", ["train.lr=abc", "lora.rank=0"], ids=["hydra", "ours"])
def test_cli_hydra_full_error_shows_the_traceback(tmp_path: Path, bad: str) -> None:
    command = [sys.executable, "-m", "lora_forecast", *SHRINK, f"hydra.run.dir={tmp_path}/run",
               f"output_dir={tmp_path / 'outputs'}", bad]
    env = subprocess_env(HYDRA_FULL_ERROR="1")
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr, done.stderr[-2000:]


def test_one_line_error_leaves_bugs_alone() -> None:
    from hydra.errors import ConfigCompositionException

    from lora_forecast.config.messages import one_line_error

    assert one_line_error(RuntimeError("a bug")) is None  # keeps its traceback
    assert one_line_error(KeyError("x")) is None
    assert one_line_error(ConfigCompositionException("No\n\nSet the environment variable "
                                                     "HYDRA_FULL_ERROR=1 ...")) == "No"


@pytest.mark.parametrize("users", [None, "0", "1"])
def test_deferring_hydra_reports_restores_the_users_setting(monkeypatch, users) -> None:
    from lora_forecast.command import defer_hydra_error_reports, restore_user_error_setting

    if users is None:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    else:
        monkeypatch.setenv("HYDRA_FULL_ERROR", users)
    deferred = defer_hydra_error_reports()
    assert deferred == (users != "1")
    assert os.environ["HYDRA_FULL_ERROR"] == "1"  # Hydra raises to us until the task starts
    restore_user_error_setting()
    assert os.environ.get("HYDRA_FULL_ERROR") == users
    restore_user_error_setting()  # idempotent: every job of a sweep calls it
    assert os.environ.get("HYDRA_FULL_ERROR") == users


def test_a_tracker_that_cannot_start_leaves_no_open_reservation(
    compose_cfg, run_dir: Path, monkeypatch, capsys
) -> None:
    """Admitted, then W&B refuses to start: one-line error, and the row is settled, not left
    'running' holding its reservation."""
    from lora_forecast.errors import LoraForecastError

    def refuse(*args, **kwargs):
        raise LoraForecastError("logger: wandb.init failed in mode=online: not logged in")

    monkeypatch.setattr(task_module, "make_tracker", refuse)
    monkeypatch.setattr(build_module, "load_base_model", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(SystemExit) as exited:
        run_task(compose_cfg(), run_dir)
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: logger: wandb.init failed in mode=online: not logged in"
    ]
    results = read_results(run_dir)
    assert results["status"] == "failed" and results["flops"]["spent"] == 0
    with Ledger(results["config"]["budget"]["ledger_url"], create=False) as ledger:
        row = ledger.get(read_run_id(run_dir))
    assert (row.status, row.spent_flops) == ("failed", 0.0)
