"""``python -m lora_forecast.report PATH... [--out report.md] [--ledger URL] [--budget FLOPS]``.

PATHs are run directories (holding ``results.json``) or multirun directories (searched
recursively). Writes the Markdown report and its figures beside it. Errors print one line on
stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lora_forecast.command import command
from lora_forecast.errors import ConfigError
from lora_forecast.report.build import build_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lora_forecast.report",
        description="Write a Markdown report (metrics, FLOPs, sweeps, figures) from runs.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run or multirun directories (searched for results.json)",
    )
    parser.add_argument("--out", default="report.md", help="report file (default: report.md)")
    parser.add_argument(
        "--ledger",
        default=None,
        metavar="URL",
        help="FLOPs ledger URL (default: the runs' config.budget.ledger_url)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="FLOPS",
        help="study budget (default: as recorded by the runs)",
    )
    return parser


@command()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        raise ConfigError(f"--budget must be > 0, got {args.budget:g}")
    path = build_report(args.paths, args.out, ledger_url=args.ledger, budget=args.budget)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
