"""Shared fixtures: compose the real config once and shrink it (tiny model, small data, CPU)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lora_forecast.config import register_configs
from lora_forecast.paths import config_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One intra-op thread: the tiny models gain nothing from more, two threads on two shared
# cores spin against each other (several times slower), and subprocess runs in the resume
# tests use the same count so their floating-point sums match in-process runs exactly.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = config_dir()  # the checkout's conf/, or the installed package's


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of a child Python run by a test: this checkout importable, one intra-op
    thread (as in-process), offline Hub and W&B; ``extra`` adds or overrides variables."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **extra}

# Small enough for seconds on 2 cores, large enough to exercise every phase.
SHRINK = [
    "model=tiny",
    "data=synthetic",
    "data.systems=40",
    "data.context_tokens=64",
    "train.max_steps=4",
    "train.batch_size=2",
    "train.eval_every=2",
    "train.val_max_windows=4",
    "train.lr=1e-3",
    "eval.n_systems=2",
    "eval.context_steps=8",
    "eval.horizon_steps=2",
    "eval.bootstrap=20",
    "eval.baselines=[persistence]",
    "logger=none",
]

register_configs()


def forecast_with(model, fmt, contexts, *, logits_fn=None, progress: bool = False, **options):
    """:func:`lora_forecast.forecasting.forecast` with its :class:`ForecastOptions` given as
    keywords: the tests' shorthand (library code builds the options once)."""
    from lora_forecast.forecasting import ForecastOptions, forecast

    return forecast(model, fmt, contexts, ForecastOptions(**options), logits_fn=logits_fn,
                    progress=progress)


def count_with(arch, *, accounting: str, convention="coursework", **request):
    """:func:`lora_forecast.flops.count_flops` with its :class:`FlopsRequest` as keywords."""
    from lora_forecast.flops import FlopsRequest, count_flops

    return count_flops(arch, FlopsRequest(**request), accounting=accounting,
                       convention=convention)


def decode_with(logits_fn, prompts, *, generator=None, repeats: int = 1, max_new_tokens: int,
                grammar=None, semicolons=None, horizon_steps=None, eos_ids=(), drafter=None,
                **options):
    """:func:`lora_forecast.forecasting.decode` with its stop rule and options as keywords."""
    from lora_forecast.forecasting import DecodeOptions, StopRule, decode

    stop = StopRule(max_new_tokens, grammar, semicolons, horizon_steps, tuple(eos_ids))
    return decode(logits_fn, prompts, DecodeOptions(stop, **options), generator=generator,
                  repeats=repeats, drafter=drafter)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/`` with the shrink overrides, outputs under this test's ``tmp_path``."""

    def _compose(*overrides: str, shrink: bool = True) -> DictConfig:
        base = [*SHRINK] if shrink else []
        base.append(f"output_dir={tmp_path / 'outputs'}")
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=[*base, *overrides])

    return _compose


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path
