"""Admission: predict what a run will cost, then reserve it or refuse it before any work starts.

:func:`predict_run_cost` and :func:`format_dry_run` are pure (numbers in, numbers or text out);
:func:`admit` is the one call that touches the ledger. The FLOPs counter is injected (default
:func:`lora_forecast.flops.count_flops`) so admission does not depend on how counting works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lora_forecast.budget.ledger import REL_TOL, Ledger, Rejection, Reservation
from lora_forecast.errors import BudgetExceededError

CountFn = Callable[..., Any]  # count_flops(arch, **kw) -> object with a float ``.total``
PHASES = ("training", "validation", "forecasting")


class PhaseCosts(Protocol):
    """What :func:`format_dry_run` reads from a prediction."""

    training: float
    validation: float
    forecasting: float

    @property
    def total(self) -> float: ...


@dataclass(frozen=True)
class CostPrediction:
    """A run's predicted FLOPs per phase (the meter charges the same three kinds)."""

    training: float
    validation: float
    forecasting: float

    @property
    def total(self) -> float:
        return self.training + self.validation + self.forecasting

    def as_dict(self) -> dict[str, float]:
        return {"training": self.training, "validation": self.validation,
                "forecasting": self.forecasting, "total": self.total}


def rejection_message(rejection: Rejection) -> str:
    """The one-line refusal: what the study holds, what this run needs, and the budget."""
    return (f"budget: study '{rejection.study}' has committed {rejection.committed:.2e} + "
            f"reserved {rejection.reserved_open:.2e} FLOPs; this run needs "
            f"{rejection.predicted:.2e} more; budget {rejection.budget:.2e}")


def admit(ledger: Ledger, *, study: str, experiment: str, config_digest: str, accounting: str,
          predicted: float, budget: float, run_id: str | None = None) -> Reservation:
    """Reserve ``predicted`` FLOPs for a run, or refuse it (the refusal is recorded too).

    Args:
        run_id: pass the previous id to re-admit a resumed run (``predicted`` is then the
            run's total, spent so far included); ``None`` starts a new run.

    Raises:
        BudgetExceededError: committed + reserved + predicted would exceed ``budget``.
    """
    outcome = ledger.reserve(study=study, experiment=experiment, config_digest=config_digest,
                             accounting=accounting, predicted=predicted, budget=budget,
                             run_id=run_id)
    if isinstance(outcome, Rejection):
        raise BudgetExceededError(rejection_message(outcome))
    return outcome


def _default_count() -> CountFn:
    from lora_forecast.flops import count_flops

    return count_flops


def predict_run_cost(arch: Any, *, accounting: str, backward: str, context_tokens: int,
                     batch_size: int, grad_accum: int, max_steps: int, eval_every: int,
                     n_val_windows: int, val_forward_tokens: int, n_forecast_sequences: int,
                     prompt_tokens: int, horizon_tokens: int, lora_rank: int,
                     lora_targets: Sequence[str], lm_head_bias: bool, head_vocab: int | None,
                     count: CountFn | None = None) -> CostPrediction:
    """Predict a run's FLOPs: training, validation passes and test-set forecasting.

    * training: ``max_steps`` optimiser steps of ``batch_size * grad_accum`` sequences of
      ``context_tokens`` (forward + backward, per ``backward``).
    * validation: ``max_steps // eval_every + 1`` evaluations, each a forward pass over
      ``n_val_windows`` windows of ``val_forward_tokens``. The ``+ 1`` is a final evaluation
      after the last step; counting it always makes this a conservative upper bound (early
      stopping only spends less).
    * forecasting: generation for ``n_forecast_sequences`` sequences (samples x systems) with
      ``prompt_tokens`` of prompt and ``horizon_tokens`` new tokens each.

    Pure: no I/O. ``count`` defaults to :func:`lora_forecast.flops.count_flops`.
    """
    count = count or _default_count()
    shared = dict(accounting=accounting, lora_rank=lora_rank, lora_targets=tuple(lora_targets),
                  lm_head_bias=lm_head_bias, backward=backward, head_vocab=head_vocab)
    training = validation = forecasting = 0.0
    if max_steps > 0:
        training = count(arch, mode="train", context_tokens=context_tokens,
                         batch_size=batch_size * grad_accum, steps=max_steps, **shared).total
    if n_val_windows > 0:
        evaluations = max_steps // eval_every + 1
        one_eval = count(arch, mode="forward", context_tokens=val_forward_tokens,
                         batch_size=n_val_windows, **shared).total
        validation = evaluations * one_eval
    if n_forecast_sequences > 0 and horizon_tokens > 0:
        forecasting = count(arch, mode="inference", context_tokens=prompt_tokens,
                            batch_size=n_forecast_sequences, new_tokens=horizon_tokens,
                            **shared).total
    return CostPrediction(float(training), float(validation), float(forecasting))


def _fraction(part: float, whole: float) -> str:
    return f"{100 * part / whole:6.2f}%" if whole > 0 else "    n/a"


def format_dry_run(prediction: PhaseCosts, remaining: float, budget: float) -> str:
    """A readable breakdown of a run's predicted cost against the study's remaining budget.

    ``prediction`` is anything with float ``training``/``validation``/``forecasting``/``total``
    attributes (a :class:`CostPrediction`, or a planner's richer record).

    The last two lines are machine-readable, ``%.6e`` floats, for scripts to grep:
    ``predicted_flops=<total>`` and ``remaining_flops=<remaining before this run>``.
    """
    lines = ["FLOPs prediction (dry run; nothing reserved)",
             f"  {'phase':<12} {'FLOPs':>11}  {'% of remaining':>14}"]
    for phase in (*PHASES, "total"):
        flops = float(getattr(prediction, phase))
        lines.append(f"  {phase:<12} {flops:>11.3e}  {_fraction(flops, remaining):>14}")
    verdict = "fits" if prediction.total <= remaining + REL_TOL * budget else "does NOT fit"
    lines += [f"  remaining {remaining:.3e} of budget {budget:.3e}: this run {verdict}",
              f"predicted_flops={prediction.total:.6e}",
              f"remaining_flops={remaining:.6e}"]
    return "\n".join(lines)
