"""How values become the numbers written as text, and back: global or LLMTIME per-series scaling.

* ``global`` (``data.scaling=global``): every value is divided by one ``alpha`` (``data.alpha``,
  a number, or ``auto``: chosen from the training split by :func:`choose_alpha`).
* ``per_series`` (LLMTIME, Gruver et al. 2023): each series, per variable, is shifted by
  ``min - offset * (max - min)`` of its own history when ``data.scale_offset > 0`` (else not
  shifted), then divided by the ``data.scale_quantile`` quantile of its absolute shifted values.
  The history is the part a forecaster sees (the context), so nothing from the future leaks.

A :class:`Scaling` is stored with the run (``scaling.json``) so a forecast of new series maps
back to original units with exactly the settings the run trained with, and is written in the
same alphabet: ``signed`` says whether '-' is in it (:func:`text_signed` decides it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_forecast.llmtime import choose_alpha

__all__ = ["SeriesScale", "Scaling", "first_negative", "fit_scaling", "shifts_positive",
           "text_signed"]


@dataclass(frozen=True)
class SeriesScale:
    """``scaled = (x - shift) / scale`` per variable (``shift``, ``scale``: ``[V]``)."""

    shift: np.ndarray
    scale: np.ndarray

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``[..., V]`` original -> scaled units."""
        return (np.asarray(values, dtype=np.float64) - self.shift) / self.scale

    def invert(self, scaled: np.ndarray) -> np.ndarray:
        """``[..., V]`` scaled -> original units (NaN stays NaN)."""
        return np.asarray(scaled, dtype=np.float64) * self.scale + self.shift


@dataclass(frozen=True)
class Scaling:
    """The run's scaling choice and its fitted global ``alpha`` (1.0 under ``per_series``), and
    whether its text carries '-' (``signed``; runs saved before it existed did not).

    Example:
        >>> s = Scaling("per_series", 1.0, quantile=1.0, offset=0.0, variables=("x",))
        >>> s.for_history(np.array([[2.0], [4.0]])).scale.tolist()
        [4.0]
    """

    kind: str
    alpha: float
    quantile: float = 0.9
    offset: float = 0.0
    variables: tuple[str, ...] = ()
    signed: bool = False

    def for_history(self, history: np.ndarray) -> SeriesScale:
        """The scale of one series given the ``[T, V]`` values a forecaster sees of it."""
        history = np.asarray(history, dtype=np.float64)
        n_vars = history.shape[1]
        if self.kind == "global":
            return SeriesScale(np.zeros(n_vars), np.full(n_vars, float(self.alpha)))
        shift = np.zeros(n_vars)
        if self.offset > 0:
            low, high = history.min(axis=0), history.max(axis=0)
            shift = low - self.offset * (high - low)
        level = np.quantile(np.abs(history - shift), self.quantile, axis=0)
        return SeriesScale(shift, np.where(level > 0, level, 1.0))

    def text_scale(self, history: np.ndarray) -> SeriesScale:
        """What to apply before the codec: the identity under global scaling (the codec itself
        divides by ``alpha``, as runs always did), :meth:`for_history` per series."""
        if self.kind == "global":
            n_vars = np.asarray(history).shape[1]
            return SeriesScale(np.zeros(n_vars), np.ones(n_vars))
        return self.for_history(history)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alpha": self.alpha, "quantile": self.quantile,
                "offset": self.offset, "variables": list(self.variables), "signed": self.signed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaling:
        return cls(data["kind"], float(data["alpha"]), float(data["quantile"]),
                   float(data["offset"]), tuple(data["variables"]),
                   bool(data.get("signed", False)))


def fit_scaling(kind: str, alpha: float | str, train_values: list[np.ndarray], quantile: float,
                offset: float, variables: tuple[str, ...], signed: bool = False) -> Scaling:
    """The run's :class:`Scaling`; ``alpha='auto'`` is fitted on the training series only.

    Args:
        kind: ``global`` or ``per_series``.
        alpha: a number or ``auto`` (global only).
        train_values: the training series (``[T_i, V]`` each).
        quantile, offset: the per-series settings.
        variables: variable names, recorded so new inputs can be checked against them.
        signed: '-' in the alphabet (:func:`text_signed`).
    """
    if kind == "per_series":
        return Scaling(kind, 1.0, quantile, offset, variables, signed)
    fitted = choose_alpha(np.concatenate(train_values)) if alpha == "auto" else float(alpha)
    return Scaling(kind, fitted, quantile, offset, variables, signed)


def shifts_positive(kind: str, offset: float) -> bool:
    """Whether every history's text is >= 0 whatever its values: LLMTIME's per-series shift by
    ``min - offset * (max - min)`` (offset > 0) lifts each value of the history above 0; any
    other scale (global ``x / alpha``, per series ``x / quantile``) keeps each value's sign."""
    return kind == "per_series" and offset > 0


def first_negative(values: Sequence[np.ndarray]) -> tuple[int, int, int] | None:
    """``(series, step, variable)`` of the first value below 0 in ``values`` ``[T_i, V]``."""
    for i, series in enumerate(values):
        below = np.argwhere(np.asarray(series) < 0)
        if len(below):
            return i, int(below[0][0]), int(below[0][1])
    return None


def text_signed(declared: bool | str, kind: str, offset: float,
                values: Sequence[np.ndarray]) -> bool:
    """Whether the alphabet carries '-': ``data.signed`` when true or false; ``auto``: whether
    any of ``values`` would be written with a '-' under the scaling ``kind`` / ``offset``.

    ``values`` are every series the run writes as text (training, validation and test), not
    the training split alone: the validation loss scores its windows with the same numeric
    head and the test prompts are written in the same alphabet. Non-negative data (and data
    LLMTIME's shift lifts above 0) keeps today's alphabet, tokens and FLOPs.
    """
    if isinstance(declared, bool):
        return declared
    return not shifts_positive(kind, offset) and first_negative(values) is not None
