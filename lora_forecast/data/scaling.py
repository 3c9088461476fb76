"""How values become the numbers written as text, and back: global or LLMTIME per-series scaling.

* ``global`` (``data.scaling=global``): every value is divided by one ``alpha`` (``data.alpha``,
  a number, or ``auto``: chosen from the training split by :func:`choose_alpha`).
* ``per_series`` (LLMTIME, Gruver et al. 2023): each series, per variable, is shifted by
  ``min - offset * (max - min)`` of its own history when ``data.scale_offset > 0`` (else not
  shifted), then divided by the ``data.scale_quantile`` quantile of its absolute shifted values.
  The history is the part a forecaster sees (the context), so nothing from the future leaks.

A :class:`Scaling` is stored with the run (``scaling.json``) so a forecast of new series maps
back to original units with exactly the settings the run trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_forecast.llmtime import choose_alpha

__all__ = ["SeriesScale", "Scaling", "fit_scaling"]


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
    """The run's scaling choice and its fitted global ``alpha`` (1.0 under ``per_series``).

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
                "offset": self.offset, "variables": list(self.variables)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaling:
        return cls(data["kind"], float(data["alpha"]), float(data["quantile"]),
                   float(data["offset"]), tuple(data["variables"]))


def fit_scaling(kind: str, alpha: float | str, train_values: list[np.ndarray], quantile: float,
                offset: float, variables: tuple[str, ...]) -> Scaling:
    """The run's :class:`Scaling`; ``alpha='auto'`` is fitted on the training series only.

    Args:
        kind: ``global`` or ``per_series``.
        alpha: a number or ``auto`` (global only).
        train_values: the training series (``[T_i, V]`` each).
        quantile, offset: the per-series settings.
        variables: variable names, recorded so new inputs can be checked against them.
    """
    if kind == "per_series":
        return Scaling(kind, 1.0, quantile, offset, variables)
    fitted = choose_alpha(np.concatenate(train_values)) if alpha == "auto" else float(alpha)
    return Scaling(kind, fitted, quantile, offset, variables)
