"""Data-parallel training with two real processes on CPU (gloo), launched by torchrun exactly as
README shows. ``accelerate launch --cpu --num_processes 2`` was measured to start ONE process
(its simple launcher ignores the count on CPU), so torchrun is the launcher we test and document.

The oracle is a single-process run with the same global batch (2 processes x 2 windows = 1 x 4):
same windows, same token-weighted mean loss, so the same adapter within float tolerance.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import torch.distributed as dist
from conftest import CONF_DIR, SHRINK, subprocess_env
from hydra import compose, initialize_config_dir
from torch.nn.parallel import DistributedDataParallel

from lora_forecast.budget.ledger import Ledger
from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.llmtime import TokenTable
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import backbone_and_head, numeric_head_loss
from lora_forecast.models.tokenizer import qwen_tokenizer
from lora_forecast.results import read_results
from lora_forecast.task import run_task
from lora_forecast.training.batches import BatchOrder
from lora_forecast.training.distributed import LossModule
from lora_forecast.training.pruning import PRUNED_AT_ATTR, PRUNER_ATTR

pytestmark = pytest.mark.integration  # several processes or a whole command

# 8 steps planned; min_delta=100 makes the 2nd evaluation (step 4) "no improvement", so rank 0
# decides early stopping there and rank 1 must follow it (or hang in the next step's allreduce).
EARLY_STOP = ("train.max_steps=8", "train.patience=1", "train.min_delta=100")
# 3 validation series forecast at each evaluation: rank 0 takes 2, rank 1 takes 1
FORECAST_VALIDATION = ("train.eval_forecast=true", "train.eval_forecast_systems=3")
TIMEOUT_S = 240
LAUNCH = Path(__file__).parent / "launch"
ALPHABET = TokenTable.from_tokenizer(qwen_tokenizer()).head_ids()  # '0'..'9', '.', ',', ';'


def torchrun(tmp_path: Path, run_dir: str, *extra: str) -> list[str]:
    """The README's CPU command, at toy size, with its own outputs and ledger."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "lora_forecast", *SHRINK, f"output_dir={tmp_path / 'ddp'}",
        f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


def single_process(tmp_path: Path, *extra: str) -> Path:
    """The oracle: one process, batch 4 (the global batch of 2 x 2), in-process."""
    run_dir = tmp_path / "single"
    run_dir.mkdir()
    overrides = [*SHRINK, f"output_dir={tmp_path / 'single_out'}", "train.batch_size=4", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        run_task(compose(config_name="config", overrides=overrides), run_dir)
    return run_dir


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "adapter" / "trainable.pt", weights_only=True)


def assert_same_adapter(a: Path, b: Path) -> None:
    left, right = adapter(a), adapter(b)
    assert left.keys() == right.keys()
    moved = max(float(t.abs().max()) for t in right.values())
    assert moved > 1e-3  # trained: the comparison is not between two zero-initialised B's
    for name in left:
        torch.testing.assert_close(left[name], right[name], rtol=1e-5, atol=1e-6, msg=name)


def test_ranks_take_disjoint_shards_of_the_global_batch() -> None:
    one = BatchOrder(40, 4, seed=3)
    ranks = [BatchOrder(40, 2, seed=3, world_size=2, rank=r) for r in (0, 1)]
    for step in range(25):  # crosses epochs (10 global batches per epoch)
        shards = [order.indices(step) for order in ranks]
        assert not set(shards[0]) & set(shards[1])
        np.testing.assert_array_equal(np.concatenate(shards), one.indices(step))


def test_two_processes_train_like_one_with_the_global_batch(tmp_path: Path) -> None:
    ddp_dir = tmp_path / "rank0"
    # each rank gets its own Hydra dir; rank 0's is broadcast, so rank 1's must stay empty
    command = torchrun(tmp_path, f"{tmp_path}/rank${{oc.env:RANK}}", *EARLY_STOP,
                       *FORECAST_VALIDATION, "logger=wandb", "train.batch_size=2")  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        assert f"data parallel: process {rank} of 2, 2 windows per step" in done.stdout

    ours = single_process(tmp_path, *EARLY_STOP, *FORECAST_VALIDATION)
    ddp, single = read_results(ddp_dir), read_results(ours)
    assert ddp["end_reason"] == single["end_reason"] == "early_stopped"
    assert ddp["train"]["steps"] == 4  # both ranks stopped at rank 0's decision, none hung
    assert_same_adapter(ddp_dir, ours)
    for key in ("train/loss", "val/loss", "val/mse"):  # the ranks split validation
        ours = [h[key] for h in ddp["train"]["history"] if key in h]
        assert len(ours) == (4 if key == "train/loss" else 2)
        assert ours == pytest.approx([h[key] for h in single["train"]["history"] if key in h],
                                     rel=1e-5)

    # FLOPs: training of 2 x 2 windows = 1 x 4; the ranks split validation (each window
    # once); the test split is forecast once, by rank 0
    spent, ref = ddp["flops"]["spent_by_kind"], single["flops"]["spent_by_kind"]
    assert spent["training"] == ref["training"] > 0
    assert spent["validation"] == ref["validation"] > 0
    assert spent["forecasting"] == ref["forecasting"] > 0
    plan, ref_plan = ddp["flops"]["breakdown"], single["flops"]["breakdown"]
    assert plan["training"] == ref_plan["training"]
    assert plan["validation"] == ref_plan["validation"]

    with Ledger(f"sqlite:///{tmp_path / 'ddp' / 'ledger.sqlite'}", create=False) as ledger:
        rows = ledger.rows()
    assert [(r.status, r.spent_flops) for r in rows] == [("completed", ddp["flops"]["spent"])]
    assert len(list((ddp_dir / "wandb").glob("offline-run-*"))) == 1
    # rank 1 wrote nothing of ours: only Hydra's own config copy and job log
    leftovers = {p.name for p in (tmp_path / "rank1").iterdir()}
    assert leftovers <= {".hydra", "lora_forecast.log", "default.log"}, leftovers


def test_a_pruned_two_process_trial_stops_both_ranks_at_rank_0s_verdict(tmp_path: Path) -> None:
    """The pruner is asked on rank 0 only; its verdict must reach rank 1 (else rank 1 hangs in
    the next step's allreduce and torchrun never returns: the timeout fails the test)."""
    storage = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    study = optuna.create_study(study_name="ddp-prune", storage=storage)
    study.set_user_attr(PRUNER_ATTR, {"name": "threshold", "options": {"upper": 0.0}})
    trial = study.ask()  # any validation loss > 0 is above the threshold: pruned at step 2
    run_dir = tmp_path / "run"
    command = torchrun(tmp_path, str(run_dir), "train.max_steps=8", "train.batch_size=2",
                       f"trial.storage={storage}", "trial.study_name=ddp-prune",
                       f"trial.number={trial.number}")  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = read_results(run_dir)
    assert results["status"] == results["end_reason"] == "pruned"
    assert results["train"]["steps"] == 2 and results["metrics"] is None  # no test forecasts
    assert study.trials[0].user_attrs[PRUNED_AT_ATTR] == 2
    assert list(study.trials[0].intermediate_values) == [2]  # reported once, by rank 0
    with Ledger(f"sqlite:///{tmp_path / 'ddp' / 'ledger.sqlite'}", create=False) as ledger:
        rows = ledger.rows()
    assert [(r.status, r.spent_flops) for r in rows] == [("pruned", results["flops"]["spent"])]
    assert 0 < results["flops"]["spent"] < results["flops"]["predicted"]


def test_a_budget_stop_decided_on_rank_0_stops_both_ranks(tmp_path: Path) -> None:
    """Rank 0's reservation covers 2 of 8 training steps (``tests/launch``: only rank 0's, so
    rank 1 alone would train on and hang in the next allreduce; the timeout fails the test).
    Both ranks stop at rank 0's step, rank 0 settles ``stopped_budget`` within its reservation."""
    run_dir = tmp_path / "run"
    command = torchrun(tmp_path, str(run_dir), "train.max_steps=8", "train.batch_size=2",
                       "train.eval_every=8")  # the stop comes before a step, not at validation
    module_at = command.index("-m", command.index("--nproc_per_node"))
    command[module_at:module_at + 2] = [str(LAUNCH / "short_reservation_on_rank0.py")]
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        assert f"data parallel: process {rank} of 2, 2 windows per step" in done.stdout
    results = read_results(run_dir)
    assert results["status"] == results["end_reason"] == "stopped_budget"
    steps = results["train"]["steps"]  # the reserved validation share pays for some steps too
    assert 2 <= steps < 8
    spent, reserved = results["flops"]["spent"], results["flops"]["predicted"]
    # each step is both processes' work, metered once by rank 0 (the reservation holds 2 steps)
    per_step = results["flops"]["breakdown"]["training"] / 2
    assert results["flops"]["spent_by_kind"]["training"] == pytest.approx(steps * per_step)
    assert 0 < spent <= reserved
    with Ledger(f"sqlite:///{tmp_path / 'ddp' / 'ledger.sqlite'}", create=False) as ledger:
        rows = ledger.rows()
    assert [(r.status, r.spent_flops, r.predicted_flops) for r in rows] == [
        ("stopped_budget", spent, reserved)]


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, err: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not list((run_dir / "checkpoints").glob("step_*/meta.json")):
        if proc.poll() is not None:
            pytest.fail(f"launch ended (rc {proc.returncode}) early:\n{err.read_text()[-3000:]}")
        assert time.monotonic() < deadline, "no checkpoint within the timeout"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_to_the_launcher_then_resume_gives_the_same_adapter(tmp_path: Path) -> None:
    """SIGTERM to torchrun reaches both ranks; rank 0 decides the stop step (both follow),
    checkpoints and exits 130; ``train.resume=auto`` finishes with the uninterrupted adapter."""
    run_dir = tmp_path / "run"
    extra = ("train.batch_size=2", "train.max_steps=40", "train.eval_every=20",
             "train.checkpoint_every=2", "train.resume=auto")  # fmt: skip
    command = torchrun(tmp_path, str(run_dir), *extra)
    err = tmp_path / "term.err"
    with err.open("w") as stderr:
        proc = subprocess.Popen(command, cwd=tmp_path, env=subprocess_env(),
                                stdout=subprocess.DEVNULL, stderr=stderr)  # fmt: skip
        try:
            wait_for_checkpoint(proc, run_dir, err)
            proc.send_signal(signal.SIGTERM)
        finally:
            proc.wait(timeout=TIMEOUT_S)
    first = read_results(run_dir)
    assert first["status"] == "interrupted", err.read_text()[-3000:]
    assert first["train"]["steps"] < 40
    assert proc.returncode != 0

    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_results(run_dir)
    assert resumed["status"] == "completed" and resumed["train"]["steps"] == 40
    assert resumed["train"]["resumed_from"]
    ours = single_process(tmp_path, *extra[1:4])
    assert_same_adapter(run_dir, ours)
    single = read_results(ours)
    assert resumed["flops"]["spent_by_kind"]["training"] == single["flops"]["spent_by_kind"][
        "training"
    ]
    with Ledger(f"sqlite:///{tmp_path / 'ddp' / 'ledger.sqlite'}", create=False) as ledger:
        assert [r.status for r in ledger.rows()] == ["completed"]  # one row, reopened and closed


def test_resume_from_another_runs_checkpoint_starts_a_new_row_at_zero(compose_cfg, tmp_path):
    """``train.resume_from`` another run's checkpoint: the weights carry over, its FLOPs stay on
    that run's ledger row, and the new run's row starts at 0 (README says so)."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir(), second_dir.mkdir()
    run_task(compose_cfg("train.max_steps=4"), first_dir)
    first = read_results(first_dir)
    checkpoint = sorted((first_dir / "checkpoints").glob("step_*"))[-1]
    run_task(compose_cfg("train.max_steps=6", f"train.resume_from={checkpoint}"), second_dir)
    second = read_results(second_dir)
    assert second["train"]["resumed_from"] == str(checkpoint)
    assert second["run_id"] != first["run_id"]
    assert second["train"]["steps"] == 6 and len(second["train"]["history"]) == 6
    # metered from 0: the 2 new steps only, not the 4 the first run paid for
    per_step = first["flops"]["spent_by_kind"]["training"] / 4
    assert second["flops"]["spent_by_kind"]["training"] == pytest.approx(2 * per_step, rel=1e-12)
    with Ledger(f"sqlite:///{tmp_path / 'outputs' / 'ledger.sqlite'}", create=False) as ledger:
        rows = {r.run_id: r for r in ledger.rows()}
    assert rows[first["run_id"]].spent_flops == first["flops"]["spent"]  # untouched
    assert rows[second["run_id"]].spent_flops == second["flops"]["spent"]


def test_numeric_head_refuses_a_ddp_model_and_trains_through_the_loss_module(tmp_path) -> None:
    """Calling the numeric head's loss on a DDP model would skip DDP's forward (no gradient
    averaging, silently): it raises. Through ``LossModule`` it is the same loss with DDP's
    forward; decoding may still unwrap a DDP model."""
    ids = torch.tensor([ALPHABET * 2])
    model = build_model(ModelConfig(kind="tiny", hidden_size=32, num_layers=1, num_heads=2,
                                    num_kv_heads=1, intermediate_size=64, lm_head_bias=True),
                        LoraConfig(rank=2))  # fmt: skip
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        with pytest.raises(TypeError, match="DDP"):
            numeric_head_loss(DistributedDataParallel(model), ids, None, ids, ALPHABET)
        backbone, _ = backbone_and_head(DistributedDataParallel(model))
        assert backbone is model.get_base_model().model
        net = DistributedDataParallel(LossModule(
            model, lambda m, batch: numeric_head_loss(m, batch["ids"], None, batch["ids"], ALPHABET)
        ))  # fmt: skip
        through_ddp = net({"ids": ids})
        assert float(through_ddp) == float(numeric_head_loss(model, ids, None, ids, ALPHABET))
    finally:
        dist.destroy_process_group()


def test_a_command_leaves_no_process_group_behind(tmp_path: Path) -> None:
    """A command's end destroys the process group it joined (a rank's early exit is clean),
    and is a no-op for a process that never joined one."""
    from lora_forecast.command import close_process_group

    close_process_group()  # none: nothing happens
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)  # fmt: skip
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
