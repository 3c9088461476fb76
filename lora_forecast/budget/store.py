"""Where the ledger lives: the ``runs`` table, URL handling, and the locking protocol per backend.

Kept apart from :mod:`lora_forecast.budget.ledger` (the budget arithmetic) because this is the
part that differs between databases; everything above it is plain SQLAlchemy Core.

Serialising reservations:

* SQLite: pysqlite's own transaction handling is switched off (``isolation_level = None`` in a
  ``connect`` listener) and a ``begin`` listener emits ``BEGIN IMMEDIATE`` for writes, which takes
  the database's write lock before the budget sums are read (the recipe of SQLAlchemy's pysqlite
  docs). Reads emit a deferred ``BEGIN``. WAL mode keeps readers (``report``) from blocking
  writers, and a busy timeout makes writers queue instead of failing. WAL needs a local disk.
* PostgreSQL: the reservation transaction starts with ``LOCK TABLE runs IN EXCLUSIVE MODE``
  (:func:`lock_for_reservation`). It conflicts with itself and with row writes (meter/finish)
  but not with plain SELECTs, so reservations queue one at a time for a few milliseconds. Unlike
  SERIALIZABLE it cannot fail with a serialization error, and taking it first avoids deadlocks.
* Both: transient errors (SQLite "database is locked" past the busy timeout; PostgreSQL SQLSTATE
  40001/40P01/55P03; dropped connections) are retried with jittered backoff by :func:`transact`.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from lora_forecast.errors import LoraForecastError

DEFAULT_URL = "sqlite:///outputs/ledger.sqlite"
OPEN_STATUSES = ("reserved", "running")
FINAL_STATUSES = ("completed", "stopped_budget", "failed", "interrupted", "pruned")
STATUSES = (*OPEN_STATUSES, *FINAL_STATUSES, "rejected")
SQLITE_BUSY_TIMEOUT_S = 60.0
_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock timeout

T = TypeVar("T")

metadata = sa.MetaData()
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("study", sa.String(200), nullable=False),
    sa.Column("experiment", sa.String(200), nullable=False),
    sa.Column("config_digest", sa.String(128), nullable=False),
    sa.Column("accounting", sa.String(32), nullable=False),
    sa.Column("predicted_flops", sa.Double(), nullable=False),
    sa.Column("spent_flops", sa.Double(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("budget", sa.Double(), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="ck_runs_status"
    ),
    sa.Index("ix_runs_study_status", "study", "status"),
)


class LedgerError(LoraForecastError):
    """The ledger cannot be opened or a call names a run it does not hold."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; everything the ledger writes is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 probes without killing).

    On Windows signal 0 is CTRL_C_EVENT, so we cannot probe and report alive (never reconcile).
    A recycled pid reads as alive: reconciliation errs on the side of leaving a row open.
    """
    if pid <= 0:
        return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_retryable(exc: sa.exc.DBAPIError) -> bool:
    """Transient contention or a dropped connection, as opposed to a real error."""
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    message = str(exc.orig).lower()
    return code in _RETRY_SQLSTATES or any(
        text in message for text in ("database is locked", "database is busy"))


def sqlite_file(url: URL) -> Path | None:
    """The file of a file-backed SQLite URL; None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return None if url.database.startswith("file:") else Path(url.database)


def resolve_url(url: str, base_dir: str | Path | None = None) -> URL:
    """Parse a ledger URL; a relative SQLite file path is anchored at ``base_dir`` (default: cwd).

    Anchoring once matters because Hydra jobs may ``chdir`` into their run directory: every job
    of a study must open the same file.
    """
    parsed = make_url(url)
    path = sqlite_file(parsed)
    if path is not None:
        path = path.expanduser()
        if not path.is_absolute():
            path = Path(base_dir or os.getcwd()) / path
        parsed = parsed.set(database=str(path.resolve()))
    return parsed


def _sqlite_engine(url: URL) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    wal = sqlite_file(url) is not None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN; _on_begin does
        if wal:
            dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchall()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ledger_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_engine(url: URL) -> Engine:
    """An engine set up for the ledger's locking protocol (see the module docstring)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True)
    raise LedgerError(f"budget.ledger_url: unsupported database {backend!r}; "
                      "use sqlite:///PATH or postgresql://...")


def lock_for_reservation(conn: Connection) -> None:
    """Serialise reservations. SQLite already holds the write lock (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE runs IN EXCLUSIVE MODE")


def _connect(engine: Engine) -> Connection:
    """Open a connection; a database that cannot be reached is the user's URL, not a bug."""
    try:
        return engine.connect()
    except sa.exc.OperationalError as exc:
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        where = engine.url.render_as_string(hide_password=True)
        raise LedgerError(f"budget.ledger_url: cannot connect to {where}: {reason}") from None


def transact(engine: Engine, work: Callable[[Connection], T], *, write: bool = True,
             retries: int = 8) -> T:
    """Run ``work`` in one transaction, retrying transient lock/serialization errors.

    ``work`` must be safe to re-run: it is called again from scratch after a rollback.
    """
    for attempt in range(retries):
        try:
            with _connect(engine) as conn:
                conn.execution_options(ledger_write=write)
                with conn.begin():
                    return work(conn)
        except sa.exc.DBAPIError as exc:
            if attempt == retries - 1 or not is_retryable(exc):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable: retries must be >= 1")
