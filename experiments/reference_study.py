"""The whole reference study under one FLOPs budget, step by step (see experiments/README.md).

    python -m experiments.reference_study --plan            # predicted cost of every step
    python -m experiments.reference_study                   # run it (GPU machine)
    python -m experiments.reference_study --from final      # resume from a step
    python -m experiments.reference_study --study s2 --budget 1e17 -- logger=wandb

Steps, all charged to budget study ``--study`` in ``<output_dir>/ledger.sqlite``:

1. ``baselines``  forecasters without an LLM (persistence, linear AR, ODE fit): 0 LLM FLOPs
2. ``baseline``   the untrained LLM forecasting the test split
3. ``default``    the default LoRA run (lr 1e-5, rank 4, context 512, 2000 steps)
4. ``lr_rank``    search phase 1: grid lr {1e-5, 5e-5, 1e-4} x rank {2, 4, 8} at context 320
5. ``context``    search phase 2: context {128, 512, 768} at phase 1's best lr and rank
6. ``final``      best lr, rank and context, max_steps sized to what the budget has left
7. ``report``     ``<output_dir>/studies/<study>/report.md``: results, sweeps, FLOPs table

Every step is an ordinary ``python -m lora_forecast`` command (printed before it runs), so
any of them can be rerun by hand. Runs land in ``<output_dir>/studies/<study>/<step>/``;
a search phase keeps one sweep directory, so rerunning it resumes the same Optuna study and
adds only the missing trials (``trial_<n>`` run directories).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENTRY = [sys.executable, "-m", "lora_forecast"]
DRY_LINE = re.compile(r"^(predicted|remaining)_flops=([0-9.eE+-]+)$", re.M)
FINAL_STEP_FRACTION = 0.98  # keep 2% of what is left as headroom


@dataclass
class Study:
    name: str
    budget: float
    output_dir: str
    extra: list[str]
    max_final_steps: int = 15000

    @property
    def root(self) -> str:
        return f"{self.output_dir}/studies/{self.name}"

    def common(self) -> list[str]:
        return [f"budget.study={self.name}", f"budget.max_flops={self.budget:g}",
                f"output_dir={self.output_dir}", *self.extra]

    def run_dir(self, step: str) -> str:
        return f"hydra.run.dir={self.root}/{step}/${{now:%Y-%m-%d_%H-%M-%S}}"

    def sweep_dir(self, phase: str) -> str:
        return f"hydra.sweep.dir={self.root}/{phase}"

    def best_params(self, phase: str) -> dict[str, object]:
        """The best trial's parameters of a finished search phase (read from its study)."""
        import optuna

        from lora_forecast.training.pruning import open_storage

        storage = open_storage(f"sqlite:///{Path(self.output_dir).resolve()}/optuna.sqlite")
        study = optuna.load_study(study_name=f"{self.name}-{phase}", storage=storage)
        return dict(study.best_trial.params)


def _hs() -> str:
    """``hparams_search`` if conf/config.yaml lists the group in its defaults, else appended."""
    root = Path(__file__).resolve().parents[1] / "conf" / "config.yaml"
    return "hparams_search" if "hparams_search" in root.read_text() else "+hparams_search"


def _phase1(s: Study) -> list[str]:
    best = s.best_params("lr_rank")
    return [f"train.lr={best['train.lr']}", f"lora.rank={best['lora.rank']}"]


def _final(s: Study) -> list[str]:
    context = s.best_params("context")["data.context_tokens"]
    fixed = ["+experiment=final", *_phase1(s), f"data.context_tokens={context}", *s.common()]
    steps = affordable_steps(fixed, s.max_final_steps)
    return [*fixed, f"train.max_steps={steps}", s.run_dir("final")]


# step -> function(study) -> the lora_forecast arguments of that step
STEPS: dict[str, Callable[[Study], list[str]]] = {
    "baselines": lambda s: ["+experiment=baselines", *s.common(), s.run_dir("baselines")],
    "baseline": lambda s: ["+experiment=baseline", *s.common(), s.run_dir("baseline")],
    "default": lambda s: ["+experiment=default", *s.common(), s.run_dir("default")],
    # experiment=<phase>: the ledger and the report list each phase's spend on its own line
    "lr_rank": lambda s: ["--multirun", "+experiment=default", f"{_hs()}=lr_rank",
                          "experiment=lr_rank", s.sweep_dir("lr_rank"), *s.common()],
    "context": lambda s: ["--multirun", "+experiment=default", f"{_hs()}=context", *_phase1(s),
                          "experiment=context", s.sweep_dir("context"), *s.common()],
    "final": _final,
}


def dry_run(args: list[str]) -> tuple[float, float]:
    """(predicted, remaining) FLOPs of one single run, from ``budget.dry_run=true``."""
    done = subprocess.run([*ENTRY, *args, "budget.dry_run=true"], capture_output=True, text=True)
    found = dict(DRY_LINE.findall(done.stdout))
    if done.returncode != 0 or len(found) != 2:
        raise SystemExit(f"dry run failed: {' '.join(args)}\n{done.stdout}{done.stderr}")
    return float(found["predicted"]), float(found["remaining"])


def steps_within(args: list[str], left: float, cap: int) -> tuple[int, float]:
    """The largest ``train.max_steps`` <= ``cap`` (a multiple of 100) whose predicted cost fits
    in ``left`` FLOPs, and that cost. The cost is affine in the steps (training plus one
    validation per ``eval_every``, plus fixed forecasting), so two dry runs pin it down."""
    p1, _ = dry_run([*args, "train.max_steps=1000"])
    p2, _ = dry_run([*args, "train.max_steps=2000"])
    per_step, fixed = (p2 - p1) / 1000, 2 * p1 - p2
    steps = max(0, min(int((left - fixed) / per_step) // 100 * 100, cap))
    return steps, fixed + steps * per_step


def affordable_steps(args: list[str], cap: int) -> int:
    """``train.max_steps`` for the final run from what the ledger says is left (2% headroom)."""
    _, remaining = dry_run(args)
    steps, predicted = steps_within(args, FINAL_STEP_FRACTION * remaining, cap)
    print(f"final run: {steps} steps fit the {remaining:.3e} FLOPs left "
          f"(predicted {predicted:.3e})", flush=True)
    return steps


def run_step(name: str, study: Study) -> None:
    if name == "report":
        command = [sys.executable, "-m", "lora_forecast.report", study.root,
                   "--out", f"{study.root}/report.md", "--budget", f"{study.budget:g}"]
    else:
        command = [*ENTRY, *STEPS[name](study)]
    print("\n$ " + shlex.join(["python", *command[1:]]), flush=True)
    subprocess.run(command, check=True)


def sweep_points(phase: str, fixed: list[str]) -> list[list[str]]:
    """Every trial's overrides of a grid phase (its params file, then ``fixed`` overrides)."""
    import itertools

    import yaml

    from hydra_plugins.budgeted_optuna_sweeper._search_space import (
        params_to_overrides,
        parse_search_space,
    )

    conf = Path(__file__).resolve().parents[1] / "conf" / "hparams_search" / f"{phase}.yaml"
    params = yaml.safe_load(conf.read_text())["hydra"]["sweeper"]["params"]
    space = parse_search_space([*params_to_overrides(params), *fixed])
    grid = space.grid()
    return [space.overrides(dict(zip(grid, values, strict=True)))
            for values in itertools.product(*grid.values())]


def plan(study: Study) -> None:
    """Print every step's predicted FLOPs (from dry runs) and what the final run can afford."""
    rows, spent = [], 0.0
    singles = {name: STEPS[name](study) for name in ("baselines", "baseline", "default")}
    phases = {"lr_rank": ["+experiment=default"],
              "context": ["+experiment=default", "train.lr=5e-05", "lora.rank=8"]}
    for name, args in singles.items():
        predicted, _ = dry_run(args)
        rows.append((name, "1 run", predicted))
    for phase, fixed in phases.items():
        costs = [dry_run([*point, *study.common()])[0] for point in sweep_points(phase, fixed)]
        rows.append((phase, f"{len(costs)} trials", sum(costs)))
    spent = sum(r[2] for r in rows)
    final = ["+experiment=final", "train.lr=5e-05", "lora.rank=8", "data.context_tokens=512",
             *study.common()]
    steps, predicted = steps_within(final, FINAL_STEP_FRACTION * (study.budget - spent),
                                    study.max_final_steps)
    full, _ = dry_run(final)
    rows.append(("final", f"{steps} steps max", predicted))
    rows.append(("(final at 15000)", "for reference", full))
    print(f"{'step':<18} {'size':<16} {'predicted FLOPs':>16} {'% of budget':>12}")
    for name, size, flops in rows:
        print(f"{name:<18} {size:<16} {flops:>16.3e} {100 * flops / study.budget:>11.2f}%")
    total = sum(r[2] for r in rows[:-1])
    print(f"{'total':<18} {'':<16} {total:>16.3e} {100 * total / study.budget:>11.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="reference", help="budget study (ledger) name")
    parser.add_argument("--budget", type=float, default=1e17, help="FLOPs for the whole study")
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--plan", action="store_true", help="print predicted costs, run nothing")
    parser.add_argument("--from", dest="start", choices=[*STEPS, "report"], default="baselines")
    parser.add_argument("--max-final-steps", type=int, default=15000,
                        help="cap on the final run's steps (the budget may allow fewer)")
    parser.add_argument("extra", nargs="*", help="overrides for every step (after --)")
    args = parser.parse_args()
    study = Study(args.study, args.budget, args.output_dir, list(args.extra),
                  args.max_final_steps)
    if args.plan:
        plan(study)
        return
    names = [*STEPS, "report"]
    for name in names[names.index(args.start):]:
        run_step(name, study)


if __name__ == "__main__":
    main()
