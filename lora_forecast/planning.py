"""What a run will cost, known before any model is loaded.

:func:`predict_cost` reads the config and the data file (every value checked, so bad data
fails before anything is reserved; the synthetic data only by its shape), and
bounds every token count from above (each number written with ``eval.max_int_digits``
integer digits), so the prediction the ledger reserves is never below what the run meters.
Shared by the task (admission, ``budget.dry_run``) and the sweeper (admission before launch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lora_forecast.config import EvalConfig, ModelConfig, Settings
from lora_forecast.data import generator
from lora_forecast.data.loader import read_shape
from lora_forecast.data.splits import SystemSplit, split_systems
from lora_forecast.data.windows import count_windows
from lora_forecast.errors import ConfigError
from lora_forecast.flops import Architecture, FlopsRequest, count_flops, resolve_lora_targets
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat, TokenLayoutError, TokenTable

QWEN2_5_0_5B_IDS = ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B")
Counter = Callable[..., float]  # flops_counter's count(mode, context_tokens, **kw)
# Adding a step's cost max_steps times in floats can exceed per_step * max_steps by a few ulps.
# Reserving this relative margin keeps the meter (spent <= reservation) and the ledger
# (spend <= budget) exact comparisons without ever refusing a predicted step.
ROUNDING_MARGIN = 1e-9


def architecture_for(cfg: ModelConfig) -> Architecture:
    """The counted shape of the configured model, without loading weights."""
    if cfg.kind == "tiny":
        from lora_forecast.models.build import tiny_qwen2_config

        return Architecture.from_hf_config(tiny_qwen2_config(cfg))
    if cfg.name_or_path in QWEN2_5_0_5B_IDS and not cfg.gguf_file:
        return Architecture.qwen2_5_0_5b()
    from lora_forecast.models.build import pretrained_config

    return Architecture.from_hf_config(pretrained_config(cfg))


def lora_targets(settings: Settings, arch: Architecture | None = None) -> tuple[str, ...]:
    """``lora.target_modules`` resolved for the model's family (checked before any weight is
    loaded; raises a one-line ConfigError naming the missing modules)."""
    return resolve_lora_targets(arch or architecture_for(settings.model),
                                settings.lora.target_modules)


def with_signed(settings: Settings, signed: bool) -> Settings:
    """``settings`` with ``data.signed`` resolved to ``signed`` (``auto`` decided from the data,
    :func:`lora_forecast.data.scaling.text_signed`): what the token counts, the numeric head's
    rows and so every FLOPs figure read. The recorded config keeps what the user wrote."""
    return replace(settings, data=replace(settings.data, signed=bool(signed)))


def token_format(settings: Settings) -> LLMTimeFormat:
    """The run's LLMTIME format with a unit scale (token counts do not depend on alpha), from
    the model's own tokenizer: no weights are loaded. '-' is in its alphabet when
    ``data.signed`` is true (resolve ``auto`` first, :func:`with_signed`; unresolved it counts
    as today's non-negative alphabet).

    Raises:
        ConfigError: the tokenizer cannot write one token per LLMTIME symbol (its '-' among
            them, for signed data).
        ModelLoadError: the tokenizer cannot be found.
    """
    from lora_forecast.models.tokenizer import load_tokenizer

    data, name = settings.data, settings.model.name_or_path
    codec = LLMTimeCodec(1.0, data.decimals, data.number_format)
    tokenizer = load_tokenizer(settings.model)
    try:
        table = TokenTable.from_tokenizer(tokenizer)
    except TokenLayoutError as exc:
        raise ConfigError(f"model.name_or_path: {name}: {exc}") from None
    try:
        return LLMTimeFormat(codec, table, tokenizer, signed=data.signed is True)
    except TokenLayoutError as exc:  # the series hold negatives (or data.signed=true)
        raise ConfigError(f"data.signed: {name}: {exc} (shift the series above 0 with "
                          "data.scaling=per_series data.scale_offset=0.1, or pick another "
                          "model)") from None


def data_shape(settings: Settings) -> tuple[int, int, int]:
    """(systems, steps, variables) of the configured data, from metadata only."""
    data = settings.data
    if data.source == "synthetic":  # the generator's own shape
        return data.systems, generator.STEPS, generator.VARIABLES
    return read_shape(Path(data.path))


def series_lengths(settings: Settings) -> tuple[np.ndarray, int, bool]:
    """Steps of every series, the variables, and whether the alphabet carries '-' (``data.signed``
    resolved, :func:`lora_forecast.data.scaling.text_signed`, as the run resolves it). A file
    (table or HDF5) is read and every value validated here, so bad data (NaN, inf, a negative
    value of data declared non-negative) fails before anything is reserved, and ragged lengths
    are known exactly; the synthetic data (Lotka-Volterra populations) from its shape."""
    data = settings.data
    if data.source == "synthetic":
        n_systems, n_steps, n_vars = data_shape(settings)
        return np.full(n_systems, n_steps, dtype=np.int64), n_vars, data.signed is True
    from lora_forecast.data.scaling import text_signed
    from lora_forecast.data.sources import read_series

    series = read_series(data.path, data)
    signed = text_signed(data.signed, data.scaling, data.scale_offset, series.values)
    return series.lengths, series.n_vars, signed


def eval_series_count(settings: Settings, lengths: np.ndarray) -> int:
    """Test series the protocol will forecast: those with ``context + horizon`` steps, at most
    ``eval.n_systems`` (the same rule as :func:`cut_series_windows`).

    Raises:
        ConfigError: no test series is long enough.
    """
    ev = settings.eval
    eligible = int((lengths >= ev.context_steps + ev.horizon_steps).sum())
    if eligible == 0:
        raise ConfigError(
            f"eval.context_steps + eval.horizon_steps = {ev.context_steps + ev.horizon_steps} "
            f"exceeds the length of every test series (longest {int(lengths.max())})")
    return eligible if ev.n_systems is None else min(ev.n_systems, eligible)


# ---- what the data's shape already rules out (before anything is reserved) -------------------


def _data_name(settings: Settings) -> str:
    data = settings.data
    return f"data.path={data.path}" if data.source == "file" else "the synthetic data"


def check_fits_data(settings: Settings, lengths: np.ndarray) -> SystemSplit:
    """Reject a config the data's shape cannot serve, before any FLOP is reserved.

    Every check that needs only the series' lengths lives here, so the task (admission,
    ``budget.dry_run``) and the sweeper (admission before launch) refuse the same configs with
    the same one line, instead of a run failing after its reservation. The evaluation rules
    are the protocol's (:func:`lora_forecast.evaluation.protocol.cut_series_windows`): only
    series with ``context + horizon`` steps are forecast. A series shorter than
    ``data.context_tokens`` is not an error: it becomes one padded training window.

    Args:
        settings: the validated run settings.
        lengths: ``[S]`` steps of every series (:func:`series_lengths`).

    Returns:
        The system split the run will use.

    Raises:
        ConfigError: one line naming the key that does not fit the data.
    """
    ev, split, n_systems = settings.eval, settings.data.split, len(lengths)
    try:
        systems = split_systems(n_systems, split.train, split.val, split.test, split.seed)
    except ValueError as exc:
        raise ConfigError(f"data.split: {exc} ({_data_name(settings)})") from exc
    finetunes = settings.task == "finetune" and settings.train.max_steps > 0
    for name, needed in (("train", finetunes), ("val", finetunes), ("test", True)):
        if needed and len(getattr(systems, name)) == 0:
            raise ConfigError(f"data.split.{name}: the {name} split of {n_systems} series is "
                              f"empty (fraction {getattr(split, name)}); the run needs it")
    end = ev.context_steps + ev.horizon_steps
    eligible = int((lengths[systems.test] >= end).sum())
    if eligible == 0:
        raise ConfigError(
            f"eval.context_steps + eval.horizon_steps: {ev.context_steps} + {ev.horizon_steps} = "
            f"{end} exceeds the length of every test series (longest "
            f"{int(lengths[systems.test].max())}) of {_data_name(settings)}")
    if ev.n_systems is not None and ev.n_systems > eligible:
        raise ConfigError(
            f"eval.n_systems: {ev.n_systems} exceeds the {eligible} test series long enough for "
            f"{end} steps ({len(systems.test)} in the test split of {n_systems} series)")
    if finetunes and settings.train.eval_forecast and not (lengths[systems.val] >= end).any():
        raise ConfigError(f"train.eval_forecast: no validation series has the {end} steps of "
                          f"eval.context_steps + eval.horizon_steps")
    return systems


@dataclass(frozen=True)
class RunShape:
    """Token counts that drive the cost, all upper bounds."""

    n_vars: int
    tokens_per_step: int
    n_train_windows: int
    n_val_windows: int
    n_evaluations: int
    n_val_forecast_systems: int
    n_test_systems: int
    prompt_tokens: int
    horizon_tokens: int


def run_shape(settings: Settings,
              series: tuple[np.ndarray, int, bool] | None = None) -> RunShape:
    """Bound the run's token counts from the config and the data file's shape (``series``:
    :func:`series_lengths`, when the caller already has it)."""
    lengths, n_vars, signed = series or series_lengths(settings)
    settings = with_signed(settings, signed)
    split = settings.data.split
    systems = split_systems(len(lengths), split.train, split.val, split.test, split.seed)
    fmt = token_format(settings)
    per_step = fmt.max_tokens_per_step(n_vars, settings.eval.max_int_digits)  # '-'s if signed
    series_tokens = lengths * per_step - 1  # [S] upper bounds, one per (ragged) series
    context = settings.data.context_tokens
    n_val = count_windows([int(n) for n in series_tokens[systems.val]], context, context)
    if settings.train.val_max_windows is not None:
        n_val = min(n_val, settings.train.val_max_windows)
    n_test = eval_series_count(settings, lengths[systems.test])
    end = settings.eval.context_steps + settings.eval.horizon_steps
    val_long_enough = int((lengths[systems.val] >= end).sum())  # what the validator forecasts
    return RunShape(
        n_vars=n_vars,
        tokens_per_step=per_step,
        n_train_windows=count_windows([int(n) for n in series_tokens[systems.train]], context,
                                      context // 2),
        n_val_windows=n_val,
        # the loop validates every eval_every steps and at the last step (and the untrained
        # model at step 0 under compare_zero_shot)
        n_evaluations=-(-settings.train.max_steps // settings.train.eval_every)
        + int(settings.train.compare_zero_shot),
        n_val_forecast_systems=min(settings.train.eval_forecast_systems, val_long_enough),
        n_test_systems=n_test,
        prompt_tokens=settings.eval.context_steps * per_step,
        horizon_tokens=_generation_cap(settings, fmt, n_vars),
    )


def short_training_context(settings: Settings) -> str | None:
    """One line when fine-tuning windows are shorter than the prompts the model will forecast
    from, else None. A model trained on 256-token windows and asked to continue ~500-token
    prompts sees positions it never learned from (on the reference data with real weights its
    test MSE rose above the untrained model's). The prompt length is taken at one integer
    digit per number, the common case, so a config near the limit is not flagged for numbers
    that may never occur; the bound the FLOPs use (``eval.max_int_digits``) is given beside.
    """
    if settings.task != "finetune" or settings.eval.skip_llm:
        return None
    ev, context = settings.eval, settings.data.context_tokens
    _, n_vars, _ = series_lengths(settings)
    fmt = token_format(settings)
    typical = ev.context_steps * fmt.max_tokens_per_step(n_vars, 1)
    if context >= typical:
        return None
    bound = ev.context_steps * fmt.max_tokens_per_step(n_vars, ev.max_int_digits)
    return (f"data.context_tokens={context} is shorter than the evaluation's prompts "
            f"(eval.context_steps={ev.context_steps} steps: {typical} tokens at one integer "
            f"digit per number, at most {bound}): the model trains on shorter windows than it "
            f"forecasts from; consider data.context_tokens>={typical}")


def _generation_cap(settings: Settings, fmt: LLMTimeFormat, n_vars: int) -> int:
    """The forecaster's own bound on the positions one sample computes (its cap on generated
    tokens: the grammar's longest forecast, +1 for the EOS of free decoding; with drafts, the
    rejected draft tokens' worst case): a bound the meter can never pass."""
    from lora_forecast.forecasting.forecaster import computed_tokens_bound, max_new_tokens

    ev = settings.eval
    grammar = fmt.grammar(n_vars, ev.horizon_steps, ev.max_int_digits)
    return computed_tokens_bound(max_new_tokens(grammar, ev.constrained), draft_tokens(ev))


def check_draft(ev: EvalConfig) -> None:
    """Refuse an ``eval.draft`` that names no registered baseline (before anything is reserved).

    Raises:
        ConfigError: ``eval.draft: unknown baseline ...`` with the available names.
    """
    from lora_forecast.evaluation.baselines import BASELINES

    if ev.draft not in (None, "none") and ev.draft not in BASELINES:
        raise ConfigError(f"eval.draft: unknown baseline {ev.draft!r}; available: none, "
                          f"{', '.join(sorted(BASELINES))}")


def draft_tokens(ev: EvalConfig) -> int | None:
    """``eval.draft_tokens`` when forecasts are drafted (``eval.draft``, null resolved for this
    machine as the forecaster resolves it), else None."""
    import torch

    from lora_forecast.forecasting.forecaster import resolved_draft

    drafted = resolved_draft(ev.draft, ev.constrained, torch.cuda.is_available()) != "none"
    return ev.draft_tokens if drafted else None


@dataclass(frozen=True)
class CostPrediction:
    """Predicted FLOPs of one run by phase (the ledger reserves ``total``)."""

    training: float
    validation: float
    forecasting: float
    accounting: str
    per_train_step: float  # one optimiser step, all processes
    per_val_window: float  # one validation window forward (the processes split the windows)
    per_val_forecast: float = 0.0  # one forecast validation (``train.eval_forecast``), bound
    # the bound counter (:func:`flops_counter`) that made this prediction; the meter charges
    # forecasts with it (:meth:`forecast_cost`), so prediction and charge share one formula
    count: Callable[..., float] | None = field(default=None, compare=False, repr=False)

    def forecast_cost(self, prompt_tokens: Sequence[int],
                      computed_tokens: Sequence[Sequence[int]]) -> float:
        """Metered FLOPs of forecasts made (``Forecast.computed_tokens``: the positions each
        sample computed), with the counter that made the prediction."""
        if self.count is None:
            raise ValueError("this prediction has no counter (a run without an LLM)")
        return forecast_cost(self.count, prompt_tokens, computed_tokens)

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
    accounting = settings.budget.accounting
    common = {
        "lora_rank": settings.lora.rank,
        "lora_targets": lora_targets(settings, arch),
        "lm_head_bias": settings.model.lm_head_bias,
        "head_vocab": _head_rows(settings),
    }

    def count(mode: str, context_tokens: int, **kwargs: int) -> float:
        extra = {"backward": settings.budget.backward,
                 "gradient_checkpointing": settings.train.gradient_checkpointing,
                 } if mode == "train" else {}
        request = FlopsRequest(mode, context_tokens, **common, **extra, **kwargs)
        return count_flops(arch, request, accounting=accounting).total

    return count


def _head_rows(settings: Settings) -> int | None:
    """Rows the numeric head computes (the format's symbols; None = the full vocabulary)."""
    if settings.model.head != "numeric":
        return None
    return len(token_format(settings).head_ids())


def data_parallel_processes() -> int:
    """Processes of an ``accelerate launch`` / torchrun job: each trains its own batches, so
    training cost scales with it (validation is split among them; test forecasting runs once)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def system_forecast_cost(count: Counter, prompt_tokens: int, generated: Sequence[int]) -> float:
    """FLOPs of forecasting one system: ONE prefill of its prompt (shared by its samples; it
    yields every sample's first token) plus each sample's remaining decode, i.e.
    ``prefill + sum(count(g) - prefill)``, summed as ``count(g_1) + sum_rest(count(g) - prefill)``
    so that one sample costs exactly ``count(prompt, g)``. Samples that generated nothing cost
    nothing. The one formula behind the prediction (upper-bound token counts) and the meter
    (the tokens really generated)."""
    made = [count("inference", int(prompt_tokens), new_tokens=int(g)) for g in generated if g > 0]
    if not made:
        return 0.0
    prefill = count("inference", int(prompt_tokens), new_tokens=1)
    return made[0] + sum(full - prefill for full in made[1:])


def forecast_cost(count: Callable[..., float], prompt_tokens: Sequence[int],
                  computed_tokens: Sequence[Sequence[int]]) -> float:
    """Metered FLOPs of forecasts made: :func:`system_forecast_cost` summed over systems.

    Args:
        count: the run's bound counter (:func:`flops_counter`; a prediction's ``count``).
        prompt_tokens: ``[S]`` real prompt tokens per system.
        computed_tokens: ``[S, N]`` positions each sample really computed
            (``Forecast.computed_tokens``: its generated tokens in plain decoding).

    Returns:
        FLOPs, in the run's accounting.
    """
    return sum(system_forecast_cost(count, p, row)
               for p, row in zip(prompt_tokens, computed_tokens, strict=True))


def predict_cost(settings: Settings, arch: Architecture | None = None) -> CostPrediction:
    """Predicted FLOPs of the configured run: training, validation and forecasting.

    First rejects configs the data's shape cannot serve (:func:`check_fits_data`), so every
    caller refuses them before reserving anything. Training: ``max_steps`` optimiser steps of
    ``batch_size x grad_accum`` full windows per process. Validation: one evaluation every
    ``eval_every`` steps and at the last step (``ceil(max_steps / eval_every)``, plus one at
    step 0 under ``train.compare_zero_shot``) of the capped
    validation windows, plus, when ``train.eval_forecast``, a greedy forecast of the first
    ``eval_forecast_systems`` validation series long enough; data-parallel processes split
    both, so each window and series is counted once. Forecasting, on the main process only:
    :func:`system_forecast_cost` of every scored test series with ``eval.num_samples``
    samples. Token counts are upper bounds (:func:`run_shape`), so the meter never exceeds it.
    """
    series = series_lengths(settings)
    check_fits_data(settings, series[0])
    check_draft(settings.eval)
    settings = with_signed(settings, series[2])  # the head's rows and tokens count the '-'
    if settings.task == "baselines":
        return CostPrediction(0.0, 0.0, 0.0, settings.budget.accounting, 0.0, 0.0)
    arch = arch or architecture_for(settings.model)
    shape = run_shape(settings, series)
    count = flops_counter(settings, arch)
    context, train = settings.data.context_tokens, settings.train
    processes = data_parallel_processes()
    per_step = processes * count("train", context, batch_size=train.batch_size * train.grad_accum)
    per_window = count("forward", context)
    greedy_one = system_forecast_cost(count, shape.prompt_tokens, [shape.horizon_tokens])
    training = validation = per_val_forecast = 0.0
    if settings.task == "finetune" and train.max_steps > 0:
        training = per_step * train.max_steps
        if train.eval_forecast:
            per_val_forecast = shape.n_val_forecast_systems * greedy_one
        per_eval = shape.n_val_windows * per_window + per_val_forecast
        validation = shape.n_evaluations * per_eval
    forecasting = 0.0
    if not settings.eval.skip_llm:
        samples = [shape.horizon_tokens] * settings.eval.num_samples
        forecasting = shape.n_test_systems * system_forecast_cost(
            count, shape.prompt_tokens, samples)
    return CostPrediction(training, validation, forecasting, settings.budget.accounting,
                          per_step, per_window, per_val_forecast, count)
