"""What is being counted: one validated, immutable description of a workload.

Callers build a :class:`FlopsRequest` and pass it whole to
:func:`lora_forecast.flops.count_flops`, which resolves the model-dependent defaults once;
every accounting then reads plain, already-checked fields.
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
    """A workload to count, passed whole to :func:`lora_forecast.flops.count_flops`.

    Attributes:
        mode: ``"forward"``: one pass over ``context_tokens``, times ``batch_size``;
            ``"train"``: ``steps`` x (forward + backward) over ``batch_size`` sequences of
            ``context_tokens``; ``"inference"``: generate ``new_tokens`` after a prompt of
            ``context_tokens`` for each of ``batch_size`` sequences.
        context_tokens: tokens per sequence (the prompt length for inference), >= 1.
        batch_size: sequences per pass, >= 1.
        steps: optimiser steps (train only), >= 0.
        new_tokens: generated tokens (inference only), >= 0.
        lora_rank: LoRA rank r; 0 means no LoRA.
        lora_targets: wrapped linears of every layer, by HF name (``arch.linear_modules``, or
            ``("all-linear",)``); None: the family's default (q/v, Phi-3's qkv_proj).
        lm_head_bias: a trainable bias on the lm head (one add per computed logit).
        backward: ``"rule"`` (2 x forward) or ``"autograd"`` (what autograd computes with a
            frozen base: weight gradients for trainable parameters only, input gradients only
            where something trainable lies upstream).
        kv_cache: inference reuses keys/values (True) or recomputes the sequence each token.
        head_vocab: vocabulary rows the lm head computes (None: ``arch.vocab``; a numeric-only
            head computes 13).
        gradient_checkpointing: train only: the decoder layers' forward runs again during the
            backward (activation checkpointing), counted as ``recompute/*`` (the head is not
            checkpointed).

    ``count_flops`` resolves ``lora_targets`` and ``head_vocab`` against the architecture
    (:meth:`resolved`) before any accounting reads them.
    """

    mode: str
    context_tokens: int
    batch_size: int = 1
    steps: int = 1
    new_tokens: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] | None = None
    lm_head_bias: bool = False
    backward: str = "rule"
    kv_cache: bool = True
    head_vocab: int | None = None
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {self.mode!r}")
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward: must be one of {BACKWARDS}, got {self.backward!r}")
        if isinstance(self.lora_targets, str):
            raise ValueError("lora_targets: must be a sequence of module names, got "
                             f"{self.lora_targets!r}")
        if self.lora_targets is not None:
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        _check_int("context_tokens", self.context_tokens, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("steps", self.steps, 0)
        _check_int("new_tokens", self.new_tokens, 0)
        _check_int("lora_rank", self.lora_rank, 0)
        if self.head_vocab is not None:
            _check_int("head_vocab", self.head_vocab, 1)
        lora = self.lora_rank > 0 and (self.lora_targets is None or len(self.lora_targets) > 0)
        if (self.mode == "train" and self.backward == "autograd"
                and not lora and not self.lm_head_bias):
            raise ValueError(
                "lora_rank/lora_targets/lm_head_bias: backward='autograd' needs something "
                "trainable (lora_rank > 0 with targets, or lm_head_bias=True)"
            )

    @property
    def trainable_lora(self) -> frozenset[str]:
        """The LoRA-wrapped module names (empty when ``lora_rank == 0``)."""
        return frozenset(self.lora_targets or ()) if self.lora_rank > 0 else frozenset()
