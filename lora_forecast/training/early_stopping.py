"""Early stopping on a monitored validation value (lower is better); pure state machine."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Counts evaluations without an improvement of at least ``min_delta``.

    ``patience=None`` never stops but still tracks the best value (for the ``best/`` adapter).
    """

    patience: int | None
    min_delta: float = 0.0
    best: float = math.inf
    best_step: int = -1
    bad_evals: int = 0

    def update(self, value: float, step: int) -> bool:
        """Record ``value`` at ``step``; returns True when it is a new best."""
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
