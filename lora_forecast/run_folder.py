"""A run's folder as what forecasting, export and the leaderboard read: settings, scaling, model.

A run leaves ``results.json`` (with its resolved ``config``; :mod:`lora_forecast.results`
writes it), ``best/trainable.pt`` (the best validated adapter) and ``scaling.json`` (the fitted
scale and the variable names); this module reads them back and rebuilds the model exactly as
the run evaluated it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from lora_forecast.config import Settings, to_settings
from lora_forecast.errors import ConfigError
from lora_forecast.results import RESULTS_FILE

if TYPE_CHECKING:
    import torch

__all__ = ["BEST_ADAPTER", "SCALING_FILE", "load_run_model", "run_config", "run_scaling",
           "settings_from"]

SCALING_FILE = "scaling.json"
BEST_ADAPTER = Path("best") / "trainable.pt"


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config a run recorded in its results.json.

    Raises:
        ConfigError: ``run: <dir>: ...`` when it is not a finished run directory.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"run: {run_dir}: no {RESULTS_FILE} (not a run directory)")
    try:
        config = json.loads(path.read_text()).get("config")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run: {path}: not valid JSON ({exc.msg})") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"run: {path}: holds no resolved config")
    return config


def settings_from(config: dict[str, Any], overrides: list[str] | None = None) -> Settings:
    """Validated settings from a recorded config with ``key=value`` overrides on top."""
    merged = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(overrides or []))
    return to_settings(merged)


def run_scaling(run_dir: str | Path) -> dict[str, Any] | None:
    """The scaling a run fitted (``scaling.json``), or None for runs that predate it."""
    path = Path(run_dir) / SCALING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_run_model(settings: Settings, run_dir: str | Path | None) -> torch.nn.Module:
    """The run's base model with its best adapter loaded (LoRA at zero when ``run_dir`` is
    None: the untrained base model).

    Raises:
        ConfigError: the run has no trained adapter.
    """
    import torch

    from lora_forecast.models.build import build_model, load_trainable_state

    model = build_model(settings.model, settings.lora)
    if run_dir is not None:
        best = Path(run_dir) / BEST_ADAPTER
        if not best.is_file():
            raise ConfigError(f"run: {run_dir}: no trained adapter ({BEST_ADAPTER})")
        load_trainable_state(model, torch.load(best, weights_only=True))
    model.eval()
    return model
