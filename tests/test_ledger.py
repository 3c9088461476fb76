"""The FLOPs ledger: reservation arithmetic, lifecycle, concurrency and reconciliation."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from lora_forecast.budget.ledger import Ledger, LedgerError, Rejection, Reservation
from lora_forecast.budget.store import is_retryable, runs

BUDGET = 1e17


# PostgreSQL runs the same tests when a throwaway database URL is given (.ci/run starts one
# when the server binaries are installed); otherwise those cases are reported as skipped.
POSTGRES_URL = os.environ.get("LORA_FORECAST_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger database for each test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    if not POSTGRES_URL:
        pytest.skip("set LORA_FORECAST_TEST_POSTGRES_URL to test the PostgreSQL ledger")
    engine = sa.create_engine(POSTGRES_URL)
    runs.drop(engine, checkfirst=True)
    engine.dispose()
    return POSTGRES_URL


def _reserve(ledger: Ledger, predicted: float, *, study: str = "s", experiment: str = "e",
             run_id: str | None = None) -> Reservation | Rejection:
    return ledger.reserve(study=study, experiment=experiment, config_digest="abc",
                          accounting="exact", predicted=predicted, budget=BUDGET, run_id=run_id)


@pytest.fixture
def ledger(url: str) -> Ledger:
    with Ledger(url) as opened:
        yield opened


def test_committed_plus_open_reservations_plus_request_must_fit(ledger: Ledger) -> None:
    done = _reserve(ledger, 4e16)
    ledger.start(done.run_id)
    ledger.finish(done.run_id, "completed", 3.1e16)  # spent less than predicted
    _reserve(ledger, 2e16)  # still open
    assert ledger.study_spend("s").committed == pytest.approx(3.1e16)
    assert ledger.study_spend("s").reserved_open == pytest.approx(2e16)

    refused = _reserve(ledger, 6e16)
    assert isinstance(refused, Rejection)
    assert (refused.committed, refused.reserved_open, refused.predicted) == pytest.approx(
        (3.1e16, 2e16, 6e16))
    fitting = _reserve(ledger, 4.9e16)  # 3.1 + 2 + 4.9 = 10 exactly: fills the budget
    assert isinstance(fitting, Reservation)
    assert fitting.remaining_after == pytest.approx(0, abs=1e8)
    assert ledger.remaining("s", BUDGET) == pytest.approx(0, abs=1e8)


def test_rejection_is_recorded_with_zero_spend(ledger: Ledger) -> None:
    refused = _reserve(ledger, 2e17)
    assert isinstance(refused, Rejection)
    (row,) = ledger.rows("s")
    assert (row.run_id, row.status, row.spent_flops, row.predicted_flops, row.budget) == (
        refused.run_id, "rejected", 0.0, 2e17, BUDGET)
    assert ledger.study_spend("s").total == 0.0
    with pytest.raises(LedgerError, match="rejected"):
        ledger.start(refused.run_id)


def test_studies_do_not_share_a_budget(ledger: Ledger) -> None:
    assert isinstance(_reserve(ledger, 9e16, study="a"), Reservation)
    assert isinstance(_reserve(ledger, 9e16, study="b"), Reservation)
    assert isinstance(_reserve(ledger, 2e16, study="a"), Rejection)


def test_open_run_that_overspends_holds_its_spend_not_its_prediction(ledger: Ledger) -> None:
    run = _reserve(ledger, 1e16)
    ledger.start(run.run_id)
    ledger.meter(run.run_id, 1.5e16)
    assert ledger.study_spend("s").reserved_open == pytest.approx(1.5e16)


def test_meter_is_monotonic_and_finish_releases_the_reservation(ledger: Ledger) -> None:
    run = _reserve(ledger, 5e16)
    ledger.start(run.run_id)
    ledger.meter(run.run_id, 2e16)
    ledger.meter(run.run_id, 1e16)  # a stale, lower figure never wins
    assert ledger.get(run.run_id).spent_flops == 2e16
    assert ledger.study_spend("s").reserved_open == 5e16

    ledger.finish(run.run_id, "stopped_budget", 2.5e16)
    row = ledger.get(run.run_id)
    assert (row.status, row.spent_flops) == ("stopped_budget", 2.5e16)
    spend = ledger.study_spend("s")
    assert (spend.committed, spend.reserved_open, spend.budget) == (2.5e16, 0.0, BUDGET)
    assert row.updated_at >= row.created_at and row.created_at.tzinfo is not None


def test_lifecycle_errors_name_the_problem(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no run 'nope'"):
        ledger.meter("nope", 1.0)
    run = _reserve(ledger, 1e15)
    with pytest.raises(ValueError, match="status must be one of"):
        ledger.finish(run.run_id, "running", 0.0)
    with pytest.raises(LedgerError, match="belongs to study 's'"):
        _reserve(ledger, 1e15, study="other", run_id=run.run_id)


def test_resumed_run_is_readmitted_without_double_counting(ledger: Ledger) -> None:
    first = _reserve(ledger, 6e16)
    ledger.start(first.run_id)
    ledger.meter(first.run_id, 4e16)
    assert ledger.abandon(first.run_id, "interrupted")
    assert not ledger.abandon(first.run_id, "failed")  # only open rows are closed
    _reserve(ledger, 3e16)  # someone else, open

    # the resumed run asks for its total (4e16 spent + 3e16 to go): 7 + 3 = 10 -> fits
    again = _reserve(ledger, 7e16, run_id=first.run_id)
    assert isinstance(again, Reservation) and again.committed == 0.0
    assert ledger.get(first.run_id).status == "reserved"
    assert ledger.study_spend("s").total == pytest.approx(1e17)
    assert len(ledger.rows("s")) == 2

    ledger.abandon(first.run_id, "interrupted")
    refused = _reserve(ledger, 8e16, run_id=first.run_id)
    assert isinstance(refused, Rejection)
    row = ledger.get(first.run_id)
    assert (row.status, row.spent_flops) == ("interrupted", 4e16)  # spend kept, refusal noted
    assert row.note.startswith("resume rejected")


def test_reconcile_fails_rows_of_dead_processes_on_this_host(url: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is now free
    with Ledger(url, pid=child.pid) as dead:
        orphan = _reserve(dead, 3e16)
        dead.start(orphan.run_id)
        dead.meter(orphan.run_id, 1.2e16)
    with Ledger(url, host="elsewhere", pid=child.pid) as remote:
        far = _reserve(remote, 1e16)
    with Ledger(url) as ledger:
        alive = _reserve(ledger, 2e16)
        assert ledger.reconcile("s") == [orphan.run_id]
        row = ledger.get(orphan.run_id)
        assert (row.status, row.spent_flops) == ("failed", 1.2e16)
        assert "not alive" in row.note
        assert ledger.get(alive.run_id).status == "reserved"
        assert ledger.get(far.run_id).status == "reserved"  # other host: cannot probe its pid

        with pytest.raises(ValueError, match="older_than_s"):
            ledger.reconcile(all_hosts=True)
        assert ledger.reconcile(all_hosts=True, older_than_s=3600) == []
        time.sleep(0.05)
        assert ledger.reconcile(all_hosts=True, older_than_s=0.01) == [far.run_id]
        assert ledger.study_spend("s").committed == pytest.approx(1.2e16)


def _reserve_in_process(url: str, barrier: multiprocessing.synchronize.Barrier,
                        results: multiprocessing.Queue) -> None:
    with Ledger(url) as ledger:
        barrier.wait()
        outcome = ledger.reserve(study="race", experiment="trial", config_digest="x",
                                 accounting="exact", predicted=3e16, budget=BUDGET)
        results.put(type(outcome).__name__)


def test_concurrent_reservations_never_exceed_the_budget(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    workers = [ctx.Process(target=_reserve_in_process, args=(url, barrier, results))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert outcomes == ["Rejection"] * 3 + ["Reservation"] * 3
    with Ledger(url) as ledger:
        rows = ledger.rows("race")
    assert sorted(r.status for r in rows) == ["rejected"] * 3 + ["reserved"] * 3
    assert sum(r.predicted_flops for r in rows if r.status == "reserved") <= BUDGET


def test_sqlite_file_is_anchored_created_and_in_wal_mode(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="ledger not found"):
        Ledger("sqlite:///outputs/ledger.sqlite", base_dir=tmp_path, create=False)
    with Ledger("sqlite:///outputs/ledger.sqlite", base_dir=tmp_path) as ledger:
        assert ledger.url.endswith(f"{tmp_path}/outputs/ledger.sqlite")
    with sqlite3.connect(tmp_path / "outputs" / "ledger.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_other_backends_use_the_same_core_schema() -> None:
    ddl = str(CreateTable(runs).compile(dialect=postgresql.dialect()))
    assert "DOUBLE PRECISION" in ddl and "TIMESTAMP WITH TIME ZONE" in ddl
    with pytest.raises(LedgerError, match="unsupported database 'mysql'"):
        Ledger("mysql://user@localhost/db")


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("orig", "retry"), [
    (sqlite3.OperationalError("database is locked"), True),
    (_PgError("40001"), True),  # serialization failure
    (_PgError("40P01"), True),  # deadlock
    (_PgError("23505"), False),  # unique violation: a real error
    (sqlite3.OperationalError("no such table: runs"), False),
])
def test_only_transient_errors_are_retried(orig: Exception, retry: bool) -> None:
    assert is_retryable(sa.exc.OperationalError("stmt", {}, orig)) is retry


def test_unreachable_database_is_one_line_naming_the_url() -> None:
    pytest.importorskip("psycopg")
    url = "postgresql+psycopg://someone:secret@127.0.0.1:1/nowhere"  # port 1: refused at once
    with pytest.raises(LedgerError) as info:
        Ledger(url)
    message = str(info.value)
    assert message.startswith("budget.ledger_url: cannot connect to postgresql+psycopg://someone")
    assert "secret" not in message and "\n" not in message
