"""Admission: reserve a run's predicted FLOPs or refuse it before any work starts.

The prediction itself comes from :func:`lora_forecast.planning.predict_cost`.
:func:`format_dry_run` is pure (numbers in, text out); :func:`admit` is the one call that
touches the ledger.
"""

from __future__ import annotations

from typing import Protocol

from lora_forecast.budget.ledger import Ledger, Rejection, Reservation
from lora_forecast.errors import BudgetExceededError

PHASES = ("training", "validation", "forecasting")


class PhaseCosts(Protocol):
    """What :func:`format_dry_run` reads from a prediction."""

    training: float
    validation: float
    forecasting: float

    @property
    def total(self) -> float: ...


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


def _fraction(part: float, whole: float) -> str:
    return f"{100 * part / whole:6.2f}%" if whole > 0 else "    n/a"


def format_dry_run(prediction: PhaseCosts, remaining: float, budget: float) -> str:
    """A readable breakdown of a run's predicted cost against the study's remaining budget.

    ``prediction`` is anything with float ``training``/``validation``/``forecasting``/``total``
    attributes (a :class:`lora_forecast.planning.CostPrediction`).

    The last two lines are machine-readable, ``%.6e`` floats, for scripts to grep:
    ``predicted_flops=<total>`` and ``remaining_flops=<remaining before this run>``.
    """
    lines = ["FLOPs prediction (dry run; nothing reserved)",
             f"  {'phase':<12} {'FLOPs':>11}  {'% of remaining':>14}"]
    for phase in (*PHASES, "total"):
        flops = float(getattr(prediction, phase))
        lines.append(f"  {phase:<12} {flops:>11.3e}  {_fraction(flops, remaining):>14}")
    verdict = "fits" if prediction.total <= remaining else "does NOT fit"
    lines += [f"  remaining {remaining:.3e} of budget {budget:.3e}: this run {verdict}",
              f"predicted_flops={prediction.total:.6e}",
              f"remaining_flops={remaining:.6e}"]
    return "\n".join(lines)
