"""Quiet by default: our model calls raise no deprecation warning, library noise is handled once."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHRINK, decode_with, subprocess_env

from lora_forecast.config import LoraConfig, ModelConfig
from lora_forecast.models.build import build_model
from lora_forecast.models.numeric_head import logits_fn_for
from lora_forecast.quiet import quiet_third_party

DIGITS_POINT_COMMA_SEMICOLON = (*range(15, 25), 13, 11, 26)  # Qwen2.5 ids (SPEC)


@pytest.mark.parametrize("head", ["full", "numeric"])
def test_cached_decoding_raises_no_deprecation_warning(head: str) -> None:
    model = build_model(ModelConfig(kind="tiny"), LoraConfig()).eval()
    logits_fn = logits_fn_for(head, model, DIGITS_POINT_COMMA_SEMICOLON)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = decode_with(logits_fn, [[15, 13, 16], [17, 26]], pad_id=0, max_new_tokens=3,
                        semicolons=torch.zeros(151936, dtype=torch.long), horizon_steps=1)
    assert result.decode_steps == 2  # the cache was passed back in twice
    noisy = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert noisy == [], [str(w.message) for w in noisy]


@pytest.fixture
def restore_library_logging():
    """quiet_third_party() changes process-wide logging; put it back after the test."""
    names = ("huggingface_hub", "transformers")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
             for n in names}
    with warnings.catch_warnings():
        yield
    for name, (handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_hub_retry_warning_is_logged_once_through_the_root_logger(
        restore_library_logging, caplog, capfd) -> None:
    quiet_third_party()
    quiet_third_party()  # idempotent: the entry point may run more than once per process
    with caplog.at_level(logging.WARNING):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    assert [r.getMessage() for r in caplog.records] == ["Retrying in 1s [Retry 1/5]."]
    assert "Retrying" not in capfd.readouterr().err  # the library's own handler is gone


def test_peft_is_gradient_checkpointing_warning_is_filtered(restore_library_logging) -> None:
    def wrap_and_collect(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if quiet:
                quiet_third_party()
            build_model(ModelConfig(kind="tiny"), LoraConfig())
        return [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)]

    # The control: peft still triggers it (when it stops, drop the filter from lora_forecast.quiet).
    assert wrap_and_collect(quiet=False)
    assert wrap_and_collect(quiet=True) == []


@pytest.mark.integration  # separate processes or a whole command
def test_smoke_run_prints_no_warning(tmp_path: Path) -> None:
    """The quickstart's experiment at toy size (W&B offline as in the quickstart)."""
    shrink = [o for o in SHRINK if not o.startswith("logger=")]
    env = subprocess_env()
    env.pop("WANDB_SILENT", None)
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run(
        [sys.executable, "-m", "lora_forecast", "+experiment=smoke", *shrink,
         f"output_dir={tmp_path}/outputs", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    noisy = [line for line in (result.stderr + result.stdout).splitlines()
             if "Warning" in line or "deprecated" in line.lower()]
    assert noisy == []
