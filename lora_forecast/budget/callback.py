"""Hydra callback that keeps the ledger honest around jobs the task itself could not close.

Admission happens in the task (Hydra turns exceptions raised in callbacks into warnings, so a
callback cannot refuse a job). This callback only cleans up and reports:

* ``on_run_start`` / ``on_multirun_start``: reconcile rows of this study left open by dead
  processes on this host (a SIGKILLed trial otherwise holds its reservation forever).
* ``on_job_end``: if the job's ledger row is still open, close it with its last metered spend:
  ``failed`` when the task raised, ``completed`` when it returned without settling.
* ``on_multirun_end``: print the study's FLOPs table.

How a job is found: right after its reservation the task writes the run id into
``<hydra.runtime.output_dir>/.run_id`` (:func:`write_run_id`). A file of its own, not a key of
``results.json``, because a job that fails mid-training never writes its results.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lora_forecast.budget.ledger import DEFAULT_URL, Ledger, LedgerError
from lora_forecast.budget.report import format_table

log = logging.getLogger(__name__)

RUN_ID_FILE = ".run_id"
_STATUS_ON_END = {JobStatus.FAILED: "failed", JobStatus.COMPLETED: "completed"}


def _rank0() -> bool:
    """Whether this is rank 0 of a data-parallel launch (or no launch): only rank 0 touches the
    ledger. Read from the launcher's ``RANK`` because callbacks run before and after the job,
    outside the process group the accelerator sets up."""
    return os.environ.get("RANK", "0") == "0"


def write_run_id(run_dir: str | Path, run_id: str) -> Path:
    """Record which ledger row a Hydra run directory belongs to (called by the task)."""
    path = Path(run_dir) / RUN_ID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n", encoding="utf-8")
    return path


def read_run_id(run_dir: str | Path) -> str | None:
    """The run id written by :func:`write_run_id`, or None if the job never reserved."""
    path = Path(run_dir) / RUN_ID_FILE
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


class BudgetCallback(Callback):
    """Ledger bookkeeping around Hydra jobs (see the module docstring).

    Args:
        ledger_url: the study's ledger; a relative SQLite path is anchored at Hydra's original
            working directory (``hydra.runtime.cwd``), as the task does.
        study: the study name (``budget.study``).
        max_flops: the study budget, for the table's ``% of budget`` column.
        reconcile_on_start: reconcile dead-process rows of this host before any job runs.
    """

    def __init__(self, ledger_url: str = DEFAULT_URL, study: str = "default",
                 max_flops: float = 1e17, reconcile_on_start: bool = True) -> None:
        self.ledger_url = ledger_url
        self.study = study
        self.max_flops = float(max_flops)
        self.reconcile_on_start = reconcile_on_start

    def _ledger(self, config: DictConfig, *, create: bool = True) -> Ledger:
        base_dir = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
        return Ledger(self.ledger_url, base_dir=base_dir, create=create)

    def _reconcile(self, config: DictConfig) -> None:
        if not self.reconcile_on_start or not _rank0():
            return
        try:  # no ledger yet means nothing to reconcile; never create one here (dry runs)
            ledger = self._ledger(config, create=False)
        except LedgerError:
            return
        with ledger:
            stale = ledger.reconcile(self.study)
        if stale:
            log.warning("budget: marked %d stale run(s) of study '%s' failed: %s",
                        len(stale), self.study, ", ".join(stale))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._reconcile(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._reconcile(config)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        run_dir = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
        run_id = read_run_id(run_dir or job_return.working_dir or ".")
        status = _STATUS_ON_END.get(job_return.status)
        if run_id is None or status is None or not _rank0():
            return
        with self._ledger(config) as ledger:
            closed = ledger.abandon(run_id, status, note=f"closed by BudgetCallback: job {status}")
        if closed:
            log.warning("budget: run %s ended %s without settling; closed it with its last "
                        "metered spend", run_id, status)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with self._ledger(config) as ledger:
            rows = ledger.rows(self.study)
        print(f"FLOPs budget of study '{self.study}'")
        print(format_table(rows, self.max_flops, "text"))
