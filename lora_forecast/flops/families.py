"""The architecture families the exact accounting can count, keyed by Hugging Face ``model_type``.

A :class:`Family` holds what is fixed by a model's code rather than its sizes: which linears a
decoder layer has (fused or not), which norms and scalings it applies, where its activation and
biases are configured. Sizes live in :class:`~lora_forecast.flops.architecture.Architecture`.

To add a family: read its ``modeling_<type>.py`` in transformers, add one :class:`Family` to
:data:`FAMILIES` with the traits that differ from Llama, teach
:mod:`lora_forecast.flops.graph` any op it lacks, and add it to the parametrised table of
``tests/test_flops_families.py`` (FlopCounterMode agreement on a tiny random-init model).

Sliding-window attention (Mistral, Gemma-2's alternate layers, Gemma 3's five local layers in
six, Qwen2/3 when enabled, Phi-3's ``sliding_window``) is counted as full causal attention. That
is exact while prompt plus generated tokens fit in the window (4096 for Mistral and Gemma-2,
2047 for Phi-3-mini, 512 for Gemma 3 270M) and beyond it it is what the attention kernels in use
really compute: eager and SDPA apply the window as a mask over the full N x N scores, so the
masked pairs are computed and thrown away (``FlopCounterMode`` agrees; tested beyond the window
in ``tests/test_flops_families.py``). A windowed kernel (flash-attention with
``window_size``) would skip them: :meth:`Architecture.windowed_attention_pairs` says how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lora_forecast.errors import ConfigError

if TYPE_CHECKING:
    from lora_forecast.flops.architecture import Architecture

ALL_LINEAR = "all-linear"

# MLP activation -> (forward, backward) SPEC primitives per element; tanh priced like exp (10).
#   silu:  x * 1/(1 + exp(-x)) (neg, exp, add, inverse, mul) = 14; aten.silu_backward
#          recomputes sigma (13), then g * sigma * (1 + x * (1 - sigma)) (5) = 18.
#   gelu_pytorch_tanh: 0.5 x (1 + tanh(b (x + k x^3))): x^3 (2), k* (1), x+ (1), b* (1),
#          tanh (10), 1+ (1), 0.5x (1), * (1) = 18; aten.gelu_backward(approximate="tanh")
#          recomputes the inner tanh (15), 0.5x, 1+t, 0.5(1+t) (3), 1-t^2 (2),
#          b(1 + 3k x^2) (3), 0.5x (1-t^2) inner' (2), sum (1), * g (1) = 27.
ACTIVATIONS: dict[str, tuple[int, int]] = {
    "silu": (14, 18),
    "gelu_pytorch_tanh": (18, 27),
}


class UnsupportedArchitecture(ConfigError):
    """A ``model_type`` the exact accounting has no family for (the message lists those it has)."""


class UnknownLoraTarget(ConfigError):
    """LoRA target modules that a family's decoder layers do not have."""


@dataclass(frozen=True)
class Family:
    """What a family's modeling code fixes, beyond sizes (defaults are Llama's).

    Attributes:
        model_type: the Hugging Face ``config.model_type``.
        fused_qkv: one ``qkv_proj`` (D -> (H + 2 KV) d) instead of q/k/v_proj (Phi-3).
        fused_gate_up: one ``gate_up_proj`` (D -> 2I), chunked into gate and up (Phi-3).
        qkv_bias: q/k/v always carry a bias (True, Qwen2), never (False), or ``None``:
            ``config.attention_bias`` puts a bias on q, k, v and o_proj (Llama, Qwen3, Gemma).
        mlp_bias_key: config attribute that puts a bias on gate/up/down (Llama's ``mlp_bias``).
        activation_key: config attribute naming the MLP activation.
        qk_norm: RMSNorm over each head's q and k after projection (Qwen3, Gemma 3).
        sandwich_norms: RMSNorm after attention and after the MLP too (Gemma-2).
        norm_offset: RMSNorm scales by ``1 + weight``, one add per element per call (Gemma).
        embed_scale: embeddings multiplied by sqrt(D) (Gemma).
        partial_rotary: RoPE rotates ``partial_rotary_factor * head_dim`` dims only (Phi-3).
        softcapping: reads attention and final logit soft-capping (Gemma-2; Gemma 3).
    """

    model_type: str
    fused_qkv: bool = False
    fused_gate_up: bool = False
    qkv_bias: bool | None = None
    mlp_bias_key: str | None = None
    activation_key: str = "hidden_act"
    qk_norm: bool = False
    sandwich_norms: bool = False
    norm_offset: bool = False
    embed_scale: bool = False
    partial_rotary: bool = False
    softcapping: bool = False

    @property
    def linear_modules(self) -> tuple[str, ...]:
        """The linears of one decoder layer, by HF module name (what LoRA can wrap)."""
        qkv = ("qkv_proj",) if self.fused_qkv else ("q_proj", "k_proj", "v_proj")
        gate_up = ("gate_up_proj",) if self.fused_gate_up else ("gate_proj", "up_proj")
        return (*qkv, "o_proj", *gate_up, "down_proj")

    @property
    def default_targets(self) -> tuple[str, ...]:
        """LoRA's default targets: the query and value projections (fused: ``qkv_proj``)."""
        return ("qkv_proj",) if self.fused_qkv else ("q_proj", "v_proj")


_GEMMA = {"norm_offset": True, "embed_scale": True}
# model_type -> Family; one entry per supported architecture (see the module docstring).
FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("qwen2", qkv_bias=True),
        Family("qwen3", qk_norm=True),
        Family("llama", mlp_bias_key="mlp_bias"),
        Family("mistral", qkv_bias=False),
        Family("phi3", fused_qkv=True, fused_gate_up=True, qkv_bias=False, partial_rotary=True),
        Family("gemma", **_GEMMA),
        Family("gemma2", **_GEMMA, activation_key="hidden_activation", sandwich_norms=True,
               softcapping=True),
        # Gemma 3 text: Gemma-2's layer plus per-head q/k norms; soft-capping read (None in the
        # released configs); sliding/global layers counted as full attention (module doc)
        Family("gemma3_text", **_GEMMA, activation_key="hidden_activation", sandwich_norms=True,
               softcapping=True, qk_norm=True),
    )
}


def family_of(arch_or_family: Architecture | Family | str) -> Family:
    """The :class:`Family` of an architecture, a family, or a ``model_type`` string.

    Raises:
        UnsupportedArchitecture: the model type has no registered family.
    """
    if isinstance(arch_or_family, Family):
        return arch_or_family
    model_type = getattr(arch_or_family, "family", arch_or_family)
    if model_type not in FAMILIES:
        raise UnsupportedArchitecture(
            f"config.model_type: {model_type!r} cannot be counted; supported model types: "
            f"{', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]


def resolve_lora_targets(arch_or_family: Architecture | Family | str,
                         targets: str | Sequence[str] | None = None, *,
                         key: str = "lora.target_modules") -> tuple[str, ...]:
    """The LoRA target modules, checked against the family and in its module order.

    Args:
        arch_or_family: an architecture, a family or a ``model_type``.
        targets: module names (a string is one name); ``"all-linear"`` (alone, or as the only
            item) means every linear of the decoder layers, not the lm head, as in PEFT;
            ``None`` means the family's default (q and v, or Phi-3's ``qkv_proj``).
        key: the config key named in the error message.

    Returns:
        The target names, deduplicated, in the family's module order.

    Raises:
        UnknownLoraTarget: names the family's layers do not have (the message names them and
            lists the available ones). An empty sequence is valid: no layer is wrapped.
        UnsupportedArchitecture: the model type has no registered family.
    """
    family = family_of(arch_or_family)
    if targets is None:
        return family.default_targets
    names = [targets] if isinstance(targets, str) else list(targets)
    if names == [ALL_LINEAR]:
        return family.linear_modules
    missing = [name for name in names if name not in family.linear_modules]
    if missing:
        raise UnknownLoraTarget(
            f"{key}: {missing} not in {family.model_type}'s layers; available: "
            f"{', '.join(family.linear_modules)} or {ALL_LINEAR!r}"
        )
    return tuple(name for name in family.linear_modules if name in names)
