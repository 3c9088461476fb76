"""Budget admission before launch: a trial runs only if the study can still pay for it.

For each trial of a batch: compose its config exactly as its job will, predict its FLOPs with
the same :func:`lora_forecast.planning.predict_cost` the job reserves with, and admit it only if

    ledger spend (committed + open reservations) + predictions of trials admitted earlier in
    this batch (launched together, not yet reserved by their jobs) + this prediction
    <= budget.max_flops

A refused trial is never launched; the caller tells Optuna it was PRUNED with
``rejected_by=budget`` and these numbers as user attributes. The job's own reservation in the
ledger stays the hard guarantee (several machines may admit at the same moment).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

from lora_forecast.errors import LoraForecastError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    predicted: float
    spent: float  # the ledger's committed + open reservations of the budget study
    pending: float  # predictions admitted earlier in this batch
    max_flops: float
    study: str
    error: str | None = None  # the trial's config could not be composed or validated

    def attrs(self) -> dict[str, Any]:
        """User attributes recorded on the trial (JSON-serialisable)."""
        base = {"predicted_flops": self.predicted, "budget_spent_flops": self.spent,
                "budget_pending_flops": self.pending, "budget_max_flops": self.max_flops,
                "budget_study": self.study}
        return {"rejected_by": "budget", **base} if not self.admitted else base

    def describe(self) -> str:
        if self.error is not None:
            return f"config error: {self.error}"
        verb = "admitted" if self.admitted else "REJECTED"
        return (f"{verb}: spent {self.spent:.3e} + pending {self.pending:.3e} + predicted "
                f"{self.predicted:.3e} vs budget {self.max_flops:.3e} (study {self.study!r})")


class BudgetAdmission:
    """Decides, batch by batch, which trials the budget can still pay for.

    Args:
        config_loader: Hydra's loader (composes a trial's config from its overrides).
        master_config: the sweep's config (Hydra's own overrides are taken from it).
    """

    def __init__(self, config_loader: Any, master_config: DictConfig) -> None:
        from lora_forecast.budget.ledger import Ledger, fits  # the plugin imports no project
        from lora_forecast.config import to_settings  # code until a sweep really starts
        from lora_forecast.planning import predict_cost

        self._loader = config_loader
        self._master = master_config
        self._open_ledger = Ledger
        self._fits = fits
        self._to_settings = to_settings
        self._predict = predict_cost
        self._ledgers: dict[str, Any] = {}
        self._reconciled: set[tuple[str, str]] = set()

    def _ledger(self, url: str, study: str) -> Any:
        """The ledger at ``url``; on first use per study, open rows whose process on this host
        is gone (a crashed earlier sweep) are closed so they stop holding budget."""
        if url not in self._ledgers:
            self._ledgers[url] = self._open_ledger(url)
        ledger = self._ledgers[url]
        if (url, study) not in self._reconciled:
            for run_id in ledger.reconcile(study):
                log.warning("ledger: run %s of a dead process marked failed", run_id)
            self._reconciled.add((url, study))
        return ledger

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.close()
        self._ledgers.clear()

    def _settings(self, overrides: Sequence[str]) -> Any:
        """The trial's validated settings, composed as its job will compose them."""
        cfg = self._loader.load_sweep_config(self._master, list(overrides))
        with open_dict(cfg):  # Hydra's node is not part of the settings, and its run
            del cfg["hydra"]  # directory cannot resolve before the launcher numbers the job
        return self._to_settings(cfg)

    def check(self, overrides: Sequence[str], pending: float) -> Verdict:
        """The verdict for one trial given the predictions already admitted in its batch."""
        try:  # compose, validate and predict: each fails only for this trial's config
            settings = self._settings(overrides)
            predicted = float(self._predict(settings).total)  # also the data-shape checks
        except (ValueError, HydraException, LoraForecastError) as exc:  # e.g. a missing data
            # file or eval.n_systems beyond the test split: this trial FAILs, the sweep goes on
            return Verdict(False, 0.0, 0.0, pending, 0.0, "", error=f"{type(exc).__name__}: {exc}")
        budget = settings.budget
        spend = self._ledger(budget.ledger_url, budget.study).study_spend(budget.study)
        admitted = self._fits(spend.committed, spend.reserved_open + pending, predicted,
                              budget.max_flops)
        return Verdict(admitted, predicted, spend.total, pending, float(budget.max_flops),
                       budget.study)

    def batch(self, overrides_batch: Sequence[Sequence[str]]) -> list[Verdict]:
        """Verdicts for trials launched together, in order; each admitted one is pending for
        the trials after it."""
        verdicts, pending = [], 0.0
        for overrides in overrides_batch:
            verdict = self.check(overrides, pending)
            log.debug("trial budget %s", verdict.describe())
            if verdict.admitted:
                pending += verdict.predicted
            verdicts.append(verdict)
        return verdicts
