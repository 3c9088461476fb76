"""The in-run FLOPs meter: what a run has spent, per kind, against what it reserved.

The training loop asks :meth:`FlopsMeter.can_afford` before each step or evaluation and stops
(status ``stopped_budget``) when the answer is no; after doing the work it calls
:meth:`FlopsMeter.add`. Spend reaches the ledger on :meth:`flush` (periodically, and at least
every eval interval, so a crash loses at most that much bookkeeping) and on :meth:`settle`.

Spend is cumulative for the run: a resumed run restores it with :meth:`load_state_dict`, keeps
its run_id, and the ledger row's spend is *set* to the cumulative figure, never added to. It is
never rewound either: with a ``journal`` (:mod:`lora_forecast.budget.journal`) the meter keeps
the work done after the checkpoint it resumes from, so steps redone after a crash are charged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lora_forecast.budget.journal import write_journal
from lora_forecast.budget.ledger import Ledger, Reservation

KINDS = ("training", "validation", "forecasting")


class FlopsMeter:
    """Accumulates a run's FLOPs and keeps them within its reservation.

    Args:
        ledger: where spend is recorded; ``None`` for dry runs and tests (pure accumulation).
        run_id: the ledger row (ignored without a ledger).
        reservation: the most this run may spend in total (its admitted prediction).
        flush_every_s: :meth:`add` flushes when this many seconds passed since the last
            flush; ``None`` flushes only on demand.
        clock: monotonic seconds (injectable for tests).
        journal: file rewritten with the cumulative spend after every :meth:`add` (needs a
            ``run_id``); ``None`` keeps no journal.
    """

    def __init__(self, ledger: Ledger | None, run_id: str | None, reservation: float, *,
                 flush_every_s: float | None = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 journal: Path | None = None) -> None:
        if reservation < 0:
            raise ValueError(f"FlopsMeter: reservation must be >= 0, got {reservation}")
        if ledger is not None and not run_id:
            raise ValueError("FlopsMeter: a ledger needs the run_id of its row")
        self.ledger = ledger
        self.run_id = run_id
        self.reservation = float(reservation)
        self.flush_every_s = flush_every_s
        self._clock = clock
        self._last_flush = clock()
        self._spent = dict.fromkeys(KINDS, 0.0)
        self.settled_status: str | None = None
        self.journal = journal if run_id else None

    @classmethod
    def from_reservation(cls, ledger: Ledger | None, reservation: Reservation,
                         **kwargs: Any) -> FlopsMeter:
        return cls(ledger, reservation.run_id, reservation.predicted, **kwargs)

    @property
    def spent(self) -> float:
        return sum(self._spent.values())

    @property
    def by_kind(self) -> dict[str, float]:
        return dict(self._spent)

    @property
    def remaining(self) -> float:
        return self.reservation - self.spent

    def can_afford(self, cost: float) -> bool:
        """Whether ``cost`` more FLOPs stay within the reservation, exactly (the planner's
        prediction carries the float-rounding margin, see ``planning.ROUNDING_MARGIN``)."""
        return self.spent + cost <= self.reservation

    def add(self, cost: float, kind: str = "training") -> float:
        """Record ``cost`` FLOPs of work already done; returns the cumulative spend.

        Never refuses: the work has happened and must be on the books. Gate with
        :meth:`can_afford` before doing it.
        """
        if kind not in KINDS:
            raise ValueError(f"FlopsMeter.add: kind must be one of {KINDS}, got {kind!r}")
        if cost < 0:
            raise ValueError(f"FlopsMeter.add: cost must be >= 0, got {cost}")
        self._spent[kind] += float(cost)
        if self.journal is not None and self.run_id:
            write_journal(self.journal, self.run_id, self._spent)
        due = self.flush_every_s is not None and (
            self._clock() - self._last_flush >= self.flush_every_s)
        if due:
            self.flush()
        return self.spent

    def flush(self) -> None:
        """Write the cumulative spend to the ledger row (a no-op without a ledger)."""
        if self.ledger is not None and self.run_id:
            self.ledger.meter(self.run_id, self.spent)
        self._last_flush = self._clock()

    def settle(self, status: str) -> None:
        """Close the run in the ledger with its final spend, releasing its reservation.

        Idempotent: only the first call records (a ``finally`` may call it again).
        """
        if self.settled_status is not None:
            return
        if self.ledger is not None and self.run_id:
            self.ledger.finish(self.run_id, status, self.spent)
        self.settled_status = status

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores to resume the count (not the reservation: a resumed run
        is re-admitted and gets a fresh one)."""
        return {"run_id": self.run_id, "spent": dict(self._spent)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the cumulative spend of the same run: never adds, never rewinds.

        Per kind the larger of the meter's figure and the state's: a meter already restored
        from its journal keeps the work done after this (older) checkpoint.
        """
        if self.run_id and state.get("run_id") and state["run_id"] != self.run_id:
            raise ValueError(f"FlopsMeter: checkpoint belongs to run {state['run_id']}, "
                             f"not {self.run_id}")
        spent = state["spent"]
        unknown = sorted(set(spent) - set(KINDS))
        if unknown:
            raise ValueError(f"FlopsMeter: unknown spend kinds {unknown}; expected {KINDS}")
        self._spent = {kind: max(self._spent[kind], float(spent.get(kind, 0.0))) for kind in KINDS}
