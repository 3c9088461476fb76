"""Does fine-tuning a real LLM beat zero-shot and the classical models on real series?

    python -m experiments.leaderboard --model gemma3-270m --data /data/lotka_volterra_data.h5
    python -m experiments.leaderboard --model tiny --data ... --smoke      # the plumbing only

Steps, each an ordinary command (printed before it runs), every LLM run charged to one
ledger (``<root>/ledger.sqlite``):

1. ``data``       two univariate training tables: ``lv_univariate.csv`` (each variable of each
   Lotka-Volterra system a series of its own: a different domain from the suite) and
   ``suite_history.csv`` (each variable of each ``suite=statsmodels`` task cut BEFORE the first
   benchmark window: the series' own past, nothing the leaderboard scores);
2. ``lv``         LoRA on the first (``<root>/runs/lv``), with ``train.compare_zero_shot=true``;
3. ``history``    LoRA on the second (``<root>/runs/history``), the same recipe;
4. ``benchmark``  ``python -m lora_forecast.benchmark suite=statsmodels models=[lv,history]``:
   both against their zero-shot base and the classical models, with the FLOPs of each
   (``<root>/leaderboard``).

Both runs use LLMTIME's per-context scaling (``data.scaling=per_series``) and a '-' in their
alphabet (``data.signed=true``), so they can write any task of the suite.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PYTHON = sys.executable
STEPS = ("data", "lv", "history", "benchmark")
SUITE = "statsmodels"
RECIPES = {  # model -> (overrides, LoRA rank, lr, context tokens, steps, eval_every)
    "gemma3-270m": (["model=gemma3-270m"], 8, 2e-4, 512, 60, 20),
    "tiny": (["model=tiny"], 8, 1e-3, 128, 4, 2),
}
SMOKE = ["eval.n_systems=2", "eval.bootstrap=20", "train.val_max_windows=2"]


def lv_univariate(h5: Path, out: Path) -> Path:
    """Every variable of every system of the Lotka-Volterra file as its own series."""
    from lora_forecast.config import DataConfig
    from lora_forecast.data.sources import read_series

    series = read_series(str(h5), DataConfig(path=str(h5)))
    frames = [pd.DataFrame({"series_id": f"{sid}_{name}", "time": times, "value": v[:, j]})
              for sid, v, times in zip(series.ids, series.values, series.times, strict=True)
              for j, name in enumerate(series.variables)]
    pd.concat(frames).to_csv(out, index=False)
    return out


def suite_history(out: Path) -> Path:
    """Each variable of each task of the suite up to its first benchmark window's origin."""
    from hydra import compose, initialize_config_dir

    from lora_forecast.benchmark.__main__ import build
    from lora_forecast.benchmark.run import load_tasks
    from lora_forecast.config import resolved_config
    from lora_forecast.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        config = resolved_config(compose(config_name="benchmark",
                                         overrides=[f"suite={SUITE}", "out=unused"]))
    job, settings = build(config)
    frames = []
    for task in load_tasks(job, settings.eval.context_steps):
        first = int(task.windows.origins.min())  # every window starts at or after this step
        for s, values in enumerate(task.series.values):
            for j, name in enumerate(task.series.variables):
                frames.append(pd.DataFrame({"series_id": f"{task.name}:{name}:{s}",
                                            "time": np.arange(first),
                                            "value": values[:first, j]}))
    pd.concat(frames).to_csv(out, index=False)
    return out


def finetune_args(args: argparse.Namespace, table: Path, run_dir: Path,
                  test_series: int | None) -> list[str]:
    """The fine-tune of one table; ``test_series`` caps its test split (None: all of it)."""
    overrides, rank, lr, context, steps, every = RECIPES[args.model]
    return ["-m", "lora_forecast", "+experiment=default", *overrides, "data=table",
            f"data.path={table}", "data.scaling=per_series", "data.signed=true",
            f"data.context_tokens={context}", f"lora.rank={rank}", f"train.lr={lr}",
            f"train.max_steps={steps}", f"train.eval_every={every}", "train.val_max_windows=16",
            "train.compare_zero_shot=true", "eval.context_steps=64", "eval.horizon_steps=10",
            f"eval.n_systems={'null' if test_series is None else test_series}",
            "eval.baselines=[persistence,linear_ar]",
            "data.split={train: 0.75, val: 0.125, test: 0.125, seed: 0}",
            f"budget.study={args.study}", f"budget.max_flops={args.budget}",
            f"budget.ledger_url=sqlite:///{args.root / 'ledger.sqlite'}",
            f"output_dir={args.root}", f"hydra.run.dir={run_dir}",
            *(SMOKE if args.smoke else [])]


def benchmark_args(args: argparse.Namespace) -> list[str]:
    runs = ",".join(str(args.root / "runs" / name) for name in ("lv", "history"))
    return ["-m", "lora_forecast.benchmark", f"suite={SUITE}", f"models=[{runs}]",
            f"out={args.root / 'leaderboard'}", f"output_dir={args.root}",
            f"budget.ledger_url=sqlite:///{args.root / 'ledger.sqlite'}",
            f"budget.max_flops={args.budget}", "progress=false",
            *(["max_windows=1", "eval.num_samples=2"] if args.smoke else [])]


def run(command: list[str]) -> None:
    print("\n$ python " + shlex.join(command), flush=True)
    code = subprocess.run([PYTHON, *command]).returncode
    if code != 0:
        raise SystemExit(f"error: exited with {code}: python {shlex.join(command)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(RECIPES), required=True)
    parser.add_argument("--data", default="data/lotka_volterra_data.h5",
                        help="the Lotka-Volterra HDF5 file")
    parser.add_argument("--root", type=Path, default=None,
                        help="output folder (default outputs/leaderboard-<model>)")
    parser.add_argument("--study", default=None, help="budget study of the two fine-tunes")
    parser.add_argument("--budget", type=float, default=1e15)
    parser.add_argument("--from", dest="start", choices=STEPS, default=STEPS[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the plumbing only")
    args = parser.parse_args(argv)
    args.root = (args.root or Path("outputs") / f"leaderboard-{args.model}").resolve()
    args.study = args.study or f"leaderboard-{args.model}"
    data = args.root / "data"
    for step in STEPS[STEPS.index(args.start):]:
        if step == "data":
            data.mkdir(parents=True, exist_ok=True)
            print(f"wrote {lv_univariate(Path(args.data), data / 'lv_univariate.csv')}")
            print(f"wrote {suite_history(data / 'suite_history.csv')}")
        elif step in ("lv", "history"):
            table = data / ("lv_univariate.csv" if step == "lv" else "suite_history.csv")
            # the suite's 16 series leave 2 long enough to test on; the LV split has 125
            run(finetune_args(args, table, args.root / "runs" / step,
                              20 if step == "lv" else None))
        else:
            run(benchmark_args(args))
    print(f"\nleaderboard: {args.root / 'leaderboard' / 'leaderboard.md'}")


if __name__ == "__main__":
    main()
