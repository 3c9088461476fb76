"""``python -m lora_forecast.budget``: inspect and repair a study's FLOPs ledger.

    report    [--ledger URL] [--study NAME] [--budget FLOPS] [--format text|csv|markdown]
              (without --study: the only study, or a list of the studies to pick from)
    reconcile [--ledger URL] [--study NAME] [--all-hosts --older-than SECONDS]

Errors print one line on stderr and exit 2 (argparse's own usage errors do too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import sqlalchemy as sa

from lora_forecast.budget.ledger import Ledger
from lora_forecast.budget.report import FORMATS, format_studies, format_table, studies_of
from lora_forecast.command import command
from lora_forecast.config import BudgetConfig

DEFAULTS = BudgetConfig()


def _report(args: argparse.Namespace) -> str:
    if args.budget is not None and args.budget <= 0:
        raise ValueError(f"--budget must be > 0, got {args.budget:g}")
    with Ledger(args.ledger, create=False) as ledger:
        every = ledger.rows()
    studies = studies_of(every)
    study = args.study or (studies[0] if len(studies) == 1 else None)
    if study is None:
        if not studies:
            return f"no runs in {ledger.url} yet"
        return (f"{len(studies)} studies in {ledger.url}; pick one with --study NAME\n"
                f"{format_studies(every)}")
    rows = [r for r in every if r.study == study]
    if not rows:
        raise ValueError(f"--study: no study {study!r} in {ledger.url} "
                         f"(studies: {', '.join(studies) or 'none'})")
    recorded = max(rows, key=lambda r: r.created_at).budget
    budget = next(b for b in (args.budget, recorded, DEFAULTS.max_flops) if b is not None)
    table = format_table(rows, budget, args.format)
    if args.format == "text":
        return f"study '{study}' in {ledger.url}\n{table}"
    return table


def _reconcile(args: argparse.Namespace) -> str:
    if args.all_hosts and args.older_than is None:
        raise ValueError("--all-hosts needs --older-than SECONDS (heartbeat age)")
    with Ledger(args.ledger, create=False) as ledger:
        stale = ledger.reconcile(args.study, all_hosts=args.all_hosts,
                                 older_than_s=args.older_than)
    where = f"study '{args.study}'" if args.study else "all studies"
    lines = [f"marked failed: {run_id}" for run_id in stale]
    return "\n".join([*lines, f"reconciled {len(stale)} stale run(s) in {where}"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_forecast.budget",
                                     description="Inspect and repair a study's FLOPs ledger.")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="print the study's FLOPs table")
    report.add_argument("--ledger", default=DEFAULTS.ledger_url, help="SQLAlchemy URL")
    report.add_argument("--study", default=None,
                        help="default: the ledger's only study; with several, they are listed")
    report.add_argument("--budget", type=float, default=None,
                        help="max FLOPs (default: as recorded with the study's latest run)")
    report.add_argument("--format", choices=tuple(FORMATS), default="text")
    report.set_defaults(handler=_report)
    reconcile = commands.add_parser(
        "reconcile", help="mark runs whose process died as failed (this host by default)")
    reconcile.add_argument("--ledger", default=DEFAULTS.ledger_url, help="SQLAlchemy URL")
    reconcile.add_argument("--study", default=None, help="default: every study")
    reconcile.add_argument("--all-hosts", action="store_true",
                           help="also other hosts' runs whose heartbeat is older than "
                                "--older-than (their pids cannot be probed from here)")
    reconcile.add_argument("--older-than", type=float, default=None, metavar="SECONDS")
    reconcile.set_defaults(handler=_reconcile)
    return parser


@command(ValueError, sa.exc.SQLAlchemyError)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(args.handler(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
