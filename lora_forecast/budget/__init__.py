"""The study's FLOPs budget: predict a run's cost, admit it against a shared ledger, meter it.

Flow of one run: ``lora_forecast.planning.predict_cost`` -> :func:`admit` (reserve in the
:class:`Ledger` or raise ``BudgetExceededError``) -> ``Ledger.start`` -> :class:`FlopsMeter`
``can_afford`` / ``add`` / ``flush`` while training -> ``FlopsMeter.settle``.
``python -m lora_forecast.budget report`` prints the study's table;
:mod:`lora_forecast.budget.callback` closes runs a crash left open.
"""

from lora_forecast.budget.guard import (
    admit,
    format_dry_run,
    rejection_message,
)
from lora_forecast.budget.ledger import (
    DEFAULT_URL,
    FINAL_STATUSES,
    OPEN_STATUSES,
    STATUSES,
    Ledger,
    LedgerError,
    Rejection,
    Reservation,
    RunRow,
    StudySpend,
)
from lora_forecast.budget.meter import KINDS, FlopsMeter
from lora_forecast.budget.report import format_table

__all__ = [
    "DEFAULT_URL",
    "FINAL_STATUSES",
    "KINDS",
    "OPEN_STATUSES",
    "STATUSES",
    "FlopsMeter",
    "Ledger",
    "LedgerError",
    "Rejection",
    "Reservation",
    "RunRow",
    "StudySpend",
    "admit",
    "format_dry_run",
    "format_table",
    "rejection_message",
]
