"""Whole sweeps through the budgeted Optuna sweeper, on a fake task that runs in milliseconds.

The fake app (tests/sweeper_app/app.py) composes the project's real config and uses the real
cost prediction, FLOPs ledger, results.json and trial reporter; only training is synthetic.
Sweeps run in-process through Hydra (as Hydra's own plugin tests do), except the two that
need separate processes: a worker that crashes, and two workers sharing one study.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, subprocess_env
from hydra import compose, initialize_config_dir
from hydra._internal.hydra import Hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from optuna.trial import TrialState

from lora_forecast.budget.ledger import Ledger
from lora_forecast.config import to_settings
from lora_forecast.planning import predict_cost
from lora_forecast.training.pruning import open_storage

pytestmark = pytest.mark.integration  # several processes or a whole command

APP = REPO / "tests" / "sweeper_app" / "app.py"
_spec = importlib.util.spec_from_file_location("sweeper_app", APP)
app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(app)

# `hparams_search=X` needs `hparams_search: null` in conf/config.yaml's defaults; append otherwise.
_ROOT_DEFAULTS = (REPO / "conf" / "config.yaml").read_text()
HS = "hparams_search" if "hparams_search" in _ROOT_DEFAULTS else "+hparams_search"
FAKE = ["+experiment=smoke", "train.max_steps=30", "train.eval_every=10"]
GRID = [f"{HS}=lr_rank", *FAKE]  # 9 trials: lr {1e-5, 5e-5, 1e-4} x rank {2, 4, 8}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def multirun(tmp: Path, overrides: list[str], sweep: str = "sweep") -> list:
    """Run ``app.py --multirun <overrides>`` in this process; returns the launched batches."""
    GlobalHydra.instance().clear()
    hydra_ = Hydra.create_main_hydra_file_or_module(
        calling_file=str(APP), calling_module=None, config_path=str(app.CONF_DIR),
        job_name="app")
    try:
        return hydra_.multirun(
            config_name="config", task_function=app.task, with_log_configuration=False,
            overrides=[*overrides, f"output_dir={tmp}", f"hydra.sweep.dir={tmp}/{sweep}"])
    finally:
        GlobalHydra.instance().clear()


def study_of(tmp: Path, name: str = "smoke-lr_rank") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(f"sqlite:///{tmp}/optuna.sqlite"))


def results(tmp: Path, sweep: str = "sweep") -> dict:
    return yaml.safe_load((tmp / sweep / "optimization_results.yaml").read_text())


def launched_dirs(tmp: Path, sweep: str = "sweep") -> list[Path]:
    return sorted(p for p in (tmp / sweep).iterdir() if p.is_dir())


def trial_cost(tmp: Path, overrides: list[str]) -> float:
    """The FLOPs the sweeper will predict for one trial of this sweep."""
    with initialize_config_dir(str(app.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"output_dir={tmp}"])
    return predict_cost(to_settings(cfg)).total


def test_grid_sweep_completes_and_finds_the_best_point(tmp_path):
    batches = multirun(tmp_path, GRID)
    assert sum(len(b) for b in batches) == 9
    study = study_of(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 9
    assert len({tuple(t.params.values()) for t in study.trials}) == 9
    summary = results(tmp_path)
    assert summary["best_params"] == {"train.lr": 5e-5, "lora.rank": 8}
    assert "train.lr=5e-05" in summary["best_overrides"]
    assert [Path(t["run_dir"]).name for t in summary["trials"]] == [f"trial_{n}" for n in range(9)]
    assert all((Path(t["run_dir"]) / "results.json").is_file() for t in summary["trials"])
    # every job learnt its trial, and the jobs were grouped under the study's name
    assert all(t.intermediate_values for t in study.trials)


def test_budget_admits_some_trials_and_refuses_the_rest_without_launching(tmp_path):
    lrs = "choice(1e-5,2e-5,3e-5,5e-5,7e-5,1e-4,2e-4,3e-4,5e-4)"
    sweep = [*GRID, f"train.lr={lrs}", "lora.rank=4", "hydra.sweeper.n_jobs=3"]
    cost = trial_cost(tmp_path, [*FAKE, "train.lr=1e-5", "lora.rank=4",
                                 "data.context_tokens=320", "train.patience=2"])
    budget = 4.5 * cost  # pays for 4 of 9 equal trials
    multirun(tmp_path, [*sweep, f"budget.max_flops={budget}"])
    trials = study_of(tmp_path).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    refused = [t for t in trials if t.user_attrs.get("rejected_by") == "budget"]
    assert (len(complete), len(refused)) == (4, 5)
    # batch 1 admitted 3 (each counting the others' pending predictions), batch 2 one of three
    assert all(t.state == TrialState.PRUNED and "rejected_at" not in t.user_attrs
               and t.user_attrs["predicted_flops"] == pytest.approx(cost) for t in refused)
    assert len(launched_dirs(tmp_path)) == 4
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite") as ledger:
        assert ledger.study_spend("smoke").total <= budget
        assert len(ledger.rows("smoke")) == 4


def test_failing_and_nan_trials_do_not_kill_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_LR", "1e-4")
    monkeypatch.setenv("FAKE_NAN_LR", "1e-5")
    multirun(tmp_path, [*GRID, "hydra.sweeper.max_failure_rate=0.7"])
    trials = study_of(tmp_path).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 6 and sum(t.state == TrialState.COMPLETE for t in trials) == 3
    errors = sorted(t.user_attrs["error"] for t in failed)
    assert "injected failure at lr=0.0001" in errors[0] + errors[-1]
    assert any("not finite" in e for e in errors)
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite") as ledger:  # settled, none left open
        assert {r.status for r in ledger.rows("smoke")} == {"completed", "failed"}

    monkeypatch.delenv("FAKE_FAIL_LR")  # the cause is fixed: a rerun retries the failures
    monkeypatch.delenv("FAKE_NAN_LR")
    batches = multirun(tmp_path, GRID, sweep="rerun")
    assert sum(len(b) for b in batches) == 6
    done = [t for t in study_of(tmp_path).trials if t.state == TrialState.COMPLETE]
    assert len({tuple(t.params.values()) for t in done}) == 9


def test_too_many_failures_abort_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_LR", "5e-5")
    with pytest.raises(HydraException, match="exceed max_failure_rate=0.0"):
        multirun(tmp_path, [*GRID, "hydra.sweeper.max_failure_rate=0.0"])
    summary = results(tmp_path)  # written even when the sweep aborts
    assert summary["states"] == {"FAIL": 1}


def test_rerunning_resumes_after_a_crash_and_then_launches_nothing(tmp_path):
    env = subprocess_env(FAKE_CRASH_TRIAL="4")
    cmd = [sys.executable, str(APP), "--multirun", *GRID, f"output_dir={tmp_path}",
           f"hydra.sweep.dir={tmp_path}/crashed"]
    crashed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    states = [t.state for t in study_of(tmp_path).trials]
    assert states == [TrialState.COMPLETE] * 4 + [TrialState.RUNNING]

    batches = multirun(tmp_path, GRID, sweep="resumed")
    assert sum(len(b) for b in batches) == 5  # the crashed trial again, and 4 never started
    trials = study_of(tmp_path).trials
    assert trials[4].state == TrialState.FAIL
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 9 and len({tuple(t.params.values()) for t in done}) == 9
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite") as ledger:  # the dead run reconciled
        assert not [r for r in ledger.rows("smoke") if r.is_open]

    assert multirun(tmp_path, GRID, sweep="again") == []


def test_pruning_stops_bad_trials_early(tmp_path):
    multirun(tmp_path, [f"{HS}=tpe", *FAKE, "hydra.sweeper.n_trials=8",
                        "hydra.sweeper.pruner.options.n_startup_trials=2",
                        "hydra.sweeper.pruner.options.n_warmup_steps=0"])
    trials = study_of(tmp_path, "smoke-tpe").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state for t in trials]
    for trial in pruned:
        assert trial.user_attrs["pruned_at_step"] < 30
        assert trial.user_attrs["status"] == "pruned"
        assert trial.user_attrs["flops_spent"] < trial.user_attrs["predicted_flops"]


def test_two_workers_share_one_study_and_complete_exactly_n_trials(tmp_path):
    env = subprocess_env(FAKE_SLEEP="0.2")
    storage = f"journal:{tmp_path}/optuna.log"
    workers = [subprocess.Popen(  # one sweep directory: trial-numbered run dirs never collide
        [sys.executable, str(APP), "--multirun", *GRID, "hydra.sweeper.sampler.name=random",
         "hydra.sweeper.sampler.seed=" + str(i), "hydra.sweeper.n_trials=6",
         f"hydra.sweeper.storage={storage}", f"output_dir={tmp_path}",
         f"hydra.sweep.dir={tmp_path}/shared"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    study = optuna.load_study(study_name="smoke-lr_rank", storage=open_storage(storage))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    others = [t for t in study.trials if t.state != TrialState.COMPLETE]
    assert all(t.user_attrs.get("cancelled") == "surplus" for t in others)
    # each trial ran exactly once, on one worker or the other, in its own run directory
    assert [d.name for d in launched_dirs(tmp_path, "shared")] == sorted(
        f"trial_{t.number}" for t in complete)
    assert all((d / "results.json").is_file() for d in launched_dirs(tmp_path, "shared"))


@pytest.mark.parametrize("bad_first", ["missing-file", "shape-check"])
def test_a_trial_failing_admission_is_failed_and_the_sweep_goes_on(tmp_path, bad_first):
    """A 2-point grid with a point that cannot run: it FAILs with the error and nothing is
    reserved for it, the other point runs to completion, the sweep exits normally."""
    from lora_forecast.data.generator import ensure_synthetic

    good = ensure_synthetic(tmp_path / "good.h5", 40, 0)
    if bad_first == "missing-file":
        grid = [f"data.path=choice({tmp_path / 'missing.h5'},{good})", "eval.n_systems=2"]
        error = "DataFormatError: " + str(tmp_path / "missing.h5") + ": file not found"
    else:
        grid = [f"data.path={good}", "eval.n_systems=choice(100000,2)"]
        error = "ConfigError: eval.n_systems: 100000 exceeds the 4 test series long enough"
    batches = multirun(tmp_path, [*FAKE, "hydra/sweeper=budgeted_optuna", "data.source=file",
                                  "hydra.sweeper.sampler.name=grid", *grid])
    assert sum(len(b) for b in batches) == 1  # only the good point was launched
    trials = study_of(tmp_path, "smoke-smoke").trials  # the grid sampler picks the order
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 2 and len(failed) == 1
    assert failed[0].user_attrs["error"].startswith(error), failed[0].user_attrs["error"]
    assert results(tmp_path)["states"] == {"FAIL": 1, "COMPLETE": 1}
    with Ledger(f"sqlite:///{tmp_path}/ledger.sqlite") as ledger:
        assert [r.status for r in ledger.rows("smoke")] == ["completed"]
