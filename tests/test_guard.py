"""Admission (guard), the dry-run text and the in-run FLOPs meter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lora_forecast.budget.guard import admit, format_dry_run
from lora_forecast.budget.ledger import Ledger
from lora_forecast.budget.meter import FlopsMeter
from lora_forecast.errors import BudgetExceededError

BUDGET = 1e17


@dataclass(frozen=True)
class Phases:
    training: float
    validation: float
    forecasting: float

    @property
    def total(self) -> float:
        return self.training + self.validation + self.forecasting


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as opened:
        yield opened


def _admit(ledger: Ledger, predicted: float, **kwargs: Any):
    return admit(ledger, study="default", experiment="search", config_digest="d",
                 accounting="exact", predicted=predicted, budget=BUDGET, **kwargs)


def test_admit_reserves_or_raises_one_line_with_the_three_numbers(ledger: Ledger) -> None:
    done = _admit(ledger, 4e16)
    ledger.finish(done.run_id, "completed", 3.1e16)
    _admit(ledger, 2e16)
    with pytest.raises(BudgetExceededError) as info:
        _admit(ledger, 6e16)
    assert str(info.value) == (
        "budget: study 'default' has committed 3.10e+16 + reserved 2.00e+16 FLOPs; "
        "this run needs 6.00e+16 more; budget 1.00e+17")
    assert [r.status for r in ledger.rows("default")] == ["completed", "reserved", "rejected"]


def test_dry_run_text_ends_with_two_machine_readable_lines() -> None:
    text = format_dry_run(Phases(3e16, 1e15, 2e14), remaining=6.2e16, budget=BUDGET)
    *body, predicted, remaining = text.splitlines()
    assert predicted == "predicted_flops=3.120000e+16"
    assert remaining == "remaining_flops=6.200000e+16"
    assert float(predicted.split("=")[1]) == pytest.approx(3.12e16)
    assert any(line.split()[:2] == ["training", "3.000e+16"] and "48.39%" in line for line in body)
    assert "this run fits" in text
    assert "does NOT fit" in format_dry_run(Phases(7e16, 0, 0), 6.2e16, BUDGET)


def test_meter_refuses_unaffordable_work_and_counts_by_kind() -> None:
    meter = FlopsMeter(None, None, reservation=10e15)
    for _ in range(3):
        assert meter.can_afford(3e15)
        meter.add(3e15, "training")
    assert not meter.can_afford(3e15)  # 12e15 > 10e15
    assert meter.can_afford(1e15)  # exactly the reservation
    meter.add(1e15, "validation")
    assert (meter.spent, meter.remaining) == (10e15, 0.0)
    assert meter.by_kind == {"training": 9e15, "validation": 1e15, "forecasting": 0.0}
    with pytest.raises(ValueError, match="kind must be one of"):
        meter.add(1.0, "eval")


def test_meter_flushes_to_the_ledger_and_settle_releases(ledger: Ledger) -> None:
    reservation = _admit(ledger, 5e16)
    ledger.start(reservation.run_id)
    now = [0.0]
    meter = FlopsMeter.from_reservation(ledger, reservation, flush_every_s=30,
                                        clock=lambda: now[0])
    meter.add(1e16)
    assert ledger.get(reservation.run_id).spent_flops == 0.0  # not due yet
    now[0] = 31.0
    meter.add(1e16)
    assert ledger.get(reservation.run_id).spent_flops == 2e16  # periodic flush
    meter.add(5e15, "forecasting")
    meter.settle("completed")
    meter.settle("failed")  # a second settle (e.g. in a finally) changes nothing
    row = ledger.get(reservation.run_id)
    assert (row.status, row.spent_flops) == ("completed", 2.5e16)
    spend = ledger.study_spend("default")
    assert (spend.committed, spend.reserved_open) == (2.5e16, 0.0)


def test_resumed_meter_restores_spend_without_double_counting(ledger: Ledger) -> None:
    first = _admit(ledger, 6e16)
    meter = FlopsMeter.from_reservation(ledger, first, flush_every_s=None)
    meter.add(4e16)
    meter.flush()
    state = meter.state_dict()
    ledger.abandon(first.run_id, "interrupted")  # the process died after its checkpoint

    again = _admit(ledger, 6e16, run_id=first.run_id)
    resumed = FlopsMeter.from_reservation(ledger, again, flush_every_s=None)
    resumed.load_state_dict(state)
    assert resumed.spent == 4e16 and resumed.can_afford(2e16) and not resumed.can_afford(3e16)
    resumed.add(1e16)
    resumed.flush()
    assert ledger.get(first.run_id).spent_flops == 5e16  # set, not 4 + 5
    with pytest.raises(ValueError, match="belongs to run"):
        FlopsMeter(None, "other", 1.0).load_state_dict(state)
