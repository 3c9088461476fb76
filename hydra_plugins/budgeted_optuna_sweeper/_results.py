"""``optimization_results.yaml`` in the sweep directory: the best trial (or the Pareto front),
the overrides that reproduce it, and one line per trial of the study."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from lora_forecast.training.pruning import journal_path

TRIAL_ATTRS = ("status", "flops_spent", "predicted_flops", "rejected_by", "stopped_by",
               "pruned_at_step", "cancelled", "error", "run_dir")

Overrides = Callable[[dict[str, Any]], list[str]]


def public_url(url: str) -> str:
    """The storage URL without its password."""
    if journal_path(url) is not None:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _trial_line(trial: FrozenTrial) -> dict[str, Any]:
    line: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                            "params": dict(trial.params)}
    if trial.values is not None:
        line["values" if len(trial.values) > 1 else "value"] = (
            list(trial.values) if len(trial.values) > 1 else trial.values[0])
    line.update({k: trial.user_attrs[k] for k in TRIAL_ATTRS if k in trial.user_attrs})
    return line


def _best(study: optuna.Study, overrides: Overrides) -> dict[str, Any]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return {"best_params": None, "best_value": None}
    if len(study.directions) == 1:
        best = study.best_trial
        return {"best_trial": best.number, "best_params": dict(best.params),
                "best_value": best.value, "best_overrides": overrides(dict(best.params))}
    return {"pareto_front": [{"number": t.number, "params": dict(t.params),
                              "values": list(t.values), "overrides": overrides(dict(t.params))}
                             for t in study.best_trials]}


def summarize(study: optuna.Study, storage_url: str, n_trials: int,
              overrides: Overrides) -> dict[str, Any]:
    """The content of optimization_results.yaml (plain, YAML-ready)."""
    trials = study.get_trials(deepcopy=False)
    spent = sum(float(t.user_attrs.get("flops_spent", 0.0)) for t in trials)
    return {
        "name": "budgeted_optuna",
        "study_name": study.study_name,
        "storage": public_url(storage_url),
        "directions": [d.name.lower() for d in study.directions],
        "n_trials": n_trials,
        "states": dict(Counter(t.state.name for t in trials)),
        "flops_spent": spent,
        **_best(study, overrides),
        "trials": [_trial_line(t) for t in trials],
    }


def write_results(sweep_dir: Path, summary: dict[str, Any]) -> Path:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / "optimization_results.yaml"
    path.write_text(yaml.safe_dump(summary, sort_keys=False))
    return path
