"""``eval.*``: the forecast protocol on the test split (conf/eval/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lora_forecast.config.checks import require


@dataclass
class EvalConfig:
    """Forecast protocol on the test split."""

    n_systems: int | None = None
    context_steps: int = 50
    horizon_steps: int = 10
    batch_size: int | None = None
    constrained: bool = True
    num_samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.9
    max_int_digits: int = 2
    seed: int = 0
    bootstrap: int = 1000
    plot_systems: int = 4
    baselines: list[str] = field(default_factory=lambda: ["persistence", "linear_ar"])
    season_length: int = 1
    skip_llm: bool = False
    compile: bool = False
    jump_forward: bool | None = None
    prefill_tokens: int | None = 1024
    draft: str | None = None
    draft_tokens: int = 8
    draft_min_chance: float = 0.35

    def __post_init__(self) -> None:
        require(
            self.n_systems is None or self.n_systems >= 1,
            "eval.n_systems",
            f"must be >= 1 or null (all test systems), got {self.n_systems}",
        )
        require(
            self.context_steps >= 1, "eval.context_steps", f"must be >= 1, got {self.context_steps}"
        )
        require(
            self.horizon_steps >= 1, "eval.horizon_steps", f"must be >= 1, got {self.horizon_steps}"
        )
        require(self.batch_size is None or self.batch_size >= 1, "eval.batch_size",
                 f"must be >= 1 or null (as many as memory holds), got {self.batch_size}")
        require(self.prefill_tokens is None or self.prefill_tokens >= 1, "eval.prefill_tokens",
                 f"must be >= 1 or null (one prefill per batch), got {self.prefill_tokens}")
        require(self.draft_tokens >= 1, "eval.draft_tokens",
                f"must be >= 1, got {self.draft_tokens}")
        require(0.0 <= self.draft_min_chance < 1.0, "eval.draft_min_chance",
                f"must be in [0, 1), got {self.draft_min_chance}")
        require(self.draft in (None, "none") or self.constrained, "eval.draft",
                f"drafts need constrained decoding (eval.constrained=true), got {self.draft!r}")
        require(self.season_length >= 1, "eval.season_length",
                 f"must be >= 1, got {self.season_length}")
        require(self.num_samples >= 1, "eval.num_samples", f"must be >= 1, got {self.num_samples}")
        require(self.temperature > 0, "eval.temperature", f"must be > 0, got {self.temperature}")
        require(0 < self.top_p <= 1, "eval.top_p", f"must be in (0, 1], got {self.top_p}")
        require(
            self.max_int_digits >= 1,
            "eval.max_int_digits",
            f"must be >= 1, got {self.max_int_digits}",
        )
