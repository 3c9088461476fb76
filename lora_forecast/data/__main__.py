"""CLI: ``python -m lora_forecast.data generate --out PATH [--systems N] [--seed S] [--steps T]``.

Writes a synthetic Lotka-Volterra file in the SPEC format, for users without the real data.
Errors print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lora_forecast.command import command
from lora_forecast.data.generator import generate_lotka_volterra, provenance, write_trajectories


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_forecast.data",
                                     description="Data utilities for lora-forecast.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write synthetic Lotka-Volterra trajectories")
    gen.add_argument("--out", required=True, help="destination .h5 file")
    gen.add_argument("--systems", type=int, default=1000, help="number of systems (default 1000)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--steps", type=int, default=100, help="time points per system (default 100)")
    gen.add_argument("--t-max", type=float, default=200.0, help="last time point (default 200)")
    return parser


def _generate(args: argparse.Namespace) -> str:
    trajectories, time = generate_lotka_volterra(
        n_systems=args.systems, n_steps=args.steps, t_max=args.t_max, seed=args.seed)
    path = write_trajectories(args.out, trajectories, time,
                              attrs=provenance(args.seed))
    n_systems, n_steps, n_vars = trajectories.shape
    prey, predator = trajectories[..., 0], trajectories[..., 1]
    return (f"wrote {path}: {n_systems} systems x {n_steps} steps x {n_vars} variables "
            f"(seed {args.seed}; prey {prey.min():.3g}..{prey.max():.3g}, "
            f"predator {predator.min():.3g}..{predator.max():.3g})")


@command(ValueError, OSError)
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 on a user error)."""
    args = _parser().parse_args(argv)
    print(_generate(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
