"""What is being counted: one validated, immutable description of a workload.

:func:`lora_forecast.flops.count_flops` turns its keyword arguments into a
:class:`FlopsRequest` once; every accounting then reads plain, already-checked fields.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("forward", "train", "inference")
BACKWARDS = ("rule", "autograd")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class FlopsRequest:
    """A workload to count (see :func:`lora_forecast.flops.count_flops` for each field).

    ``head_vocab`` and ``lora_targets`` are resolved against the architecture before
    construction (``None`` means the full vocabulary, or the family's default targets), so
    here ``head_vocab`` is a positive int and every target a linear of the family's layers.
    """

    mode: str
    context_tokens: int
    batch_size: int
    steps: int
    new_tokens: int
    lora_rank: int
    lora_targets: tuple[str, ...]
    lm_head_bias: bool
    backward: str
    kv_cache: bool
    head_vocab: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {self.mode!r}")
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward: must be one of {BACKWARDS}, got {self.backward!r}")
        _check_int("context_tokens", self.context_tokens, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("steps", self.steps, 0)
        _check_int("new_tokens", self.new_tokens, 0)
        _check_int("lora_rank", self.lora_rank, 0)
        _check_int("head_vocab", self.head_vocab, 1)
        if (self.mode == "train" and self.backward == "autograd"
                and not self.trainable_lora and not self.lm_head_bias):
            raise ValueError(
                "lora_rank/lora_targets/lm_head_bias: backward='autograd' needs something "
                "trainable (lora_rank > 0 with targets, or lm_head_bias=True)"
            )

    @property
    def trainable_lora(self) -> frozenset[str]:
        """The LoRA-wrapped module names (empty when ``lora_rank == 0``)."""
        return frozenset(self.lora_targets) if self.lora_rank > 0 else frozenset()
