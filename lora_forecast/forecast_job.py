"""Forecast every series of a new input file with a trained run (or the untrained base model).

Order is the budget's guarantee, as for a training run: settings, input and variables are
checked and the cost predicted before the ledger is touched; the ledger admits (or refuses) the
forecast before any model is loaded; everything is written to a temporary folder that is
renamed to ``out`` only when complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lora_forecast.config import Settings
from lora_forecast.data.scaling import (
    Scaling,
    first_negative,
    fit_scaling,
    shifts_positive,
    text_signed,
)
from lora_forecast.data.series import SeriesSet
from lora_forecast.data.sources import read_series
from lora_forecast.data.timeaxis import STEP, FutureAxis, future_axis
from lora_forecast.errors import ConfigError, DataFormatError
from lora_forecast.job import atomic_directory, new_output_folder
from lora_forecast.llmtime import LLMTimeCodec
from lora_forecast.run_folder import run_scaling

if TYPE_CHECKING:
    from lora_forecast.planning import CostPrediction

log = logging.getLogger(__name__)

__all__ = ["ForecastJob", "check_variables", "forecast_contexts", "forecast_scaling",
           "predict_forecast_flops", "run_forecast_job", "unwritable", "with_alphabet"]


@dataclass
class ForecastJob:
    """The command's own keys (``run``, ``input``, ``horizon``, ``out``, ``plot_series``)."""

    run: str | None
    input: str
    horizon: int
    out: str
    plot_series: int = 4

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ConfigError(f"horizon: must be >= 1, got {self.horizon}")
        if self.plot_series < 0:
            raise ConfigError(f"plot_series: must be >= 0, got {self.plot_series}")


def _generic(names: tuple[str, ...]) -> bool:
    return names == tuple(f"var{j}" for j in range(len(names)))


def check_variables(series: SeriesSet, expected: tuple[str, ...], input_path: str) -> SeriesSet:
    """The input's variables in the run's order; unnamed (HDF5) sides match by count.

    Raises:
        DataFormatError: ``input: <file>: variables (...) do not match the run's (...)``.
    """
    got = series.variables
    if not expected or got == expected:
        return series
    if (_generic(got) or _generic(expected)) and len(got) == len(expected):
        return series
    if set(got) != set(expected) or len(got) != len(expected):
        raise DataFormatError(f"input: {input_path}: variables ({', '.join(got)}) do not "
                              f"match the run's ({', '.join(expected)})")
    order = [got.index(name) for name in expected]
    return replace(series, values=tuple(v[:, order] for v in series.values), variables=expected)


def forecast_scaling(settings: Settings, run: str | None, values: Sequence[np.ndarray],
                     variables: tuple[str, ...]) -> Scaling:
    """The run's stored scaling, or (no run) one fitted to ``values`` as ``data.*`` says.

    Args:
        settings: the forecast's settings (``data.*`` read only without a run).
        run: the run directory, or None for the untrained base model.
        values: the ``[T_i, V]`` series the scale is fitted to (without a run): whatever the
            forecaster may see, and nothing it must not.
        variables: their names (recorded in the fitted scaling).

    Raises:
        ConfigError: a run without ``scaling.json`` whose fitted alpha is unknown.
    """
    if run is not None:
        stored = run_scaling(run)
        if stored is not None:
            return Scaling.from_dict(stored)
        if settings.data.alpha == "auto" and settings.data.scaling == "global":
            raise ConfigError(f"run: {run}: no scaling.json and data.alpha=auto: the fitted "
                              "alpha is unknown (retrain, or pass data.alpha=<number>)")
    data = settings.data
    return fit_scaling(data.scaling, data.alpha, list(values), data.scale_quantile,
                       data.scale_offset, variables if run is None else ())


def _contexts(series: SeriesSet, context_steps: int) -> list[np.ndarray]:
    """The last ``context_steps`` steps of each series (all of a shorter one)."""
    return [v[-context_steps:] for v in series.values]


def unwritable(run: str | None, scaling: Scaling,
               contexts: Sequence[np.ndarray]) -> tuple[int, int, int] | None:
    """``(context, step, variable)`` of the first value a run cannot write, else None.

    A run trained without '-' cannot read or write one: its grammar would clip every forecast
    at 0 and its numeric head has no row for the sign, so a context it would have to write with
    a '-' is refused rather than forecast wrongly. The untrained model (``run`` None) picks
    its alphabet from the data (:func:`with_alphabet`) and can write anything.
    """
    if run is None or scaling.signed or shifts_positive(scaling.kind, scaling.offset):
        return None
    return first_negative(contexts)


def with_alphabet(settings: Settings, run: str | None, scaling: Scaling,
                  contexts: Sequence[np.ndarray]) -> Scaling:
    """``scaling`` with the alphabet the prompts are written in: a run's own (its
    scaling.json), or, with no run, ``data.signed`` resolved from the contexts."""
    if run is not None:
        return scaling
    data = settings.data
    return replace(scaling, signed=text_signed(data.signed, scaling.kind, scaling.offset,
                                               contexts))


def _alphabet(settings: Settings, job: ForecastJob, scaling: Scaling, series: SeriesSet,
              contexts: list[np.ndarray]) -> Scaling:
    """:func:`with_alphabet`, refusing an input the run cannot write (:func:`unwritable`).

    Raises:
        DataFormatError: one line naming the input's series, time and variable.
    """
    first = unwritable(job.run, scaling, contexts)
    if first is None:
        return with_alphabet(settings, job.run, scaling, contexts)
    i, step, var = first
    at = len(series.values[i]) - len(contexts[i]) + step
    raise DataFormatError(
        f"input: {job.input}: series {series.ids[i]}, time {series.times[i][at]}, variable "
        f"{series.variables[var]!r}: value {contexts[i][step, var]:g} is negative, but run "
        f"{job.run} was trained on non-negative text (no '-' in its alphabet); retrain with "
        "data.signed=true")


def predict_forecast_flops(settings: Settings, contexts: Sequence[np.ndarray],
                           horizon: int) -> CostPrediction:
    """The forecast's FLOPs bound (``.total``) and the counter that charges it
    (``.forecast_cost``): per series one prefill of its prompt, then each of
    ``eval.num_samples`` samples decodes the horizon (the run's own forecasting rule). A '-'
    per number is counted when ``data.signed`` (resolved) is true."""
    from lora_forecast.forecasting.forecaster import computed_tokens_bound
    from lora_forecast.planning import (
        CostPrediction,
        check_draft,
        draft_tokens,
        flops_counter,
        forecast_cost,
        token_format,
    )

    check_draft(settings.eval)  # before anything is reserved, as the planner does for runs
    n_vars = contexts[0].shape[1]
    per_step = token_format(settings).max_tokens_per_step(n_vars, settings.eval.max_int_digits)
    sample = computed_tokens_bound(horizon * per_step - 1, draft_tokens(settings.eval))
    generated = [sample] * settings.eval.num_samples  # per sample, a bound
    count = flops_counter(settings)
    bound = forecast_cost(count, [len(c) * per_step for c in contexts],
                          [generated] * len(contexts))  # the planner's one cost formula
    return CostPrediction(0.0, 0.0, bound, settings.budget.accounting, 0.0, 0.0, count=count)


def run_forecast_job(job: ForecastJob, settings: Settings, config: dict[str, Any]) -> Path:
    """Check, predict, admit, forecast, write. Returns the output folder.

    Raises:
        LoraForecastError: bad input or settings (nothing reserved, nothing written), or a
            refusal by the budget.
    """
    from lora_forecast.budget.guard import admit
    from lora_forecast.budget.ledger import Ledger
    from lora_forecast.budget.meter import FlopsMeter
    from lora_forecast.planning import with_signed
    from lora_forecast.results import config_digest

    out = new_output_folder(job.out)
    series = read_series(job.input, settings.data)
    scaling = forecast_scaling(settings, job.run, series.values, series.variables)
    series = check_variables(series, scaling.variables, job.input)
    contexts = _contexts(series, settings.eval.context_steps)
    scaling = _alphabet(settings, job, scaling, series, contexts)
    settings = with_signed(settings, scaling.signed)
    prediction = predict_forecast_flops(settings, contexts, job.horizon)
    log.info("forecast: %d series, horizon %d, predicted %.3e FLOPs", len(series), job.horizon,
             prediction.total)
    budget = settings.budget
    with Ledger(budget.ledger_url) as ledger:
        reservation = admit(ledger, study=budget.study, experiment="forecast",
                            config_digest=config_digest(config), accounting=budget.accounting,
                            predicted=prediction.total, budget=budget.max_flops)
        ledger.start(reservation.run_id)
        meter = FlopsMeter.from_reservation(ledger, reservation)
        status = "failed"
        try:
            path = _forecast_and_write(job, settings, series, contexts, scaling, prediction,
                                       meter, out)
            status = "completed"
        finally:
            meter.settle(status)
    return path


def _forecast_and_write(job: ForecastJob, settings: Settings, series: SeriesSet,
                        contexts: list[np.ndarray], scaling: Scaling,
                        prediction: CostPrediction, meter: Any, out: Path) -> Path:
    from lora_forecast.run_folder import load_run_model

    model = load_run_model(settings, job.run)
    fc = forecast_contexts(settings, model, scaling, contexts, job.horizon)
    meter.add(prediction.forecast_cost(fc.prompt_tokens, fc.computed_tokens), "forecasting")
    with atomic_directory(out) as tmp:
        _write(tmp, job, settings, series, contexts, fc, meter)
    return out


def forecast_contexts(settings: Settings, model: Any, scaling: Scaling,
                      contexts: Sequence[np.ndarray], horizon: int, progress: bool = True) -> Any:
    """Forecast ``horizon`` steps after each context with ``model`` (``eval.*`` decoding),
    written in ``scaling``'s text and alphabet, mapped back to original units.

    Returns:
        A :class:`lora_forecast.forecasting.Forecast`.
    """
    from lora_forecast.forecasting.scaled import forecast_scaled
    from lora_forecast.llmtime import LLMTimeFormat
    from lora_forecast.models.tokenizer import load_tokenizer

    codec = LLMTimeCodec(scaling.alpha, settings.data.decimals, settings.data.number_format)
    fmt = LLMTimeFormat.for_tokenizer(codec, load_tokenizer(settings.model), scaling.signed)
    return forecast_scaled(_with_horizon(settings, horizon), model, fmt, scaling.text_scale,
                           list(contexts), progress=progress)


def _with_horizon(settings: Settings, horizon: int) -> Settings:
    return replace(settings, eval=replace(settings.eval, horizon_steps=horizon))


def _irregular_line(source: Path, axis: FutureAxis) -> str:
    """One line naming the series whose times cannot be continued (at most five by id)."""
    ids = ", ".join(axis.irregular[:5])
    more = f" and {len(axis.irregular) - 5} more" if len(axis.irregular) > 5 else ""
    return (f"input: {source}: series {ids}{more}: irregular time spacing (no constant step or "
            f"frequency pandas can infer); forecasts are numbered by {STEP} 1..H instead")


def _write(folder: Path, job: ForecastJob, settings: Settings, series: SeriesSet,
           contexts: list[np.ndarray], fc: Any, meter: Any) -> None:
    from lora_forecast.data.forecast_table import (
        forecast_frame,
        input_columns,
        output_name,
        write_frame,
    )

    source = Path(job.input)
    axis = future_axis(series, job.horizon)
    if axis.irregular:
        log.warning(_irregular_line(source, axis))
    frame = forecast_frame(settings.data, source, input_columns(source), series, axis, fc)
    write_frame(frame, folder / output_name(source))
    if job.plot_series > 0:
        _plot(folder / "forecasts.png", min(job.plot_series, len(series)), series, contexts,
              axis, fc)
    summary = {"run": job.run, "input": str(source), "horizon": job.horizon,
               "series": len(series), "time_column": axis.name,
               "parse_failures": fc.parse_failures,
               "flops": {"predicted": meter.reservation, "spent": meter.spent,
                         "run_id": meter.run_id}}
    (folder / "forecast.json").write_text(json.dumps(summary, indent=2))


def _plot(path: Path, shown: int, series: SeriesSet, contexts: list[np.ndarray],
          axis: FutureAxis, fc: Any) -> None:
    """The first ``shown`` series on their own times (steps where the axis fell back), named
    by id, or by file where the input has none."""
    from lora_forecast.data.forecast_table import left_padded
    from lora_forecast.evaluation.plots import ForecastPanels, plot_forecasts

    t_context = t_future = None
    if axis.timed:
        t_context = left_padded([t[len(t) - len(c):] for t, c in
                                 zip(series.times[:shown], contexts, strict=False)])
        t_future = np.stack(axis.times[:shown])
    panels = ForecastPanels(system_ids=series.ids[:shown], variable_names=series.variables,
                            n_systems=shown, time_label=axis.name,
                            system_labels=[series.label(i) for i in range(shown)])
    plot_forecasts(path, left_padded(contexts[:shown]), np.full_like(fc.point[:shown], np.nan),
                   fc.point[:shown], (fc.lower[:shown], fc.upper[:shown]),
                   (t_context, t_future), panels=panels)
