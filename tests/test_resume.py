"""Interrupt and resume (issue #4): a stopped or killed run continues to the same weights and
the same loss log as a run that was never interrupted; a stopped one also to the same ledger
spend, a killed one to that spend plus the steps it had to redo (issue #14).

Three ways to stop a run, all with identical configs on both sides of the interruption (the lr
schedule depends on ``max_steps``, so "train k steps, then k more with a larger max_steps" would
not be the same run):

* SIGINT raised in-process from the tracker at step k (a real signal through the real handler);
* SIGKILL of ``python -m lora_forecast`` once a checkpoint exists (no chance to clean up);
* SIGTERM of ``python -m lora_forecast``: finish the step, checkpoint, exit 130.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CONF_DIR, SHRINK, subprocess_env
from hydra import compose, initialize_config_dir

import lora_forecast.task as task_module
from lora_forecast.budget.callback import read_run_id
from lora_forecast.budget.journal import JOURNAL_FILE, read_journal
from lora_forecast.budget.ledger import Ledger, RunRow
from lora_forecast.results import read_results
from lora_forecast.task import EXIT_INTERRUPTED, run_task
from lora_forecast.tracking import NullTracker
from lora_forecast.training import checkpoint as ckpt

WEIGHT_TOL = 1e-6
# Compared per step between the straight and the resumed run (tokens_per_s is wall-clock).
LOGGED = ("train/loss", "val/loss", "lr", "grad_norm", "flops/spent")


# ---- helpers ------------------------------------------------------------------------------------


def trainable(run_dir: Path, sub: str = "adapter") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / sub / "trainable.pt", weights_only=True)


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def by_step(results: dict[str, Any]) -> dict[str, float]:
    """``{"step/key": value}`` of the logged history; each step must appear exactly once."""
    history = results["train"]["history"]
    steps = [int(h["step"]) for h in history]
    assert steps == list(range(1, results["train"]["steps"] + 1)), f"steps logged: {steps}"
    return {f"{h['step']}/{k}": h[k] for h in history for k in LOGGED if k in h}


def ledger_row(results: dict[str, Any], run_id: str) -> RunRow:
    with Ledger(results["config"]["budget"]["ledger_url"], create=False) as ledger:
        row = ledger.get(run_id)
    assert row is not None, f"no ledger row {run_id}"
    return row


def newest_checkpoint_step(run_dir: Path) -> int:
    found = ckpt.latest_valid_checkpoint(run_dir / "checkpoints")
    assert found is not None, f"no valid checkpoint in {run_dir}"
    return int(found.state["step"])


def assert_same_run(straight: Path, resumed: Path, redone_after: tuple[int, float] = (0, 0.0)
                    ) -> None:
    """Same final weights (adapter and best), same per-step log, same test metrics.

    ``redone_after=(step, flops)``: the resumed run redid ``flops`` of work lost after its
    checkpoint at ``step``, so its cumulative ``flops/spent`` after that step is the straight
    run's plus ``flops``; every other logged value is the same.
    """
    a, b = read_results(straight), read_results(resumed)
    assert a is not None and b is not None
    assert b["status"] == "completed" and b["train"]["resumed_from"]
    assert b["train"]["steps"] == a["train"]["steps"]
    assert max_abs_diff(trainable(straight), trainable(resumed)) <= WEIGHT_TOL
    assert max_abs_diff(trainable(straight, "best"), trainable(resumed, "best")) <= WEIGHT_TOL
    step_of_checkpoint, extra = redone_after
    expected = {
        key: value + extra if key.endswith("/flops/spent") and int(key.split("/")[0])
        > step_of_checkpoint else value
        for key, value in by_step(a).items()
    }
    assert by_step(b) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert b["train"]["best_step"] == a["train"]["best_step"]
    assert b["metrics"]["mse"] == pytest.approx(a["metrics"]["mse"], rel=1e-6)


class SignalAtStep(NullTracker):
    """A tracker that sends this process ``signum`` when ``step`` is logged (after the step)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def log(self, metrics: dict[str, float], step: int) -> None:
        if step == self.step:
            signal.raise_signal(self.signum)


# ---- in-process interruption --------------------------------------------------------------------

# 8 steps, validation every 2; cosine with warmup so the restored scheduler state matters,
# gradient accumulation so the restored data position covers micro-batches, and LoRA dropout so
# the restored RNG state matters.
RESUME_OVERRIDES = (
    "train.max_steps=8",
    "train.eval_every=2",
    "train.schedule=cosine",
    "train.warmup_steps=2",
    "train.grad_accum=2",
    "lora.dropout=0.1",
    "train.resume=auto",
)


@pytest.mark.parametrize("stop_at", [3, 4], ids=["between-evals", "at-an-eval"])
def test_interrupted_then_resumed_equals_straight(
    compose_cfg, tmp_path: Path, monkeypatch, capsys, stop_at: int
) -> None:
    """2k steps straight == k steps, SIGINT, resume k more: weights, log and ledger spend."""
    cfg = compose_cfg(*RESUME_OVERRIDES)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_task(cfg, straight)

    with monkeypatch.context() as m:
        m.setattr(task_module, "make_tracker", lambda *a, **k: SignalAtStep(stop_at, signal.SIGINT))
        with pytest.raises(SystemExit) as exited:
            run_task(cfg, resumed)
    assert exited.value.code == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: run interrupted")
    stopped = read_results(resumed)
    run_id = read_run_id(resumed)
    assert stopped["status"] == stopped["end_reason"] == "interrupted"
    assert stopped["train"]["steps"] == stop_at == newest_checkpoint_step(resumed)
    row = ledger_row(stopped, run_id)
    assert (row.status, row.spent_flops) == ("interrupted", stopped["flops"]["spent"])

    assert run_task(cfg, resumed) is not None  # same config, same directory: resume=auto
    assert read_run_id(resumed) == run_id  # the ledger row is continued, not duplicated
    assert_same_run(straight, resumed)
    a, b = read_results(straight), read_results(resumed)
    assert b["train"]["resumed_from"].endswith(f"step_{stop_at:07d}")
    assert b["flops"]["spent"] == pytest.approx(a["flops"]["spent"], rel=1e-12)
    assert b["flops"]["spent_by_kind"] == pytest.approx(a["flops"]["spent_by_kind"], rel=1e-12)
    row, straight_row = ledger_row(b, run_id), ledger_row(a, read_run_id(straight))
    assert row.status == "completed"
    assert row.spent_flops == pytest.approx(straight_row.spent_flops, rel=1e-12)
    with Ledger(b["config"]["budget"]["ledger_url"], create=False) as ledger:
        assert len(ledger.rows()) == 2  # straight + resumed; the resume made no new row


# ---- subprocesses: SIGKILL and SIGTERM ----------------------------------------------------------

# Enough steps that the process is still training when the test signals it; few evaluations.
CLI_OVERRIDES = (
    "train.max_steps=60",
    "train.eval_every=30",
    "train.checkpoint_every=2",
    "train.resume=auto",
)


def cli(tmp_path: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lora_forecast",
        *SHRINK,
        f"output_dir={tmp_path / 'outputs'}",
        *CLI_OVERRIDES,
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Popen with output to files (a full pipe would stall the child)."""
    out = (log.with_suffix(".out")).open("w")
    err = (log.with_suffix(".err")).open("w")
    return subprocess.Popen(command, cwd=log.parent, env=subprocess_env(), stdout=out, stderr=err)


def wait_for_checkpoint(
    proc: subprocess.Popen, run_dir: Path, log: Path, timeout: float = 120.0
) -> None:
    """Block until a complete checkpoint exists (meta.json is written last) while it trains."""
    deadline = time.monotonic() + timeout
    while not list((run_dir / "checkpoints").glob("step_*/meta.json")):
        if proc.poll() is not None:
            pytest.fail(
                f"process ended (rc {proc.returncode}) before a checkpoint:\n"
                f"{log.with_suffix('.err').read_text()[-3000:]}"
            )
        assert time.monotonic() < deadline, "no checkpoint within the timeout"
        time.sleep(0.01)


def straight_cfg(tmp_path: Path, ledger: Path):
    """The CLI run's config, composed in-process, with its own ledger."""
    overrides = [
        *SHRINK,
        f"output_dir={tmp_path / 'outputs'}",
        *CLI_OVERRIDES,
        f"budget.ledger_url=sqlite:///{ledger}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def interrupt_after_checkpoint(tmp_path: Path, run_dir: Path, name: str, sig: int) -> int:
    """Start the CLI run, send ``sig`` once it has a checkpoint; returns its exit code."""
    proc = start(cli(tmp_path, run_dir), tmp_path / name)
    try:
        wait_for_checkpoint(proc, run_dir, tmp_path / name)
        proc.send_signal(sig)
    finally:
        proc.wait(timeout=120)
    return proc.returncode


@pytest.mark.integration  # separate processes or a whole command
def test_kill_9_then_resume_equals_straight(tmp_path: Path) -> None:
    """SIGKILL after a checkpoint; ``train.resume=auto`` in the same run dir completes with the
    uninterrupted run's weights, losses and metrics, and the row the dead process left open is
    closed. Its spend is the straight run's plus the work done after the checkpoint and redone
    after the kill (charged twice), counted independently of the resumed run: the dead
    process's journal minus the figure its newest checkpoint keeps. How much was redone
    depends on when the kill lands (0 to a few steps, perhaps a validation); the verdict
    does not."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_task(straight_cfg(tmp_path, tmp_path / "straight.sqlite"), straight)

    assert interrupt_after_checkpoint(tmp_path, killed, "kill", signal.SIGKILL) == -signal.SIGKILL
    run_id = read_run_id(killed)
    assert run_id and read_results(killed) is None  # died without settling anything
    checkpoint = ckpt.latest_valid_checkpoint(killed / "checkpoints")
    assert checkpoint is not None and checkpoint.state["step"] < 60
    kept = sum(checkpoint.state["meter"]["spent"].values())
    journaled = read_journal(killed / JOURNAL_FILE, run_id)
    assert journaled is not None, "the dead process left no FLOPs journal"
    lost = sum(journaled.values()) - kept
    assert lost >= 0
    ledger_url = f"sqlite:///{tmp_path / 'outputs' / 'ledger.sqlite'}"
    with Ledger(ledger_url, create=False) as ledger:
        assert ledger.get(run_id).status == "running"  # left open by the dead process

    done = subprocess.run(
        cli(tmp_path, killed),
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_run_id(killed) == run_id
    assert_same_run(straight, killed, redone_after=(int(checkpoint.state["step"]), lost))
    a, b = read_results(straight), read_results(killed)
    assert b["flops"]["spent"] == pytest.approx(a["flops"]["spent"] + lost, rel=1e-12)
    with Ledger(ledger_url, create=False) as ledger:
        rows = ledger.rows()
    assert [(r.run_id, r.status) for r in rows] == [(run_id, "completed")]
    assert rows[0].spent_flops == pytest.approx(b["flops"]["spent"], rel=1e-12)


@pytest.mark.integration  # separate processes or a whole command
def test_sigterm_finishes_the_step_checkpoints_and_exits_130(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert interrupt_after_checkpoint(tmp_path, run_dir, "term", signal.SIGTERM) == EXIT_INTERRUPTED
    stderr = (tmp_path / "term.err").read_text()
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: run interrupted") and "train.resume=auto" in last

    results = read_results(run_dir)
    assert results["status"] == results["end_reason"] == "interrupted"
    steps = results["train"]["steps"]
    assert 0 < steps < 60
    # The step in flight finished and was checkpointed, with its record in the history.
    checkpoint = ckpt.latest_valid_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None and checkpoint.state["step"] == steps
    assert [h["step"] for h in checkpoint.state["history"]] == list(range(1, steps + 1))
    assert json.loads((run_dir / "train_history.json").read_text())[-1]["step"] == steps
    with Ledger(results["config"]["budget"]["ledger_url"], create=False) as ledger:
        row = ledger.get(read_run_id(run_dir))
    assert row.status == "interrupted"
    assert row.spent_flops == pytest.approx(results["flops"]["spent"], rel=1e-12)
    assert 0 < row.spent_flops < row.predicted_flops
