"""The task wrapper: every side effect of a job in one place, around :func:`lora_forecast.run.run`.

Order matters and is the budget's guarantee: validate the config, predict the cost, then (a)
``budget.dry_run`` prints and stops, or (b) the ledger admits or rejects the run *before* any
model or data is loaded. Whatever happens next, results.json and the ledger row are settled
here, and the tracker is closed. User errors become one line and a non-zero exit.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from accelerate import Accelerator, PartialState
from omegaconf import DictConfig

from lora_forecast.budget.callback import read_run_id, write_run_id
from lora_forecast.budget.guard import format_dry_run, rejection_message
from lora_forecast.budget.journal import JOURNAL_FILE, CarriedSpend, carried_spend
from lora_forecast.budget.ledger import Ledger, LedgerError, Rejection
from lora_forecast.budget.meter import FlopsMeter
from lora_forecast.cli import report_user_error
from lora_forecast.config import Settings, resolved_config, to_settings
from lora_forecast.errors import BudgetExceededError, ConfigError, LoraForecastError
from lora_forecast.job import discard_unused_run_dir, job_log_file, log_to_file, rerun_command
from lora_forecast.models.build import check_model_available
from lora_forecast.planning import (
    CostPrediction,
    data_parallel_processes,
    predict_cost,
    short_training_context,
)
from lora_forecast.results import config_digest, write_results
from lora_forecast.summary import SummaryContext, format_summary
from lora_forecast.tracking import make_tracker
from lora_forecast.training import checkpoint as ckpt
from lora_forecast.training.signals import graceful_stop

log = logging.getLogger(__name__)

# End reason -> ledger/results status (what a sweeper and the report read).
STATUS_OF_END = {
    "max_steps": "completed",
    "early_stopped": "completed",
    "completed": "completed",
    "stopped_budget": "stopped_budget",
    "interrupted": "interrupted",
    "pruned": "pruned",
}
EXIT_INTERRUPTED = 130


class RunInterrupted(LoraForecastError):
    """SIGINT/SIGTERM stopped the run after a checkpoint; resume with train.resume=auto."""


def precision_for(settings: Settings) -> str:
    """accelerate's mixed_precision: bf16 autocast on CUDA by default, fp32 elsewhere."""
    import torch

    chosen = settings.train.precision
    if chosen == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[chosen]


def run_task(cfg: DictConfig, run_dir: Path, *, multirun: bool = False) -> float | None:
    """Run one job; returns the monitored metric (what a sweeper optimises).

    User errors print ``error: ...`` and exit 1 (or are re-raised under ``HYDRA_FULL_ERROR=1``
    or inside a multirun, where the sweeper records them as a failed trial).
    """
    try:
        return _run_task(cfg, run_dir, multirun)
    except LoraForecastError as exc:
        log_to_file(f"error: {exc}", logging.ERROR)
        if multirun:
            raise
        discard_unused_run_dir(run_dir, Path(cfg.output_dir))  # no empty run folder left behind
        sys.exit(report_user_error(exc, EXIT_INTERRUPTED if isinstance(exc, RunInterrupted) else 1))
    except Exception:  # a bug: Hydra prints it; the run's log keeps the traceback too
        log_to_file(traceback.format_exc(), logging.ERROR)
        raise


def _run_task(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> float | None:
    settings = to_settings(cfg)
    config = resolved_config(cfg)
    if not settings.budget.dry_run and settings.task != "baselines" and not settings.eval.skip_llm:
        check_model_available(settings.model)  # first: a fresh clone learns about the model
    prediction = predict_cost(settings)
    shortfall = short_training_context(settings)
    if shortfall:
        log.warning(shortfall)
    if settings.budget.dry_run:
        print(format_dry_run(prediction, _remaining_read_only(settings), settings.budget.max_flops))
        if not multirun:  # a dry run writes nothing under outputs/runs
            discard_unused_run_dir(run_dir, Path(cfg.output_dir))
        return None
    # ranks > 0 of a data-parallel job never open the ledger: rank 0 reserves, meters, settles
    main = PartialState(cpu=not _has_cuda()).is_main_process  # the Accelerator's shared state
    ledger = Ledger(settings.budget.ledger_url) if main else None
    try:
        return _admitted_run(settings, config, prediction, ledger, run_dir)
    finally:
        if ledger is not None:
            ledger.close()


def _remaining_read_only(settings: Settings) -> float:
    """The study's remaining budget without creating or writing the ledger (dry runs)."""
    try:
        ledger = Ledger(settings.budget.ledger_url, create=False)
    except LedgerError:  # no ledger yet: nothing spent
        return settings.budget.max_flops
    with ledger:
        return ledger.remaining(settings.budget.study, settings.budget.max_flops)


def _identity(settings: Settings, config: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "experiment": settings.experiment,
        "study": settings.budget.study,
        "task": settings.task,
        "config_digest": config_digest(config),
        "config": config,
    }


def _admit(
    settings: Settings,
    config: dict[str, Any],
    prediction: CostPrediction,
    ledger: Ledger,
    run_dir: Path,
) -> FlopsMeter:
    """Reserve the predicted FLOPs (or reopen the run being resumed); reject if over budget.

    A resumed run reserves its whole-run prediction plus the work it must redo (done after its
    checkpoint, lost in a crash: charged again, see :mod:`lora_forecast.budget.journal`), and
    its meter starts from everything it has spent.
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
            **_identity(settings, config, reservation.run_id),
            "status": "rejected",
            "end_reason": "rejected",
            "flops": _flops_block(settings, prediction, 0.0, ledger),
        }
        write_results(run_dir, results)
        _announce(settings, results, run_dir)
        raise BudgetExceededError(rejection_message(reservation))
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


def _flops_block(
    settings: Settings, prediction: CostPrediction, spent: float, ledger: Ledger
) -> dict[str, Any]:
    budget = settings.budget
    return {
        "predicted": prediction.total,
        "spent": spent,
        "accounting": budget.accounting,
        "budget": budget.max_flops,
        "remaining": ledger.remaining(budget.study, budget.max_flops),
        "breakdown": prediction.as_dict(),
    }


def _admitted_run(
    settings: Settings,
    config: dict[str, Any],
    prediction: CostPrediction,
    ledger: Ledger | None,
    run_dir: Path,
) -> float | None:
    from lora_forecast.run import RunContext, run  # model/data stack only for admitted runs
    from lora_forecast.training.distributed import from_rank0
    from lora_forecast.training.pruning import TrialReporter

    accelerator = Accelerator(mixed_precision=precision_for(settings), cpu=not _has_cuda())
    main = accelerator.is_main_process
    predicted_processes = data_parallel_processes()
    if accelerator.num_processes != predicted_processes:  # nothing is reserved yet
        raise LoraForecastError(f"launcher: WORLD_SIZE={predicted_processes} but accelerate runs "
                                f"{accelerator.num_processes} process(es); launch with torchrun")
    run_dir = Path(from_rank0(accelerator, str(run_dir)))  # Hydra's ${now} may differ per rank
    meter = (
        _admit(settings, config, prediction, ledger, run_dir)
        if main
        else FlopsMeter(None, None, prediction.total)
    )
    identity = _identity(settings, config, meter.run_id)
    started, status, payload, tracker = time.time(), "failed", {}, None
    try:  # from here on the reservation is held: whatever fails is settled in `finally`
        tracker = make_tracker(
            settings.logger,
            run_dir=run_dir,
            run_name=run_dir.name,
            config=config,
            is_main_process=main,
        )
        with graceful_stop() as stop:
            ctx = RunContext(
                meter=meter,
                prediction=prediction,
                accelerator=accelerator,
                tracker=tracker,
                reporter=TrialReporter.from_settings(settings.trial),
                stop=stop,
            )
            payload = run(settings, run_dir, ctx)
        status = STATUS_OF_END.get(payload.get("end_reason", "completed"), "completed")
    finally:
        meter.settle(status)
        if main:
            outcome = {**identity, "status": status, **payload,
                       "seconds": time.time() - started}
            results = _record(settings, run_dir, outcome, prediction, meter, ledger, tracker)
            _announce(settings, results, run_dir, sys.exc_info()[1])
    if status == "interrupted":
        raise RunInterrupted(
            f"run interrupted; resume with train.resume=auto hydra.run.dir={run_dir}"
        )
    return monitored_value(settings, payload)


def _record(
    settings: Settings, run_dir: Path, outcome: dict[str, Any], prediction: CostPrediction,
    meter: FlopsMeter, ledger: Ledger, tracker: Any,
) -> dict[str, Any]:  # fmt: skip
    """Write results.json (whatever the status) from the run's ``outcome`` (identity, status,
    payload, seconds) and its FLOPs, close the tracker; return the results."""
    flops = _flops_block(settings, prediction, meter.spent, ledger)
    results = {**outcome, "flops": {**flops, "spent_by_kind": meter.by_kind}}
    results.setdefault("end_reason", outcome["status"])
    write_results(run_dir, results)
    if tracker is not None:
        _finish_tracker(tracker, run_dir, results)
    return results


def _announce(settings: Settings, results: dict[str, Any], run_dir: Path,
              error: BaseException | None = None) -> None:  # fmt: skip
    """Print the end-of-run summary and write it to the run's log."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0] if error else None
    ctx = SummaryContext(run_dir=str(run_dir), command=rerun_command(),
                         monitor=settings.train.monitor, log_file=job_log_file(), error=reason)
    text = format_summary(results, ctx)
    print(text, flush=True)
    log_to_file(text)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _finish_tracker(tracker: Any, run_dir: Path, results: dict[str, Any]) -> None:
    metrics = results.get("metrics") or {}
    summary = {f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
    summary.update({f"baseline/{name}/{k}": v
                    for name, scores in (results.get("baselines") or {}).items()
                    for k, v in scores.items() if isinstance(v, int | float)})
    summary.update({f"paired/{metric}/{name}": c["mean"]
                    for metric, block in (results.get("paired") or {}).items()
                    for name, c in block.items()})
    summary.update(
        {
            "status": results["status"],
            "end_reason": results["end_reason"],
            "flops/spent": results["flops"]["spent"],
        }
    )
    for image in ("forecasts.png", "error_per_step.png"):
        if (run_dir / image).is_file():
            tracker.log_image(image.removesuffix(".png"), run_dir / image)
    tracker.set_summary(summary)
    tracker.finish(0 if results["status"] != "failed" else 1)


def monitored_value(settings: Settings, payload: dict[str, Any]) -> float | None:
    """The float a sweeper optimises: the best monitored validation value, else test MSE."""
    train = payload.get("train") or {}
    if train.get("best_metric") is not None:
        return float(train["best_metric"])
    metrics = payload.get("metrics") or {}
    return metrics.get("mse")
