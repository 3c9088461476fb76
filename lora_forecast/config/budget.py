"""``budget.*``: the FLOPs budget, its ledger and accounting (conf/budget/)."""

from __future__ import annotations

from dataclasses import dataclass

from lora_forecast.config.checks import require
from lora_forecast.flops.api import ACCOUNTINGS as FLOPS_ACCOUNTINGS

ACCOUNTINGS = tuple(FLOPS_ACCOUNTINGS)  # the FLOPs registry (pure Python, no torch)


@dataclass
class BudgetConfig:
    """The study's FLOPs budget and the ledger that enforces it."""

    max_flops: float = 1e17
    study: str = "default"
    ledger_url: str = "sqlite:///outputs/ledger.sqlite"
    accounting: str = "exact"
    backward: str = "rule"
    dry_run: bool = False

    def __post_init__(self) -> None:
        require(self.max_flops > 0, "budget.max_flops", f"must be > 0, got {self.max_flops}")
        require(
            self.accounting in ACCOUNTINGS,
            "budget.accounting",
            f"must be one of {ACCOUNTINGS}, got {self.accounting!r}",
        )
        require(
            self.backward in ("rule", "autograd"),
            "budget.backward",
            f"must be rule or autograd, got {self.backward!r}",
        )
        require(
            self.accounting == "exact" or self.backward == "rule",
            "budget.backward",
            "autograd needs budget.accounting=exact (the seed formulas define only the rule)",
        )
