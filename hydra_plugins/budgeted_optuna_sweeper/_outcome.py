"""A finished job -> what Optuna is told about its trial.

=====================================================  =========  ===========================
job                                                    state      user attributes
=====================================================  =========  ===========================
returned a finite number (one per objective)           COMPLETE   run_dir, status, flops_spent
results.json status ``pruned`` / raised TrialPruned    PRUNED     + pruned_at_step (job's)
status ``rejected`` / raised BudgetExceededError       PRUNED     rejected_by=budget, at job
status ``stopped_budget`` (reservation ran out)        PRUNED     stopped_by=budget
status ``interrupted`` (SIGTERM, preemption)           FAIL       error; trial re-queued
raised anything else, returned NaN or a non-number     FAIL       error
=====================================================  =========  ===========================

A PRUNED trial's value is its last reported intermediate value (Optuna's rule); it never
becomes the best trial, which only COMPLETE trials can be.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

MAX_ERROR_CHARS = 2000


@dataclass
class Outcome:
    state: TrialState
    values: list[float] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retry: bool = False  # re-queue the trial (it was interrupted, not wrong)


def run_dir_of(ret: JobReturn) -> Path | None:
    """The job's output directory (``working_dir`` is the cwd unless ``hydra.job.chdir``)."""
    out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
    return Path(out) if out else None


def read_results(run_dir: Path | None) -> dict[str, Any]:
    path = run_dir / "results.json" if run_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def as_values(value: Any, n_objectives: int) -> list[float]:
    """The objective values of a job's return (ValueError if not ``n_objectives`` finite
    numbers)."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    if len(items) != n_objectives:
        raise ValueError(f"expected {n_objectives} objective value(s), got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            try:
                item = float(item)  # numpy / torch scalars
            except (TypeError, ValueError):
                raise ValueError(f"objective must be a number, got {value!r}") from None
        if not math.isfinite(item):
            raise ValueError(f"objective is not finite: {value!r}")
        out.append(float(item))
    return out


def _job_attrs(ret: JobReturn, results: dict[str, Any]) -> dict[str, Any]:
    run_dir = run_dir_of(ret)
    attrs: dict[str, Any] = {"run_dir": str(run_dir) if run_dir else None,
                             "status": results.get("status")}
    flops = results.get("flops")
    if isinstance(flops, dict) and isinstance(flops.get("spent"), int | float):
        attrs["flops_spent"] = float(flops["spent"])
    return {k: v for k, v in attrs.items() if v is not None}


def _job_exception(ret: JobReturn) -> Exception | None:
    """The exception a failed job raised (``return_value`` re-raises it), else None."""
    if ret.status != JobStatus.FAILED:
        return None
    try:
        ret.return_value  # noqa: B018 - the property re-raises the job's exception
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _by_status(status: str | None, exc: BaseException | None) -> Outcome | None:
    """The outcome implied by results.json's status or the exception type, if any."""
    name = type(exc).__name__ if exc is not None else ""
    if status == "pruned" or isinstance(exc, optuna.TrialPruned):
        return Outcome(TrialState.PRUNED)
    if status == "rejected" or name == "BudgetExceededError":
        return Outcome(TrialState.PRUNED, attrs={"rejected_by": "budget", "rejected_at": "job"},
                       error=_error_text(exc) if exc else None)
    if status == "stopped_budget":
        return Outcome(TrialState.PRUNED, attrs={"stopped_by": "budget"})
    if status == "interrupted" or name == "RunInterrupted":
        error = _error_text(exc) if exc else "interrupted"
        return Outcome(TrialState.FAIL, attrs={"error": error}, error=error, retry=True)
    return None


def classify(ret: JobReturn, n_objectives: int, pruned_by_reporter: bool) -> Outcome:
    """What to tell Optuna about the trial this job ran (see the module docstring)."""
    results = read_results(run_dir_of(ret))
    exc = _job_exception(ret)
    outcome = _by_status(results.get("status"), exc)
    if outcome is None and pruned_by_reporter:
        outcome = Outcome(TrialState.PRUNED)
    if outcome is None and exc is not None:
        error = _error_text(exc)
        outcome = Outcome(TrialState.FAIL, attrs={"error": error}, error=error)
    if outcome is None:
        try:
            outcome = Outcome(TrialState.COMPLETE, as_values(ret.return_value, n_objectives))
        except ValueError as bad:
            outcome = Outcome(TrialState.FAIL, attrs={"error": str(bad)}, error=str(bad))
    outcome.attrs = {**_job_attrs(ret, results), **outcome.attrs}
    return outcome
