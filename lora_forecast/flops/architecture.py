"""The shape of a decoder-only transformer, as far as FLOPs counting needs it.

Only sizes matter to a FLOPs count, so an :class:`Architecture` is a handful of integers and
flags plus the name of its :class:`~lora_forecast.flops.families.Family` (the traits its
modeling code fixes). It is built from a Hugging Face config (:meth:`Architecture.from_hf_config`,
read with ``getattr`` so this module never imports transformers) or from the Qwen2.5-0.5B
preset, whose numbers are the SPEC's "Model facts".
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from lora_forecast.flops.families import ACTIVATIONS, Family, family_of


@dataclass(frozen=True)
class Architecture:
    """A pre-norm decoder: RMSNorm, GQA attention with RoPE, gated MLP (SwiGLU or GeGLU).

    Attributes:
        hidden: model width D.
        layers: number of decoder layers L.
        heads: query heads H.
        kv_heads: key/value heads (GQA groups); ``heads % kv_heads == 0``.
        head_dim: width of one head d (``heads * head_dim`` need not equal ``hidden``).
        intermediate: gated MLP width I (gate and up project D -> I, down I -> D).
        vocab: embedding rows V (also the lm head's rows when it is computed in full).
        tied_embeddings: lm head shares the embedding matrix (changes parameters, not FLOPs).
        qkv_bias: q/k/v projections add a bias (Qwen2: yes).
        hidden_act: MLP activation, a key of :data:`~lora_forecast.flops.families.ACTIVATIONS`.
        family: HF ``model_type`` of the family (fused linears, extra norms, scalings).
        o_bias: o_proj adds a bias (``attention_bias`` of Llama, Qwen3, Gemma).
        mlp_bias: gate/up/down add a bias (Llama's ``mlp_bias``).
        rotary_dim: dims of each head RoPE rotates (None: all ``head_dim``; Phi-3 partial).
        attn_softcap: attention scores soft-capped as ``c * tanh(s / c)`` (Gemma-2), or None.
        final_softcap: logits soft-capped the same way (Gemma-2), or None.
        sliding_window: keys a sliding-window layer attends to (None: no such layers).
        sliding_layers: indices of the sliding-window layers (Gemma 3: five in six). Their
            KV cache keeps only the last ``sliding_window - 1`` positions, so a cached call
            scores at most that many past keys; without a cache they score all N x N pairs
            under a mask (eager and SDPA), as counted.
    """

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = True
    qkv_bias: bool = True
    hidden_act: str = "silu"
    family: str = "qwen2"
    o_bias: bool = False
    mlp_bias: bool = False
    rotary_dim: int | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Architecture.{f.name}: must be a positive int, got {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(
                f"Architecture.kv_heads: must divide heads={self.heads}, got {self.kv_heads}"
            )
        family_of(self.family)
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"Architecture.hidden_act: must be one of {tuple(ACTIVATIONS)}, "
                             f"got {self.hidden_act!r}")
        if self.rotary_dim is not None and not 1 <= self.rotary_dim <= self.head_dim:
            raise ValueError(f"Architecture.rotary_dim: must be in [1, head_dim={self.head_dim}]"
                             f", got {self.rotary_dim!r}")
        for name in ("attn_softcap", "final_softcap"):
            cap = getattr(self, name)
            if cap is not None and not cap > 0:
                raise ValueError(f"Architecture.{name}: must be > 0 or None, got {cap!r}")
        if self.sliding_layers and not (self.sliding_window and self.sliding_window >= 1):
            raise ValueError(f"Architecture.sliding_window: must be >= 1 with sliding layers, "
                             f"got {self.sliding_window!r}")
        if any(not 0 <= i < self.layers for i in self.sliding_layers):
            raise ValueError(f"Architecture.sliding_layers: must be layer indices below "
                             f"{self.layers}, got {self.sliding_layers!r}")

    @property
    def traits(self) -> Family:
        """The family's fixed traits (fused linears, norms, scalings)."""
        return family_of(self.family)

    @property
    def linear_modules(self) -> tuple[str, ...]:
        """The linears of one decoder layer, by HF module name (what LoRA can wrap)."""
        return self.traits.linear_modules

    @property
    def q_width(self) -> int:
        """Output width of the query projection (and input width of o_proj): H * d."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Output width of the key and of the value projection: KV * d (GQA: < H * d)."""
        return self.kv_heads * self.head_dim

    @property
    def rope_width(self) -> int:
        """Dims of each head that RoPE rotates."""
        return self.rotary_dim or self.head_dim

    def cached_past(self, layer: int, past: int) -> int:
        """Past keys layer ``layer`` scores in a cached call after ``past`` positions: a
        sliding-window layer's cache holds at most ``sliding_window - 1`` of them."""
        if layer in self.sliding_layers:
            return min(past, self.sliding_window - 1)
        return past

    def windowed_attention_pairs(self, tokens: int) -> tuple[int, int]:
        """(query, key) pairs per head, summed over layers, of one pass over ``tokens``
        positions: as eager and SDPA compute them (N x N in every layer, masked), and as a
        kernel that skips masked blocks would (flash-attention: the causal triangle in global
        layers, the causal pairs within the window in sliding ones).

        The difference is what such a kernel would save on the attention products; this
        accounting counts the first (what runs here).
        """
        dense = self.layers * tokens * tokens
        window = self.sliding_window or tokens
        in_window = sum(min(i + 1, window) for i in range(tokens))
        sliding = len(self.sliding_layers)
        causal = tokens * (tokens + 1) // 2
        return dense, (self.layers - sliding) * causal + sliding * in_window

    def module_shape(self, name: str) -> tuple[int, int]:
        """(in_features, out_features) of a decoder-layer linear, by its HF module name.

        Raises:
            ValueError: ``name`` is not one of this family's layer linears.
        """
        if name not in self.linear_modules:
            raise ValueError(f"module name: must be one of {self.linear_modules}, got {name!r}")
        d, inter = self.hidden, self.intermediate
        return {
            "q_proj": (d, self.q_width),
            "k_proj": (d, self.kv_width),
            "v_proj": (d, self.kv_width),
            "qkv_proj": (d, self.q_width + 2 * self.kv_width),
            "o_proj": (self.q_width, d),
            "gate_proj": (d, inter),
            "up_proj": (d, inter),
            "gate_up_proj": (d, 2 * inter),
            "down_proj": (inter, d),
        }[name]

    def has_bias(self, name: str) -> bool:
        """Whether the layer linear ``name`` adds a bias."""
        if name in ("q_proj", "k_proj", "v_proj", "qkv_proj"):
            return self.qkv_bias
        return self.o_bias if name == "o_proj" else self.mlp_bias

    def parameter_count(self) -> int:
        """Number of parameters (embeddings counted once when tied).

        Per layer: the linears and their biases, two RMSNorm weights (four with Gemma-2's
        sandwich norms), Qwen3's q/k norms (d each); plus the embedding V*D, the final norm D,
        and an untied lm head V*D.
        """
        shapes = {name: self.module_shape(name) for name in self.linear_modules}
        weights = sum(i * o for i, o in shapes.values())
        biases = sum(o for name, (_, o) in shapes.items() if self.has_bias(name))
        traits = self.traits
        norms = (4 if traits.sandwich_norms else 2) * self.hidden
        norms += 2 * self.head_dim if traits.qk_norm else 0
        per_layer = weights + biases + norms
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.layers * per_layer + self.vocab * self.hidden + self.hidden + head

    @classmethod
    def from_hf_config(cls, config: Any) -> Architecture:
        """Read the sizes and traits from a transformers ``PretrainedConfig``.

        ``config.model_type`` picks the family. ``head_dim`` falls back to
        ``hidden_size // num_attention_heads`` (as every supported modeling file does);
        ``num_key_value_heads`` to the number of heads (no GQA). Gemma-2's
        ``query_pre_attn_scalar`` only changes the constant scores are scaled by, not the count.

        Raises:
            UnsupportedArchitecture: ``config.model_type`` has no registered family.
            ValueError: a required size is missing or the activation cannot be priced.
        """
        traits = family_of(getattr(config, "model_type", None))

        def need(name: str) -> Any:
            value = getattr(config, name, None)
            if value is None:
                raise ValueError(f"config.{name}: required to count FLOPs, missing")
            return value

        heads, hidden = need("num_attention_heads"), need("hidden_size")
        act = getattr(config, traits.activation_key, None)
        if act not in ACTIVATIONS:
            raise ValueError(f"config.{traits.activation_key}: must be one of "
                             f"{tuple(ACTIVATIONS)} to count FLOPs, got {act!r}")
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        attention_bias = bool(getattr(config, "attention_bias", False))
        return cls(
            hidden=hidden,
            layers=need("num_hidden_layers"),
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            intermediate=need("intermediate_size"),
            vocab=need("vocab_size"),
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=attention_bias if traits.qkv_bias is None else traits.qkv_bias,
            hidden_act=act,
            family=traits.model_type,
            o_bias=attention_bias and traits.qkv_bias is None,
            mlp_bias=bool(traits.mlp_bias_key and getattr(config, traits.mlp_bias_key, False)),
            rotary_dim=_rotary_dim(config, head_dim) if traits.partial_rotary else None,
            attn_softcap=getattr(config, "attn_logit_softcapping", None)
            if traits.softcapping else None,
            final_softcap=getattr(config, "final_logit_softcapping", None)
            if traits.softcapping else None,
            **_sliding(config),
        )

    @classmethod
    def qwen2_5_0_5b(cls) -> Architecture:
        """Qwen2.5-0.5B(-Instruct), from the SPEC's model facts (~494M parameters)."""
        return cls(hidden=896, layers=24, heads=14, kv_heads=2, head_dim=64,
                   intermediate=4864, vocab=151936, tied_embeddings=True, qkv_bias=True)


def _sliding(config: Any) -> dict[str, Any]:
    """``sliding_window`` and the sliding layers' indices, read as transformers' DynamicCache
    reads them (``config.layer_types``; without it, every layer when ``sliding_window`` is
    set): those layers' caches keep only the window."""
    window = getattr(config, "sliding_window", None)
    if not window:
        return {}
    types = getattr(config, "layer_types", None)
    layers = int(config.num_hidden_layers)
    indices = tuple(range(layers)) if types is None else tuple(
        i for i, kind in enumerate(types) if kind == "sliding_attention")
    return {"sliding_window": int(window), "sliding_layers": indices} if indices else {}


def _rotary_dim(config: Any, head_dim: int) -> int | None:
    """Phi-3's rotated dims, ``int(head_dim * partial_rotary_factor)`` (None when all are)."""
    rope = getattr(config, "rope_parameters", None) or {}
    factor = rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0))
    dim = int(head_dim * (1.0 if factor is None else factor))
    return None if dim == head_dim else dim
