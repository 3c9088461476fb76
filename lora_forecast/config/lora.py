"""``lora.*``: the PEFT LoRA adapter (conf/lora/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lora_forecast.config.checks import require


@dataclass
class LoraConfig:
    """LoRA adapter (PEFT). ``alpha=None`` means alpha = rank: scaling 1, as in the reference.

    ``target_modules``: null = the model family's q/v (Phi-3: its fused ``qkv_proj``), a list of
    module names, or ``all-linear`` (every linear of the decoder layers, as in PEFT); checked
    against the family before any weight is loaded.
    """

    rank: int = 4
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: Any = None

    def __post_init__(self) -> None:
        require(self.rank >= 1, "lora.rank", f"must be >= 1, got {self.rank}")
        require(
            self.alpha is None or self.alpha > 0, "lora.alpha", f"must be > 0, got {self.alpha}"
        )
        require(
            0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}"
        )
        targets = self.target_modules
        require(
            targets is None or isinstance(targets, str)
            or (len(targets) >= 1 and all(isinstance(t, str) for t in targets)),
            "lora.target_modules",
            f"must be null, all-linear or a non-empty list of module names, got {targets!r}",
        )

    @property
    def scaling_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)
