"""Where the budget could leak, and the proof that it does not (issue #14, item 4).

* Configs the data's shape rules out are refused before anything is reserved: one line naming
  the key, exit 1, no ledger row, no run output.
* Forecast validation during training is gated by the meter like validation loss.
* Work redone after a ``kill -9`` was computed twice and is charged twice: counted here
  independently, by a wrapper around the loss function that the killed process cannot forget.
* A completed run spends, phase by phase, what the planner predicted (where the token counts
  are exact) and never more.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHRINK, subprocess_env
from test_training_loop import _fit

from lora_forecast.budget.callback import read_run_id
from lora_forecast.budget.ledger import Ledger
from lora_forecast.budget.meter import FlopsMeter
from lora_forecast.config import to_settings
from lora_forecast.data.splits import split_systems
from lora_forecast.errors import ConfigError
from lora_forecast.planning import check_fits_data, predict_cost
from lora_forecast.results import read_results
from lora_forecast.task import run_task

# ---- checks from the config and the data's shape, before any reservation -----------------------

def lengths(n_series: int = 40, steps: int = 100, short: str | None = None) -> np.ndarray:
    """Steps of each series; ``short``: that split of the default 40-series split (seed 0)
    but its first series get 5 steps, too few for the 8 + 2 of SHRINK's evaluation."""
    out = np.full(n_series, steps, dtype=np.int64)
    if short is not None:
        chosen = getattr(split_systems(n_series, 0.8, 0.1, 0.1, 0), short)
        out[chosen[: len(chosen) - 1 if short == "test" else len(chosen)]] = 5
    return out


# (overrides, series lengths, the start of the one line, naming the key)
SHAPE_CASES = [
    (["eval.n_systems=5"], lengths(), "eval.n_systems: 5 exceeds the 4 test series long enough"),
    (["eval.context_steps=95", "eval.horizon_steps=6"], lengths(),
     "eval.context_steps + eval.horizon_steps: 95 + 6 = 101 exceeds the length of every test "
     "series (longest 100)"),
    ([], lengths(steps=9), "eval.context_steps + eval.horizon_steps: 8 + 2 = 10 exceeds"),
    (["eval.n_systems=2"], lengths(short="test"),  # ragged: one test series long enough
     "eval.n_systems: 2 exceeds the 1 test series long enough for 10 steps (4 in the test split"),
    (["train.eval_forecast=true"], lengths(short="val"), "train.eval_forecast: no validation"),
    (["data.split.train=0.9", "data.split.val=0.0"], lengths(), "data.split.val: the val split"),
    (["data.split.train=0.9", "data.split.test=0.0"], lengths(), "data.split.test: the test"),
    (["data.split.train=0.0", "data.split.val=0.5", "data.split.test=0.5"], lengths(),
     "data.split.train: the train split"),
    ([], lengths(2), "data.split: need at least 3 systems"),
]


@pytest.mark.parametrize(("overrides", "series", "message"), SHAPE_CASES,
                         ids=["n_systems", "window", "short-series", "ragged-n_systems",
                              "eval-forecast", "no-val", "no-test", "no-train", "too-few"])
def test_the_shape_check_names_the_key(compose_cfg, overrides, series, message) -> None:
    settings = to_settings(compose_cfg("eval.n_systems=null", *overrides))
    with pytest.raises(ConfigError) as raised:
        check_fits_data(settings, series)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_shape_check_lets_through_what_the_run_can_do(compose_cfg) -> None:
    """Exactly at the limits; a series shorter than a context window is one padded window;
    short test series are skipped as long as enough remain; evaluating the untrained model
    needs no training or validation split."""
    at_limits = to_settings(compose_cfg("eval.n_systems=4", "eval.context_steps=90",
                                        "eval.horizon_steps=10", "data.context_tokens=4096"))
    assert len(check_fits_data(at_limits, lengths()).test) == 4
    check_fits_data(to_settings(compose_cfg("eval.n_systems=1")), lengths(short="test"))
    untrained = to_settings(compose_cfg("task=evaluate", "data.split.train=0.0",
                                        "data.split.val=0.0", "data.split.test=1.0"))
    check_fits_data(untrained, lengths())


@pytest.mark.parametrize(
    ("bad", "named"),
    [(["eval.n_systems=100000"], "eval.n_systems"),
     (["eval.context_steps=95", "eval.horizon_steps=10"],
      "eval.context_steps + eval.horizon_steps"),
     (["data.split.train=0.9", "data.split.test=0.0"], "data.split.test"),
     (["budget.dry_run=true", "eval.n_systems=100000"], "eval.n_systems")],
    ids=["n_systems", "window", "empty-test", "dry-run"],
)
def test_a_config_the_data_cannot_serve_reserves_nothing(
    compose_cfg, tmp_path: Path, capsys, bad: list[str], named: str
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(SystemExit) as exited:
        run_task(compose_cfg(*bad), run_dir)
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {named}: "), err
    assert list(run_dir.iterdir()) == []  # no results.json, .run_id, split.json, checkpoints
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()  # no ledger, so no row


def test_the_command_line_refuses_n_systems_beyond_the_test_split(tmp_path: Path) -> None:
    """The measured case of the issue: before, a `failed` row with a 1.6e10 reservation."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "lora_forecast", *SHRINK, f"output_dir={tmp_path / 'outputs'}",
         f"hydra.run.dir={run_dir}", "eval.n_systems=100000"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: eval.n_systems: 100000 exceeds the 4 test series long enough for 10 steps "
        "(4 in the test split of 40 series)"]
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()
    left = list(run_dir.iterdir()) if run_dir.exists() else []  # an unused dir is removed
    ours = [p.name for p in left if p.name != ".hydra" and p.suffix != ".log"]
    assert ours == []  # at most Hydra's own config copy and log: no results, .run_id or split


# ---- forecast validation is gated like validation loss -----------------------------------------


@pytest.mark.parametrize(("reservation", "called"), [(13.0, False), (14.0, True)])
def test_forecast_validation_runs_only_if_the_meter_can_afford_its_bound(
    tmp_path: Path, reservation: float, called: bool
) -> None:
    """2 steps of 1 FLOP, then one evaluation: 2 windows of 1 FLOP + a forecast bounded by 10.
    13 < 2 + 2 + 10: the evaluation is not started at all; 14 pays for it, and the forecast
    is charged what it really cost (7)."""
    calls: list[int] = []

    def validator(model) -> tuple[dict[str, float], float]:
        calls.append(1)
        return {"val/mse": 0.5}, 7.0

    meter = FlopsMeter(None, None, reservation)
    trainer, _ = _fit(tmp_path, 2, 1, steps=2, meter=meter, forecast_validator=validator,
                      val_forecast_flops=10.0)
    assert bool(calls) is called
    if called:
        assert trainer.result.end_reason == "max_steps"
        assert meter.by_kind == {"training": 2.0, "validation": 9.0, "forecasting": 0.0}
    else:
        assert trainer.result.end_reason == "stopped_budget"
        assert meter.by_kind == {"training": 2.0, "validation": 0.0, "forecasting": 0.0}


# ---- a completed run spends what was predicted -------------------------------------------------

# alpha 100 keeps every scaled value in [0, 1): each number is exactly "d.dd", the width the
# planner's bound assumes with eval.max_int_digits=1, so every token count is exact.
EXACT = ("data.alpha=100", "eval.max_int_digits=1", "train.eval_forecast=true",
         "train.eval_forecast_systems=2", "eval.num_samples=2")


def test_a_completed_run_spends_its_prediction_phase_by_phase(compose_cfg, run_dir) -> None:
    cfg = compose_cfg(*EXACT)
    prediction = predict_cost(to_settings(cfg))
    run_task(cfg, run_dir)
    flops = read_results(run_dir)["flops"]
    spent = flops["spent_by_kind"]
    assert read_results(run_dir)["status"] == "completed"
    for phase in ("training", "validation", "forecasting"):
        assert spent[phase] > 0
        assert spent[phase] == pytest.approx(getattr(prediction, phase), rel=1e-9), phase
    assert flops["spent"] <= flops["predicted"] == prediction.total


def test_with_inexact_token_counts_spend_stays_below_the_prediction(compose_cfg, run_dir) -> None:
    """alpha=auto: numbers take 1 or 2 integer digits, the planner counts 2 for every one.
    Training windows are full-length either way (exact); the rest is bounded."""
    cfg = compose_cfg()
    prediction = predict_cost(to_settings(cfg))
    run_task(cfg, run_dir)
    spent = read_results(run_dir)["flops"]["spent_by_kind"]
    assert spent["training"] == pytest.approx(prediction.training, rel=1e-12)
    assert 0 < spent["validation"] <= prediction.validation
    assert 0 < spent["forecasting"] < prediction.forecasting


# ---- work redone after kill -9 is charged ------------------------------------------------------

# Wraps the loss function, appends one line per call ("train 2" / "val 2": the kind and the
# windows in the batch) before computing it, and SIGKILLs its own process at the start of the
# KILL_AT-th training call: every earlier step has completed (metered, journaled).
COUNTING_CHILD = '''
import os, runpy, signal
import torch
import lora_forecast.finetune as run_module

log = open(os.environ["COUNT_FILE"], "a", buffering=1)
kill_at = int(os.environ.get("KILL_AT", "0"))
original = run_module.batch_loss_fn
train_calls = 0

def counting(head, tokenizer):
    loss = original(head, tokenizer)
    def wrapped(model, batch):
        global train_calls
        kind = "train" if torch.is_grad_enabled() else "val"
        if kind == "train":
            train_calls += 1
            if train_calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        log.write(f"{kind} {batch['input_ids'].shape[0]}\\n")
        return loss(model, batch)
    return wrapped

run_module.batch_loss_fn = counting
runpy.run_module("lora_forecast", run_name="__main__", alter_sys=True)  # python -m lora_forecast
'''

# Checkpoints at steps 3, 6, 9, 12; evaluations at 5, 10, 12. Killed at the start of step 12,
# after its 3rd checkpoint (step 9): steps 10 and 11 and the evaluation at 10 were computed,
# then lost with the process; the resumed run computes them again.
CRASH = ("train.max_steps=12", "train.eval_every=5", "train.checkpoint_every=3",
         "train.keep_checkpoints=5", "train.resume=auto")


def _counted(path: Path) -> tuple[int, int]:
    """(training steps, validation windows) a counting child really computed."""
    calls = [line.split() for line in path.read_text().splitlines()]
    return (sum(kind == "train" for kind, _ in calls),
            sum(int(n) for kind, n in calls if kind == "val"))


@pytest.mark.integration  # separate processes or a whole command
def test_work_redone_after_kill_9_is_charged(compose_cfg, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    child = tmp_path / "child.py"
    child.write_text(COUNTING_CHILD)
    command = [sys.executable, str(child), *SHRINK, *CRASH, f"output_dir={tmp_path / 'outputs'}",
               f"hydra.run.dir={run_dir}"]

    killed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=subprocess_env(COUNT_FILE=str(tmp_path / "killed.txt"),
                                               KILL_AT="12"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_0000003", "step_0000006", "step_0000009"]
    assert read_results(run_dir) is None  # died without settling anything

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env=subprocess_env(COUNT_FILE=str(tmp_path / "resumed.txt")))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    steps_before, windows_before = _counted(tmp_path / "killed.txt")
    steps_after, windows_after = _counted(tmp_path / "resumed.txt")
    assert (steps_before, steps_after) == (11, 3)  # steps 10 and 11 ran twice
    settings = to_settings(compose_cfg(*CRASH))
    prediction = predict_cost(settings)
    results = read_results(run_dir)
    assert results["status"] == "completed" and results["train"]["steps"] == 12
    spent = results["flops"]["spent_by_kind"]
    computed = ((steps_before + steps_after) * prediction.per_train_step,
                (windows_before + windows_after) * prediction.per_val_window)
    assert (spent["training"], spent["validation"]) == pytest.approx(computed, rel=1e-12)
    assert spent["forecasting"] <= prediction.forecasting
    with Ledger(results["config"]["budget"]["ledger_url"], create=False) as ledger:
        rows = ledger.rows()
    assert [(r.run_id, r.status) for r in rows] == [(read_run_id(run_dir), "completed")]
    assert rows[0].spent_flops == pytest.approx(sum(computed) + spent["forecasting"], rel=1e-12)
    # the resume reserved its whole-run prediction plus the work it had to redo
    windows_per_eval = windows_after // 2  # it validated at steps 10 and 12
    redone = 2 * prediction.per_train_step + windows_per_eval * prediction.per_val_window
    assert rows[0].predicted_flops == pytest.approx(prediction.total + redone, rel=1e-12)
    assert not math.isclose(rows[0].spent_flops, prediction.total)


def test_free_decoding_to_its_token_cap_stays_within_the_prediction(compose_cfg, run_dir) -> None:
    """A random full-vocabulary head never writes ';' or EOS: free decoding runs to its cap,
    one token past the grammar's longest forecast (room for the EOS ending free text). The
    prediction bounds forecasts by that same cap, so even this run fits."""
    cfg = compose_cfg("task=evaluate", "model.head=full", "eval.constrained=false")
    prediction = predict_cost(to_settings(cfg))
    run_task(cfg, run_dir)
    results = read_results(run_dir)
    assert results["metrics"]["parse_failures"] > 0  # it did run to the cap, unparsed
    assert 0 < results["flops"]["spent_by_kind"]["forecasting"] <= prediction.forecasting
