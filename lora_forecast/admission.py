"""A run's admission to its study's budget: reserve the predicted FLOPs before anything loads.

The task (:mod:`lora_forecast.task`) calls :func:`admit` after validating the config and
predicting the cost, and before any model or data is loaded; a rejection writes the run's
``results.json`` (status ``rejected``, nothing spent) and raises. A run being resumed reopens
its ledger row and is charged again for the work it must redo (see
:mod:`lora_forecast.budget.journal`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_forecast.budget.callback import read_run_id, write_run_id
from lora_forecast.budget.guard import rejection_message
from lora_forecast.budget.journal import JOURNAL_FILE, CarriedSpend, carried_spend
from lora_forecast.budget.ledger import Ledger, LedgerError, Rejection
from lora_forecast.budget.meter import FlopsMeter
from lora_forecast.config import Settings
from lora_forecast.errors import BudgetExceededError, ConfigError
from lora_forecast.planning import CostPrediction
from lora_forecast.results import config_digest, write_results
from lora_forecast.training import checkpoint as ckpt


class RunRejected(BudgetExceededError):
    """The ledger refused the run; ``results`` is what its ``results.json`` now says."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.results = results


def remaining_read_only(settings: Settings) -> float:
    """The study's remaining budget without creating or writing the ledger (dry runs)."""
    try:
        ledger = Ledger(settings.budget.ledger_url, create=False)
    except LedgerError:  # no ledger yet: nothing spent
        return settings.budget.max_flops
    with ledger:
        return ledger.remaining(settings.budget.study, settings.budget.max_flops)


def run_identity(settings: Settings, config: dict[str, Any], run_id: str | None
                 ) -> dict[str, Any]:  # fmt: skip
    """The fields that say which run ``results.json`` describes."""
    return {
        "run_id": run_id,
        "experiment": settings.experiment,
        "study": settings.budget.study,
        "task": settings.task,
        "config_digest": config_digest(config),
        "config": config,
    }


def flops_block(settings: Settings, prediction: CostPrediction, spent: float,
                ledger: Ledger) -> dict[str, Any]:  # fmt: skip
    """``results.json``'s ``flops``: predicted, spent, the budget and what remains of it."""
    budget = settings.budget
    return {
        "predicted": prediction.total,
        "spent": spent,
        "accounting": budget.accounting,
        "budget": budget.max_flops,
        "remaining": ledger.remaining(budget.study, budget.max_flops),
        "breakdown": prediction.as_dict(),
    }


def admit(settings: Settings, config: dict[str, Any], prediction: CostPrediction,
          ledger: Ledger, run_dir: Path) -> FlopsMeter:  # fmt: skip
    """Reserve the predicted FLOPs (or reopen the run being resumed); reject if over budget.

    A resumed run reserves its whole-run prediction plus the work it must redo (done after its
    checkpoint, lost in a crash: charged again), and its meter starts from everything it has
    spent.

    Raises:
        RunRejected: the study cannot afford the run (``results.json`` says so).
    """
    budget = settings.budget
    run_id = _previous_run_id(settings, run_dir)
    carried = _carried_spend(settings, run_dir, run_id)
    reservation = ledger.reserve(
        study=budget.study,
        experiment=settings.experiment,
        config_digest=config_digest(config),
        accounting=budget.accounting,
        predicted=prediction.total + carried.redone,
        budget=budget.max_flops,
        run_id=run_id,
    )
    if isinstance(reservation, Rejection):
        results = {
            **run_identity(settings, config, reservation.run_id),
            "status": "rejected",
            "end_reason": "rejected",
            "flops": flops_block(settings, prediction, 0.0, ledger),
        }
        write_results(run_dir, results)
        raise RunRejected(rejection_message(reservation), results)
    write_run_id(run_dir, reservation.run_id)
    ledger.start(reservation.run_id)
    meter = FlopsMeter.from_reservation(ledger, reservation, journal=run_dir / JOURNAL_FILE)
    meter.load_state_dict({"run_id": reservation.run_id, "spent": carried.spent})
    return meter


def _carried_spend(settings: Settings, run_dir: Path, run_id: str | None) -> CarriedSpend:
    """What the run being resumed already spent, and how much of it its checkpoint keeps."""
    train = settings.train
    state = None
    if train.resume_from is not None:
        try:
            state = ckpt.read_state(Path(train.resume_from))
        except (ValueError, OSError) as exc:  # before anything is reserved
            raise ConfigError(f"train.resume_from: {exc}") from exc
    elif run_id is not None:
        state = ckpt.latest_state(run_dir / "checkpoints")
    if run_id is None:
        return CarriedSpend()
    return carried_spend(run_dir / JOURNAL_FILE, run_id, state)


def _previous_run_id(settings: Settings, run_dir: Path) -> str | None:
    """The ledger row to continue when resuming inside the same run directory."""
    resuming = settings.train.resume == "auto" or settings.train.resume_from is not None
    return read_run_id(run_dir) if resuming else None
