"""End to end: ``python -m lora_forecast --multirun`` with the budgeted Optuna sweeper on the
real task (tiny model, synthetic data, shrunk to seconds). One trial completes; the other is
pruned by the study's pruner (threshold, after 3 warm-up steps) before its last step,
so it skips the rest of training and the test forecasting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, subprocess_env
from optuna.trial import TrialState

from lora_forecast.budget.ledger import Ledger
from lora_forecast.training.pruning import open_storage

pytestmark = pytest.mark.integration  # several processes or a whole command

HS = ("hparams_search" if "hparams_search" in (REPO / "conf" / "config.yaml").read_text()
      else "+hparams_search")


def test_real_app_sweep_reports_prunes_and_settles_the_ledger(tmp_path):
    command = [
        sys.executable, "-m", "lora_forecast", "--multirun", "+experiment=smoke",
        f"{HS}=lr_rank", "train.lr=choice(1e-3)", "lora.rank=4",
        "train.max_steps=choice(2,4)", "train.eval_every=1", "eval.n_systems=2",
        "data.systems=30", "train.val_max_windows=2", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.name=threshold", "++hydra.sweeper.pruner.options.upper=0.0",
        "++hydra.sweeper.pruner.options.n_warmup_steps=3",
        f"output_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/sweep"]
    done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    study = optuna.load_study(study_name="smoke-lr_rank",
                              storage=open_storage(f"sqlite:///{tmp_path}/optuna.sqlite"))
    by_steps = {t.params["train.max_steps"]: t for t in study.trials}
    short, long = by_steps[2], by_steps[4]
    assert short.state == TrialState.COMPLETE and sorted(short.intermediate_values) == [1, 2]
    assert long.state == TrialState.PRUNED and long.user_attrs["pruned_at_step"] == 3
    for trial, status in ((short, "completed"), (long, "pruned")):
        results = json.loads((Path(trial.user_attrs["run_dir"]) / "results.json").read_text())
        assert results["status"] == status
        assert results["config"]["trial"]["number"] == trial.number
        assert results["config"]["logger"]["group"] == "smoke-lr_rank"
        assert 0 < results["flops"]["spent"] <= trial.user_attrs["predicted_flops"]
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite") as ledger:
        rows = {r.status: r for r in ledger.rows("smoke")}
    assert set(rows) == {"completed", "pruned"}
    assert rows["pruned"].spent_flops < rows["pruned"].predicted_flops  # no test forecasting
    summary = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert summary["best_params"]["train.max_steps"] == 2
