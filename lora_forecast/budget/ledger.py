"""The FLOPs ledger: one row per run of a study, so the budget holds across processes and hosts.

Every run reserves its predicted FLOPs before it loads a model, meters what it really spends
while it trains, and settles when it ends. A study's spend is

    committed     = sum(spent)                 over finished rows (anything not reserved/running)
    reserved_open = sum(max(predicted, spent)) over open rows (reserved/running)

and a reservation is admitted only if ``committed + reserved_open + predicted <= budget``, read
and written in ONE serialised write transaction (see :mod:`lora_forecast.budget.store` for how
SQLite and PostgreSQL serialise it), so parallel trials can never admit more than the budget.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lora_forecast.budget.store import (
    DEFAULT_URL,
    FINAL_STATUSES,
    OPEN_STATUSES,
    STATUSES,
    LedgerError,
    as_utc,
    lock_for_reservation,
    make_engine,
    metadata,
    now_utc,
    pid_alive,
    resolve_url,
    runs,
    sqlite_file,
    transact,
)

__all__ = ["DEFAULT_URL", "FINAL_STATUSES", "OPEN_STATUSES", "STATUSES", "Ledger", "LedgerError",
           "Rejection", "Reservation", "RunRow", "StudySpend"]

T = TypeVar("T")


def fits(committed: float, reserved_open: float, predicted: float, budget: float) -> bool:
    """The admission rule: the study's spend plus open reservations plus this run <= budget."""
    return committed + reserved_open + predicted <= budget


@dataclass(frozen=True)
class RunRow:
    """One ledger row, as read back (timestamps are timezone-aware UTC)."""

    run_id: str
    study: str
    experiment: str
    config_digest: str
    accounting: str
    predicted_flops: float
    spent_flops: float
    status: str
    host: str
    pid: int
    created_at: datetime
    updated_at: datetime
    budget: float
    note: str | None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class Reservation:
    """An admitted run: it may spend up to ``predicted`` FLOPs (the meter enforces it)."""

    run_id: str
    study: str
    experiment: str
    predicted: float
    budget: float
    committed: float  # the study's finished spend when admitted
    reserved_open: float  # other open runs' reservations when admitted

    @property
    def remaining_after(self) -> float:
        return self.budget - self.committed - self.reserved_open - self.predicted


@dataclass(frozen=True)
class Rejection:
    """A refused reservation and the three numbers that refused it."""

    run_id: str
    study: str
    experiment: str
    predicted: float
    budget: float
    committed: float
    reserved_open: float


@dataclass(frozen=True)
class StudySpend:
    """A study's spend; ``budget`` is the max_flops of its latest row (None if it has none)."""

    committed: float
    reserved_open: float
    budget: float | None = None

    @property
    def total(self) -> float:
        return self.committed + self.reserved_open


def _row(mapping: Any) -> RunRow:
    fields = dict(mapping)
    fields["created_at"] = as_utc(fields["created_at"])
    fields["updated_at"] = as_utc(fields["updated_at"])
    return RunRow(**fields)


class Ledger:
    """The runs table of one database. Cheap to open; safe to share across processes by URL.

    Args:
        url: SQLAlchemy URL (``sqlite:///outputs/ledger.sqlite`` or ``postgresql://...``).
        base_dir: where a relative SQLite path is anchored (default: the current directory).
        create: create the file/table if missing; ``False`` raises LedgerError for a missing
            SQLite file instead (what read-only tools such as ``report`` want).
        host, pid: identity recorded on rows this ledger reserves or starts (default: this
            process); ``reconcile`` compares them with live processes.
        retries: attempts per transaction on transient lock/serialization errors.
    """

    def __init__(self, url: str = DEFAULT_URL, *, base_dir: str | Path | None = None,
                 create: bool = True, host: str | None = None, pid: int | None = None,
                 retries: int = 8) -> None:
        self._url = resolve_url(url, base_dir)
        path = sqlite_file(self._url)
        if path is not None:
            if not create and not path.exists():
                raise LedgerError(f"ledger not found: {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.retries = retries
        self._engine = make_engine(self._url)
        self._create_schema()

    def _create_schema(self) -> None:
        """Create the table if missing. Two processes may race to create it on PostgreSQL
        (SQLite serialises them with BEGIN IMMEDIATE); the loser finds it made and moves on."""
        try:
            self._transaction(lambda conn: metadata.create_all(conn, checkfirst=True))
        except sa.exc.DBAPIError:
            if not sa.inspect(self._engine).has_table(runs.name):
                raise

    @property
    def url(self) -> str:
        return self._url.render_as_string(hide_password=True)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self, work: Callable[[Connection], T], *, write: bool = True) -> T:
        return transact(self._engine, work, write=write, retries=self.retries)

    # ---- reservation -------------------------------------------------------------------------

    def reserve(self, *, study: str, experiment: str, config_digest: str, accounting: str,
                predicted: float, budget: float, run_id: str | None = None,
                ) -> Reservation | Rejection:
        """Admit or reject a run of ``predicted`` FLOPs against ``budget``, atomically.

        A new ``run_id`` (default: a fresh uuid4 hex) gets a ``reserved`` row, or a ``rejected``
        row with 0 spent. An existing ``run_id`` is a resumed run: ``predicted`` is then its
        total for the whole run (spent so far included), its own row is left out of the sums,
        and on rejection the row keeps its status and spend (the refusal goes into ``note``).
        """
        if predicted < 0 or budget <= 0:
            raise ValueError(f"reserve: predicted must be >= 0 and budget > 0, "
                             f"got {predicted} and {budget}")
        run_id = run_id or uuid.uuid4().hex

        def work(conn: Connection) -> Reservation | Rejection:
            lock_for_reservation(conn)
            existing = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            if existing is not None and existing.study != study:
                raise LedgerError(f"run {run_id} belongs to study {existing.study!r}, "
                                  f"not {study!r}")
            committed, reserved_open = self._sums(conn, study, exclude=run_id)
            need = max(float(predicted), existing.spent_flops if existing else 0.0)
            numbers = dict(run_id=run_id, study=study, experiment=experiment, budget=budget,
                           committed=committed, reserved_open=reserved_open)
            admitted = fits(committed, reserved_open, need, budget)
            now = now_utc()
            fields = dict(experiment=experiment, config_digest=config_digest,
                          accounting=accounting, predicted_flops=float(predicted),
                          budget=float(budget), host=self.host, pid=self.pid, updated_at=now,
                          status="reserved" if admitted else "rejected")
            if existing is None:
                conn.execute(runs.insert().values(run_id=run_id, study=study, spent_flops=0.0,
                                                  created_at=now, note=None, **fields))
            elif admitted:
                conn.execute(runs.update().where(runs.c.run_id == run_id).values(**fields))
            else:
                conn.execute(runs.update().where(runs.c.run_id == run_id).values(
                    updated_at=now, note=f"resume rejected at {now:%FT%TZ}: needs {need:.2e}"))
            if admitted:
                return Reservation(predicted=float(predicted), **numbers)
            return Rejection(predicted=need, **numbers)

        return self._transaction(work)

    @staticmethod
    def _sums(conn: Connection, study: str, exclude: str | None = None) -> tuple[float, float]:
        """(committed, reserved_open) of a study, optionally leaving one run out."""
        held = sa.case((runs.c.predicted_flops >= runs.c.spent_flops, runs.c.predicted_flops),
                       else_=runs.c.spent_flops)
        is_open = runs.c.status.in_(OPEN_STATUSES)
        query = sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((is_open, 0.0), else_=runs.c.spent_flops)), 0.0),
            sa.func.coalesce(sa.func.sum(sa.case((is_open, held), else_=0.0)), 0.0),
        ).where(runs.c.study == study)
        if exclude is not None:
            query = query.where(runs.c.run_id != exclude)
        committed, reserved_open = conn.execute(query).one()
        return float(committed), float(reserved_open)

    # ---- run lifecycle -----------------------------------------------------------------------

    def _update(self, run_id: str, values: dict[str, Any], *,
                only_status: Sequence[str] | None = None) -> int:
        def work(conn: Connection) -> int:
            query = runs.update().where(runs.c.run_id == run_id)
            if only_status is not None:
                query = query.where(runs.c.status.in_(only_status))
            return conn.execute(query.values(updated_at=now_utc(), **values)).rowcount

        return self._transaction(work)

    def _require(self, run_id: str) -> RunRow:
        row = self.get(run_id)
        if row is None:
            raise LedgerError(f"ledger {self.url}: no run {run_id!r}")
        return row

    def start(self, run_id: str) -> None:
        """reserved -> running, claimed by this host/pid (the process that does the work)."""
        if not self._update(run_id, dict(status="running", host=self.host, pid=self.pid),
                            only_status=OPEN_STATUSES):
            row = self._require(run_id)
            raise LedgerError(f"run {run_id} cannot start: status is {row.status!r}")

    def meter(self, run_id: str, spent: float) -> None:
        """Record the run's cumulative spend. Monotonic: a lower value never overwrites a higher.

        Recorded whatever the row's status (a slow process may outlive a reconcile); the meter
        upstream keeps spend within the reservation. Also refreshes ``updated_at`` (heartbeat).
        """
        monotonic = sa.case((runs.c.spent_flops < float(spent), float(spent)),
                            else_=runs.c.spent_flops)
        if not self._update(run_id, dict(spent_flops=monotonic)):
            self._require(run_id)

    def finish(self, run_id: str, status: str, spent: float) -> None:
        """Settle a run: final status and spend; its open reservation is released."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish: status must be one of {FINAL_STATUSES}, got {status!r}")
        monotonic = sa.case((runs.c.spent_flops < float(spent), float(spent)),
                            else_=runs.c.spent_flops)
        if not self._update(run_id, dict(status=status, spent_flops=monotonic),
                            only_status=(*OPEN_STATUSES, *FINAL_STATUSES)):
            row = self._require(run_id)
            raise LedgerError(f"run {run_id} cannot finish: status is {row.status!r}")

    def abandon(self, run_id: str, status: str = "failed", note: str | None = None) -> bool:
        """Close a run only if it is still open (keeping its metered spend); True if it was."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"abandon: status must be one of {FINAL_STATUSES}, got {status!r}")
        values: dict[str, Any] = {"status": status} if note is None else {
            "status": status, "note": note}
        return bool(self._update(run_id, values, only_status=OPEN_STATUSES))

    # ---- queries -----------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRow | None:
        found = self._transaction(
            lambda conn: conn.execute(sa.select(runs).where(runs.c.run_id == run_id))
            .mappings().first(), write=False)
        return None if found is None else _row(found)

    def rows(self, study: str | None = None) -> list[RunRow]:
        """All rows (of one study), oldest first."""
        query = sa.select(runs).order_by(runs.c.created_at, runs.c.run_id)
        if study is not None:
            query = query.where(runs.c.study == study)
        found = self._transaction(lambda conn: conn.execute(query).mappings().all(), write=False)
        return [_row(m) for m in found]

    def study_spend(self, study: str) -> StudySpend:
        def work(conn: Connection) -> StudySpend:
            committed, reserved_open = self._sums(conn, study)
            budget = conn.execute(sa.select(runs.c.budget).where(runs.c.study == study)
                                  .order_by(runs.c.created_at.desc()).limit(1)).scalar()
            return StudySpend(committed, reserved_open, None if budget is None else float(budget))

        return self._transaction(work, write=False)

    def remaining(self, study: str, budget: float) -> float:
        """FLOPs a new run could still reserve; negative means the study is already over."""
        return budget - self.study_spend(study).total

    def reconcile(self, study: str | None = None, *, all_hosts: bool = False,
                  older_than_s: float | None = None) -> list[str]:
        """Mark open rows whose process is gone as ``failed``, keeping their metered spend.

        On this host a row is stale when its pid is not alive. Other hosts' pids cannot be
        probed, so their rows are touched only with ``all_hosts=True`` and ``older_than_s``:
        a row whose last heartbeat (reserve/start/meter flush) is older than that is stale.
        Pick ``older_than_s`` well above the meter's flush interval.

        Returns:
            The run ids marked failed.
        """
        if all_hosts and (older_than_s is None or older_than_s <= 0):
            raise ValueError("reconcile: all_hosts needs older_than_s > 0 (a heartbeat age)")
        cutoff = now_utc() - timedelta(seconds=older_than_s or 0)
        stale = []
        for row in self.rows(study):
            if not row.is_open:
                continue
            if row.host == self.host and not pid_alive(row.pid):
                why = f"reconciled: pid {row.pid} on {row.host} not alive"
            elif row.host != self.host and all_hosts and row.updated_at < cutoff:
                why = f"reconciled: no heartbeat from {row.host} since {row.updated_at:%FT%TZ}"
            else:
                continue
            if self.abandon(row.run_id, "failed", note=why):
                stale.append(row.run_id)
        return stale
