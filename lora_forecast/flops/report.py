"""The result of a FLOPs count: a breakdown that sums to the total, plus what was counted."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class FlopsReport:
    """FLOPs of one workload.

    Attributes:
        breakdown: ``"phase/component" -> FLOPs`` (e.g. ``"forward/q_proj"``,
            ``"backward/lora"``, ``"decode/attn_scores"``); zero entries are left out.
            Read-only; :attr:`total` is its sum.
        accounting: ``"seed"`` or ``"exact"``.
        mode: ``"forward"``, ``"train"`` or ``"inference"``.
        convention: name of the pricing convention (``"coursework"`` or ``"torch"``).
    """

    breakdown: Mapping[str, float]
    accounting: str
    mode: str
    convention: str
    total: float = field(init=False)

    def __post_init__(self) -> None:
        frozen = MappingProxyType(dict(sorted(self.breakdown.items())))
        object.__setattr__(self, "breakdown", frozen)
        object.__setattr__(self, "total", math.fsum(frozen.values()))

    def __reduce__(self) -> tuple:
        # MappingProxyType does not pickle or deepcopy; rebuild from a plain dict instead.
        return (type(self), (dict(self.breakdown), self.accounting, self.mode, self.convention))

    def by_phase(self) -> dict[str, float]:
        """FLOPs per phase (``forward``, ``backward``, ``prefill``, ``decode``, ...)."""
        return _group(self.breakdown, 0)

    def by_component(self) -> dict[str, float]:
        """FLOPs per component summed over phases (``q_proj``, ``lm_head``, ...)."""
        return _group(self.breakdown, 1)

    def as_dict(self) -> dict[str, object]:
        """Plain dict for logging and ledgers."""
        return {"total": self.total, "accounting": self.accounting, "mode": self.mode,
                "convention": self.convention, "breakdown": dict(self.breakdown)}


def _group(breakdown: Mapping[str, float], part: int) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for key, value in breakdown.items():
        out.setdefault(key.split("/", 1)[part], []).append(value)
    return {key: math.fsum(values) for key, values in out.items()}
