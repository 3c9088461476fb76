"""Sweeps on a cluster go through hydra-submitit-launcher (issue #14, item 6).

``hydra/launcher=submitit_local`` runs the same path as ``submitit_slurm`` (pickled launcher,
one process per trial started by submitit, results read back by the sweeper) on this machine;
the SLURM preset is checked down to the ``#SBATCH`` lines it would submit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import CONF_DIR, SHRINK, subprocess_env
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from optuna.trial import TrialState

from lora_forecast.budget.ledger import Ledger
from lora_forecast.config import to_settings
from lora_forecast.planning import predict_cost
from lora_forecast.training.pruning import open_storage

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
import submitit  # noqa: E402  (after the skip: an optional extra)

pytestmark = pytest.mark.integration  # several processes or a whole command

# 4 trials, 2 at once; two steps each, no baselines: a few seconds of work per trial.
SPACE = ["lora.rank=choice(2,4)", "train.lr=choice(1e-3,3e-3)"]
TOY = [*SHRINK, "train.max_steps=2", "eval.baselines=[]"]
SWEEP = ["hydra/sweeper=budgeted_optuna", "hydra/launcher=submitit_local",
         "hydra.sweeper.sampler.name=grid", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
         *SPACE]


def _budget_for_the_four_trials(tmp_path: Path) -> float:
    """The sum of the four trials' predictions: the study can pay for them and no more."""
    total = 0.0
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for rank in (2, 4):
            cfg = compose(config_name="config", overrides=[
                *TOY, f"output_dir={tmp_path}", f"lora.rank={rank}"])
            total += 2 * predict_cost(to_settings(cfg)).total  # two learning rates each
    return total * (1 + 1e-9)


def _sweep(tmp_path: Path, name: str, budget: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lora_forecast", "--multirun", *TOY, *SWEEP,
               f"output_dir={tmp_path}", f"budget.max_flops={budget}",
               f"hydra.sweep.dir={tmp_path / name}"]
    return subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)


def test_a_budgeted_sweep_through_submitit_local(tmp_path: Path) -> None:
    budget = _budget_for_the_four_trials(tmp_path)
    done = _sweep(tmp_path, "sweep", budget)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="default-default",
                              storage=open_storage(f"sqlite:///{tmp_path}/optuna.sqlite"))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    # each trial ran in a submitit job of its own (its folder holds the pickled job and logs)
    assert len({p.name for p in (tmp_path / "sweep").glob(".submitit/*/*_submitted.pkl")}) == 4
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", create=False) as ledger:
        rows = ledger.rows("default")
        assert [r.status for r in rows] == ["completed"] * 4  # every row settled
        assert ledger.study_spend("default").total <= budget
    assert all(0 < r.spent_flops <= r.predicted_flops for r in rows)
    # the batches ran two trials at once: two processes, neither the sweeper, overlapping
    assert len({r.pid for r in rows}) == 4 and os.getpid() not in {r.pid for r in rows}
    for first, second in (rows[0:2], rows[2:4]):
        assert max(first.created_at, second.created_at) < min(first.updated_at, second.updated_at)

    again = _sweep(tmp_path, "again", budget)  # the study is complete: nothing to launch
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list((tmp_path / "again").glob("trial_*"))
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite", create=False) as ledger:
        assert [r.run_id for r in ledger.rows("default")] == [r.run_id for r in rows]


class _Submitted(Exception):
    """Raised instead of calling sbatch, carrying the script that would have been submitted."""


def test_the_slurm_preset_becomes_sbatch_flags(tmp_path: Path, monkeypatch) -> None:
    fake_bin = tmp_path / "bin"  # submitit looks for srun before it builds anything
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    def capture(executor, fn, *args):
        raise _Submitted(executor._executor._make_submission_file_text("python -m job", "uid"))

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=30", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    with pytest.raises(_Submitted) as submitted:
        launcher.launch([["lora.rank=2"]], initial_job_idx=0)
    lines = set(str(submitted.value).splitlines())
    for flag in ("--partition=gpu", "--time=30", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--mem=32GB", "--ntasks-per-node=1", "--nodes=1"):
        assert f"#SBATCH {flag}" in lines, (flag, sorted(lines))
