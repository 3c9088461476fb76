"""What a run will cost, known before any model or data is loaded.

:func:`plan_run` reads only the config and the data file's *shape* (HDF5 metadata), and
bounds every token count from above (each number written with ``eval.max_int_digits``
integer digits), so the prediction the ledger reserves is never below what the run meters.
Shared by the task (admission, ``budget.dry_run``) and the sweeper (admission before launch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lora_forecast.config import ModelConfig, Settings
from lora_forecast.data.loader import read_shape
from lora_forecast.data.splits import split_systems
from lora_forecast.data.windows import count_windows
from lora_forecast.errors import ConfigError
from lora_forecast.flops import Architecture, count_flops, resolve_lora_targets
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, TokenLayoutError

QWEN2_5_0_5B_IDS = ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B")
# Adding a step's cost max_steps times in floats can exceed per_step * max_steps by a few ulps.
# Reserving this relative margin keeps the meter (spent <= reservation) and the ledger
# (spend <= budget) exact comparisons without ever refusing a predicted step.
ROUNDING_MARGIN = 1e-9


def architecture_for(cfg: ModelConfig) -> Architecture:
    """The counted shape of the configured model, without loading weights."""
    if cfg.kind == "tiny":
        from lora_forecast.models.build import tiny_qwen2_config

        return Architecture.from_hf_config(tiny_qwen2_config(cfg))
    if cfg.name_or_path in QWEN2_5_0_5B_IDS:
        return Architecture.qwen2_5_0_5b()
    from lora_forecast.models.build import pretrained_config

    return Architecture.from_hf_config(pretrained_config(cfg))


def lora_targets(settings: Settings, arch: Architecture | None = None) -> tuple[str, ...]:
    """``lora.target_modules`` resolved for the model's family (checked before any weight is
    loaded; raises a one-line ConfigError naming the missing modules)."""
    return resolve_lora_targets(arch or architecture_for(settings.model),
                                settings.lora.target_modules)


def token_format(settings: Settings) -> LLMTimeFormat:
    """The run's LLMTIME format with a unit scale (token counts do not depend on alpha), from
    the model's own tokenizer: no weights are loaded.

    Raises:
        ConfigError: the tokenizer cannot write one token per LLMTIME symbol.
        ModelLoadError: the tokenizer cannot be found.
    """
    from lora_forecast.models.tokenizer import load_tokenizer

    codec = LLMTimeCodec(1.0, settings.data.decimals, settings.data.number_format)
    try:
        return LLMTimeFormat.for_tokenizer(codec, load_tokenizer(settings.model))
    except TokenLayoutError as exc:
        raise ConfigError(f"model.name_or_path: {settings.model.name_or_path}: {exc}") from None


def data_shape(settings: Settings) -> tuple[int, int, int]:
    """(systems, steps, variables) of the configured data, from metadata only."""
    data = settings.data
    if data.source == "synthetic":
        return data.systems, 100, 2
    return read_shape(Path(data.path))


@dataclass(frozen=True)
class RunShape:
    """Token counts that drive the cost, all upper bounds."""

    n_vars: int
    tokens_per_step: int
    n_train_windows: int
    n_val_windows: int
    n_evaluations: int
    n_test_systems: int
    prompt_tokens: int
    horizon_tokens: int


def run_shape(settings: Settings) -> RunShape:
    """Bound the run's token counts from the config and the data file's shape."""
    n_systems, n_steps, n_vars = data_shape(settings)
    split = settings.data.split
    systems = split_systems(n_systems, split.train, split.val, split.test, split.seed)
    per_step = token_format(settings).max_tokens_per_step(n_vars, settings.eval.max_int_digits)
    series_tokens = n_steps * per_step - 1
    context = settings.data.context_tokens
    n_val = count_windows([series_tokens] * len(systems.val), context, context)
    if settings.train.val_max_windows is not None:
        n_val = min(n_val, settings.train.val_max_windows)
    n_test = (
        len(systems.test)
        if settings.eval.n_systems is None
        else min(settings.eval.n_systems, len(systems.test))
    )
    return RunShape(
        n_vars=n_vars,
        tokens_per_step=per_step,
        n_train_windows=count_windows([series_tokens] * len(systems.train), context, context // 2),
        n_val_windows=n_val,
        n_evaluations=settings.train.max_steps // settings.train.eval_every + 1,
        n_test_systems=n_test,
        prompt_tokens=settings.eval.context_steps * per_step,
        horizon_tokens=settings.eval.horizon_steps * per_step - 1,
    )


@dataclass(frozen=True)
class CostPrediction:
    """Predicted FLOPs of one run by phase (the ledger reserves ``total``)."""

    training: float
    validation: float
    forecasting: float
    accounting: str
    per_train_step: float
    per_val_window: float

    @property
    def total(self) -> float:
        return (self.training + self.validation + self.forecasting) * (1 + ROUNDING_MARGIN)

    def as_dict(self) -> dict[str, float | str]:
        return {
            "training": self.training,
            "validation": self.validation,
            "forecasting": self.forecasting,
            "total": self.total,
            "accounting": self.accounting,
        }


def flops_counter(settings: Settings, arch: Architecture | None = None):
    """``count(mode, context_tokens, **kw) -> FLOPs`` with this run's model, LoRA and
    accounting options bound (``arch`` defaults to the configured model's)."""
    arch = arch or architecture_for(settings.model)
    common = {
        "accounting": settings.budget.accounting,
        "lora_rank": settings.lora.rank,
        "lora_targets": lora_targets(settings, arch),
        "lm_head_bias": settings.model.lm_head_bias,
        "head_vocab": _head_rows(settings),
    }

    def count(mode: str, context_tokens: int, **kwargs: int) -> float:
        extra = {"backward": settings.budget.backward,
                 "gradient_checkpointing": settings.train.gradient_checkpointing,
                 } if mode == "train" else {}
        return count_flops(
            arch, mode=mode, context_tokens=context_tokens, **common, **extra, **kwargs
        ).total

    return count


def _head_rows(settings: Settings) -> int | None:
    """Rows the numeric head computes (the format's symbols; None = the full vocabulary)."""
    if settings.model.head != "numeric":
        return None
    return len(token_format(settings).head_ids())


def data_parallel_processes() -> int:
    """Processes of an ``accelerate launch`` / torchrun job: each trains and validates its own
    batches, so training and validation cost scale with it (test forecasting runs once)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def predict_cost(settings: Settings, arch: Architecture | None = None) -> CostPrediction:
    """Predicted FLOPs of the configured run: training, validation and forecasting.

    Training: ``max_steps`` optimiser steps of ``batch_size x grad_accum`` full windows per
    process. Validation: ``max_steps // eval_every + 1`` evaluations (the last step always
    evaluates) of the capped validation windows, plus forecasting a validation subset when
    ``train.eval_forecast`` (greedy, one sample), per process. Forecasting, on the main process
    only: every scored test system's prompt is prefilled once (yielding the first token of all
    its samples), then each of its ``eval.num_samples`` samples decodes the rest.
    """
    if settings.task == "baselines":
        return CostPrediction(0.0, 0.0, 0.0, settings.budget.accounting, 0.0, 0.0)
    arch = arch or architecture_for(settings.model)
    shape = run_shape(settings)
    count = flops_counter(settings, arch)
    context, train = settings.data.context_tokens, settings.train
    processes = data_parallel_processes()
    per_step = processes * count("train", context, batch_size=train.batch_size * train.grad_accum)
    per_window = processes * count("forward", context)
    forecast_one = count("inference", shape.prompt_tokens, new_tokens=shape.horizon_tokens)
    prefill = count("inference", shape.prompt_tokens, new_tokens=1)
    training = validation = 0.0
    if settings.task == "finetune" and train.max_steps > 0:
        training = per_step * train.max_steps
        validation = shape.n_evaluations * shape.n_val_windows * per_window
        if train.eval_forecast:
            per_eval = processes * train.eval_forecast_systems * forecast_one
            validation += shape.n_evaluations * per_eval
    forecasting = 0.0
    if not settings.eval.skip_llm:
        # prefill + N x (forecast_one - prefill), written so that N == 1 is exactly forecast_one
        extra = (settings.eval.num_samples - 1) * (forecast_one - prefill)
        forecasting = shape.n_test_systems * (forecast_one + extra)
    return CostPrediction(
        training, validation, forecasting, settings.budget.accounting, per_step, per_window
    )
