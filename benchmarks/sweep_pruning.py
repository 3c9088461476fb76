"""Pruning benchmark: one 9-trial grid search on the tiny model, with and without pruning.

    python -m benchmarks.sweep_pruning [--steps 60] [--eval-every 10] [--lrs 1e-4,1e-3,1e-2]
                                       [--ranks 2,4,8] [--startup 3] [--out DIR]

Both variants run the same command, ``python -m lora_forecast --multirun +experiment=smoke
hparams_search=lr_rank`` over lr x rank (the tiny random model learns nothing at the reference
study's 1e-5..1e-4 in a few dozen steps, so the default grid is 1e-4..1e-2), each in its own
output folder (own Optuna storage, own ledger, own budget study):

- ``no pruning``: every trial trains all ``--steps`` steps and forecasts the test systems;
- ``median``: Optuna's MedianPruner stops a trial whose validation loss at an evaluation is
  worse than the median of earlier trials at that step, once ``--startup`` trials finished.

Prints one row per variant (trials completed / pruned, FLOPs spent from the ledger, the best
configuration and its validation loss, wall time); the LAST line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import print_json_last, print_table

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "no pruning": ["hydra.sweeper.pruner.name=none"],
    "median": ["hydra.sweeper.pruner.name=median"],
}


def sweep_command(args: argparse.Namespace, variant: str, out: Path) -> list[str]:
    """The multirun command line of one variant."""
    command = [
        sys.executable, "-m", "lora_forecast", "--multirun", "+experiment=smoke",
        f"{_hparams_search_key()}=lr_rank",
        f"train.lr=choice({args.lrs})", f"lora.rank=choice({args.ranks})",
        f"train.max_steps={args.steps}", f"train.eval_every={args.eval_every}",
        "train.patience=null", f"data.context_tokens={args.context}",
        f"budget.study=bench-{variant.replace(' ', '-')}", f"output_dir={out}",
        f"hydra.sweep.dir={out}/sweep", *VARIANTS[variant],
    ]
    if variant != "no pruning":
        command += [f"++hydra.sweeper.pruner.options.n_startup_trials={args.startup}",
                    f"++hydra.sweeper.pruner.options.n_warmup_steps={args.eval_every}"]
    return command


def _hparams_search_key() -> str:
    """``hparams_search`` if the root config lists the group in its defaults, else appended."""
    defaults = (REPO / "conf" / "config.yaml").read_text()
    return "hparams_search" if "hparams_search" in defaults else "+hparams_search"


def run_variant(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """Run one sweep in a subprocess; read its optimization_results.yaml and ledger."""
    from lora_forecast.budget.ledger import Ledger

    out = Path(args.out).resolve() / variant.replace(" ", "-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(sweep_command(args, variant, out), cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{variant}: sweep failed with exit code {done.returncode}")
    summary = yaml.safe_load((out / "sweep" / "optimization_results.yaml").read_text())
    with Ledger(f"sqlite:///{out}/ledger.sqlite") as ledger:
        spend = ledger.study_spend(f"bench-{variant.replace(' ', '-')}")
    return {"variant": variant, "states": summary["states"], "flops": spend.committed,
            "best_params": summary["best_params"], "best_value": summary["best_value"],
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="max optimiser steps per trial")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--context", type=int, default=128, help="data.context_tokens")
    parser.add_argument("--lrs", default="1e-4,1e-3,1e-2")
    parser.add_argument("--ranks", default="2,4,8")
    parser.add_argument("--startup", type=int, default=3, help="trials finished before pruning")
    parser.add_argument("--out", default="outputs/benchmarks/sweep_pruning/"
                        + time.strftime("%Y%m%d-%H%M%S"))
    args = parser.parse_args()
    rows = [run_variant(args, variant) for variant in VARIANTS]
    base = rows[0]["flops"]
    print_table([(r["variant"], str(r["states"].get("COMPLETE", 0)),
                  str(r["states"].get("PRUNED", 0)), f"{r['flops']:.3e}",
                  f"{r['flops'] / base:.2f}",
                  " ".join(f"{k}={v}" for k, v in (r["best_params"] or {}).items()),
                  f"{r['best_value']:.4f}" if r["best_value"] is not None else "-",
                  f"{r['seconds']:.0f}") for r in rows],
                ("variant", "complete", "pruned", "FLOPs spent", "x no-pruning",
                 "best configuration", "best val loss", "wall s"))
    print_json_last({"steps": args.steps, "grid": {"train.lr": args.lrs, "lora.rank": args.ranks},
                     "flops_ratio": rows[1]["flops"] / base if base else None,
                     "same_best": rows[0]["best_params"] == rows[1]["best_params"],
                     "variants": rows})


if __name__ == "__main__":
    main()
