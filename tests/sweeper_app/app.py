"""A millisecond stand-in for ``python -m lora_forecast`` used by the sweeper tests.

Same config tree (the project's ``conf/``), same cost prediction, same FLOPs ledger
(reserve -> start -> finish), same results.json statuses and the same trial reporter as the
real task; only the training is synthetic: a validation curve whose final value is smallest at
lr 5e-5, rank 8, context 512. Faults are injected through environment variables (the sweeper
composes each trial's config for admission, so the config must stay the project's):

    FAKE_FAIL_LR=1e-4      raise for trials with this learning rate
    FAKE_NAN_LR=1e-5       return NaN for trials with this learning rate
    FAKE_CRASH_TRIAL=4     kill the whole process (sweeper included) when trial 4 starts
    FAKE_SLEEP=0.2         seconds per validation (lets parallel workers overlap)

    python tests/sweeper_app/app.py --multirun +experiment=smoke hparams_search=lr_rank
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lora_forecast.budget.guard import rejection_message
from lora_forecast.budget.ledger import Ledger, Rejection
from lora_forecast.config import Settings, register_configs, to_settings
from lora_forecast.errors import BudgetExceededError
from lora_forecast.paths import config_dir
from lora_forecast.planning import predict_cost
from lora_forecast.results import config_digest, write_results
from lora_forecast.training.pruning import TrialReporter

CONF_DIR = config_dir()
register_configs()


def synthetic_loss(settings: Settings, step: int) -> float:
    """Validation loss after ``step`` steps: decays towards a floor set by the hyperparameters."""
    floor = (math.log10(settings.train.lr / 5e-5)) ** 2 + 0.5 / settings.lora.rank
    floor += 0.2 * abs(math.log2(settings.data.context_tokens / 512))
    progress = step / max(settings.train.max_steps, 1)
    return floor * (1 + 2 * math.exp(-3 * progress)) + 0.5 * math.exp(-3 * progress)


def _inject_faults(settings: Settings) -> float | None:
    lr = settings.train.lr
    if os.environ.get("FAKE_CRASH_TRIAL") == str(settings.trial.number):
        os._exit(137)  # like a machine dying: no cleanup at all
    if "FAKE_FAIL_LR" in os.environ and math.isclose(lr, float(os.environ["FAKE_FAIL_LR"])):
        raise RuntimeError(f"injected failure at lr={lr}")
    if "FAKE_NAN_LR" in os.environ and math.isclose(lr, float(os.environ["FAKE_NAN_LR"])):
        return math.nan
    return None


def fake_train(settings: Settings, reporter: TrialReporter | None) -> tuple[str, float, int]:
    """(status, best value, steps done) of the synthetic training."""
    best, done, train = math.inf, 0, settings.train
    for step in range(train.eval_every, train.max_steps + 1, train.eval_every):
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        value = synthetic_loss(settings, step)
        best, done = min(best, value), step
        if reporter is not None and reporter.report(step, value):
            return "pruned", best, done
    return "completed", best, done


def fake_task(settings: Settings, config: dict, run_dir: Path) -> float:
    budget = settings.budget
    predicted = predict_cost(settings).total
    with Ledger(budget.ledger_url) as ledger:
        reservation = ledger.reserve(
            study=budget.study, experiment=settings.experiment, config_digest=config_digest(config),
            accounting=budget.accounting, predicted=predicted, budget=budget.max_flops)
        if isinstance(reservation, Rejection):
            write_results(run_dir, {"status": "rejected", "flops": {"predicted": predicted,
                                                                    "spent": 0.0}})
            raise BudgetExceededError(rejection_message(reservation))
        ledger.start(reservation.run_id)
        status, spent = "failed", 0.0
        try:
            nan = _inject_faults(settings)
            status, best, done = fake_train(settings, TrialReporter.from_settings(settings.trial))
            spent = predicted * done / max(settings.train.max_steps, 1)
        finally:
            ledger.finish(reservation.run_id, status, spent)
    write_results(run_dir, {"status": status, "metrics": {"val_loss": best},
                            "flops": {"predicted": predicted, "spent": spent}})
    return nan if nan is not None else best


def task(cfg: DictConfig) -> float:
    """The task function (tests run it in-process through Hydra; see test_sweeper_sweeps.py)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    return fake_task(to_settings(cfg), config, Path(HydraConfig.get().runtime.output_dir))


main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(task)

if __name__ == "__main__":
    main()
