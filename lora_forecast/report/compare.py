"""``python -m lora_forecast.report.compare RUN_A RUN_B [--metric mse]``: is A better than B?

Reads two runs' ``results.json`` and compares their LLM's per-series scores on the same test
series with a paired bootstrap (:func:`lora_forecast.evaluation.paired.paired_difference`).
Runs tested on different series are refused with one line (exit 2): the comparison would
not be paired.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lora_forecast.command import command
from lora_forecast.errors import ConfigError
from lora_forecast.evaluation.paired import PairedComparison, paired_difference, per_series_by_id
from lora_forecast.results import RESULTS_FILE, read_results

__all__ = ["compare_runs", "main"]


def compare_runs(run_dir_a: str | Path, run_dir_b: str | Path, metric: str = "mse",
                 n_resamples: int = 1000, seed: int = 0) -> PairedComparison:
    """Mean per-series ``metric`` of run A's LLM minus run B's, with a 95% paired interval.

    Raises:
        ConfigError: a run has no results or no per-series ``metric``, or the two runs were
            scored on different test series.
    """
    a, b = (_load(Path(d), metric) for d in (run_dir_a, run_dir_b))
    ids_a, ids_b = a["eval_series"]["ids"], b["eval_series"]["ids"]
    if set(ids_a) != set(ids_b):
        raise ConfigError(
            f"{run_dir_a} and {run_dir_b} were tested on different series ({len(ids_a)} and "
            f"{len(ids_b)} ids, {len(set(ids_a) & set(ids_b))} shared); a paired comparison "
            "needs the same eval.n_systems, split and data")
    return paired_difference(per_series_by_id(a["metrics"], ids_a, metric),
                             per_series_by_id(b["metrics"], ids_b, metric), n_resamples, seed)


def _load(run_dir: Path, metric: str) -> dict[str, Any]:
    results = read_results(run_dir)
    if results is None:
        raise ConfigError(f"{run_dir / RESULTS_FILE}: not found")
    per_series = (results.get("metrics") or {}).get("per_series") or {}
    ids = (results.get("eval_series") or {}).get("ids")
    if metric not in per_series or not ids:
        held = ", ".join(sorted(per_series)) or "none (no LLM scores, or an older run)"
        raise ConfigError(f"{run_dir / RESULTS_FILE}: no per-series {metric!r} scores; "
                          f"metrics.per_series holds: {held}")
    return results


@command()
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lora_forecast.report.compare",
        description="Paired bootstrap of two runs' per-series test scores (A minus B).")
    parser.add_argument("run_a", metavar="RUN_A", help="run directory (results.json)")
    parser.add_argument("run_b", metavar="RUN_B", help="run directory (results.json)")
    parser.add_argument("--metric", default="mse",
                        help="per-series metric: mse, mae, mase, smape, msis, wql, crps, ...")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    cmp = compare_runs(args.run_a, args.run_b, args.metric, args.resamples)
    verdict = ("A lower" if cmp.high < 0 else "B lower" if cmp.low > 0
               else "no clear difference")
    print(f"{args.metric} A - B: {cmp.mean:.4g} [{cmp.low:.4g}, {cmp.high:.4g}] over {cmp.n} "
          f"series (95% paired bootstrap; {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
