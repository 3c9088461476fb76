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
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lora_forecast.admission import (
    RunRejected,
    admit,
    flops_block,
    remaining_read_only,
    run_identity,
)
from lora_forecast.budget.guard import format_dry_run
from lora_forecast.budget.ledger import Ledger
from lora_forecast.budget.meter import FlopsMeter
from lora_forecast.command import reported_errors
from lora_forecast.config import Settings, resolved_config, to_settings
from lora_forecast.config.groups import schema_choice_error
from lora_forecast.errors import ConfigError, LoraForecastError
from lora_forecast.job import discard_unused_run_dir, job_log_file, log_to_file, rerun_command
from lora_forecast.models.build import check_model_available
from lora_forecast.planning import (
    CostPrediction,
    data_parallel_processes,
    predict_cost,
    short_training_context,
)
from lora_forecast.results import write_results
from lora_forecast.summary import SummaryContext, format_summary
from lora_forecast.tracking import finish_run, make_tracker
from lora_forecast.training.distributed import is_main_process
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

    exit_code = EXIT_INTERRUPTED


def run_task(cfg: DictConfig, run_dir: Path, *, multirun: bool = False) -> float | None:
    """Run one job; returns the monitored metric (what a sweeper optimises).

    User errors follow :func:`lora_forecast.command.reported_errors`: one ``error: ...`` line
    and exit 1 (130 when interrupted), a run folder holding nothing but Hydra's files removed;
    inside a multirun they are re-raised for the sweeper to record as a failed trial.
    """
    with reported_errors(reraise=multirun,
                         on_error=lambda: discard_unused_run_dir(run_dir, Path(cfg.output_dir))):
        return _run_task(cfg, run_dir, multirun)


def _run_task(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> float | None:
    if HydraConfig.initialized():  # ``model=schema``: an internal node, refused as a choice
        refused = schema_choice_error(HydraConfig.get().runtime.choices)
        if refused:
            raise ConfigError(refused)
    settings = to_settings(cfg)
    config = resolved_config(cfg)
    if not settings.budget.dry_run and settings.task != "baselines" and not settings.eval.skip_llm:
        check_model_available(settings.model)  # first: a fresh clone learns about the model
    prediction = predict_cost(settings)
    shortfall = short_training_context(settings)
    if shortfall:
        log.warning(shortfall)
    if settings.budget.dry_run:
        print(format_dry_run(prediction, remaining_read_only(settings), settings.budget.max_flops))
        if not multirun:  # a dry run writes nothing under outputs/runs
            discard_unused_run_dir(run_dir, Path(cfg.output_dir))
        return None
    # ranks > 0 of a data-parallel job never open the ledger: rank 0 reserves, meters, settles
    main = is_main_process()
    ledger = Ledger(settings.budget.ledger_url) if main else None
    try:
        return _admitted_run(settings, config, prediction, ledger, run_dir)
    finally:
        if ledger is not None:
            ledger.close()


def _admitted_run(
    settings: Settings,
    config: dict[str, Any],
    prediction: CostPrediction,
    ledger: Ledger | None,
    run_dir: Path,
) -> float | None:
    from lora_forecast.run import RunContext, run  # model/data stack only for admitted runs
    from lora_forecast.training.distributed import from_rank0, make_accelerator
    from lora_forecast.training.pruning import TrialReporter

    accelerator = make_accelerator(settings.train.precision)
    main = accelerator.is_main_process
    predicted_processes = data_parallel_processes()
    if accelerator.num_processes != predicted_processes:  # nothing is reserved yet
        raise LoraForecastError(f"launcher: WORLD_SIZE={predicted_processes} but accelerate runs "
                                f"{accelerator.num_processes} process(es); launch with torchrun")
    run_dir = Path(from_rank0(accelerator, str(run_dir)))  # Hydra's ${now} may differ per rank
    try:
        meter = (admit(settings, config, prediction, ledger, run_dir) if main
                 else FlopsMeter(None, None, prediction.total))
    except RunRejected as rejected:
        _announce(settings, rejected.results, run_dir)
        raise
    identity = run_identity(settings, config, meter.run_id)
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
    flops = flops_block(settings, prediction, meter.spent, ledger)
    results = {**outcome, "flops": {**flops, "spent_by_kind": meter.by_kind}}
    results.setdefault("end_reason", outcome["status"])
    write_results(run_dir, results)
    if tracker is not None:
        finish_run(tracker, run_dir, results)
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


def monitored_value(settings: Settings, payload: dict[str, Any]) -> float | None:
    """The float a sweeper optimises: the best monitored validation value, else test MSE."""
    train = payload.get("train") or {}
    if train.get("best_metric") is not None:
        return float(train["best_metric"])
    metrics = payload.get("metrics") or {}
    return metrics.get("mse")
