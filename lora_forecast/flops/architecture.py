"""The shape of a decoder-only transformer, as far as FLOPs counting needs it.

Only sizes matter to a FLOPs count, so an :class:`Architecture` is a handful of integers and
flags. It is built from a Hugging Face config (:meth:`Architecture.from_hf_config`, read with
``getattr`` so this module never imports transformers) or from the Qwen2.5-0.5B preset, whose
numbers are the SPEC's "Model facts".
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Model types whose q/k/v projections carry a bias although their config has no
# ``attention_bias`` attribute (Qwen2 hard-codes ``bias=True`` on q/k/v, ``False`` on o).
_QKV_BIAS_BY_MODEL_TYPE = {"qwen2": True}


@dataclass(frozen=True)
class Architecture:
    """A Qwen2/Llama-style decoder: RMSNorm, GQA attention with RoPE, SwiGLU MLP.

    Attributes:
        hidden: model width D.
        layers: number of decoder layers L.
        heads: query heads H.
        kv_heads: key/value heads (GQA groups); ``heads % kv_heads == 0``.
        head_dim: width of one head d (``heads * head_dim`` need not equal ``hidden``).
        intermediate: SwiGLU width I (gate and up project D -> I, down I -> D).
        vocab: embedding rows V (also the lm head's rows when it is computed in full).
        tied_embeddings: lm head shares the embedding matrix (changes parameters, not FLOPs).
        qkv_bias: q/k/v projections add a bias (Qwen2: yes; o_proj and the MLP never do).
        hidden_act: MLP activation; the exact accounting models ``silu`` only.
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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Architecture.{f.name}: must be a positive int, got {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(
                f"Architecture.kv_heads: must divide heads={self.heads}, got {self.kv_heads}"
            )

    @property
    def q_width(self) -> int:
        """Output width of q_proj (and input width of o_proj): H * d."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Output width of k_proj and v_proj: KV * d (smaller than H * d under GQA)."""
        return self.kv_heads * self.head_dim

    def module_shape(self, name: str) -> tuple[int, int]:
        """(in_features, out_features) of a decoder-layer linear, by its HF module name.

        Raises:
            ValueError: ``name`` is not one of the seven projections of a layer.
        """
        shapes = {
            "q_proj": (self.hidden, self.q_width),
            "k_proj": (self.hidden, self.kv_width),
            "v_proj": (self.hidden, self.kv_width),
            "o_proj": (self.q_width, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }
        if name not in shapes:
            raise ValueError(f"module name: must be one of {sorted(shapes)}, got {name!r}")
        return shapes[name]

    def parameter_count(self) -> int:
        """Number of parameters (embeddings counted once when tied).

        Per layer: the seven projections, q/k/v biases, two RMSNorm weights; plus the
        embedding V*D, the final norm D, and an untied lm head V*D.
        """
        names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        weights = sum(i * o for i, o in map(self.module_shape, names))
        biases = (self.q_width + 2 * self.kv_width) if self.qkv_bias else 0
        per_layer = weights + biases + 2 * self.hidden
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.layers * per_layer + self.vocab * self.hidden + self.hidden + head

    @classmethod
    def from_hf_config(cls, config: Any) -> Architecture:
        """Read the sizes from a transformers ``PretrainedConfig`` (e.g. ``Qwen2Config``).

        ``head_dim`` falls back to ``hidden_size // num_attention_heads`` (Qwen2Config has no
        such attribute); ``num_key_value_heads`` falls back to the number of heads (no GQA);
        ``qkv_bias`` comes from ``attention_bias`` where the config has it, else from the
        model type (Qwen2 always has q/k/v biases).

        Raises:
            ValueError: a required size is missing or the activation is not SiLU.
        """
        def need(name: str) -> Any:
            value = getattr(config, name, None)
            if value is None:
                raise ValueError(f"config.{name}: required to count FLOPs, missing")
            return value

        heads = need("num_attention_heads")
        hidden = need("hidden_size")
        model_type = getattr(config, "model_type", "")
        bias = getattr(config, "attention_bias", None)
        act = getattr(config, "hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"config.hidden_act: only 'silu' (SwiGLU) is modelled, got {act!r}")
        return cls(
            hidden=hidden,
            layers=need("num_hidden_layers"),
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or hidden // heads,
            intermediate=need("intermediate_size"),
            vocab=need("vocab_size"),
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=bool(_QKV_BIAS_BY_MODEL_TYPE.get(model_type, False) if bias is None
                          else bias),
            hidden_act=act,
        )

    @classmethod
    def qwen2_5_0_5b(cls) -> Architecture:
        """Qwen2.5-0.5B(-Instruct), from the SPEC's model facts (~494M parameters)."""
        return cls(hidden=896, layers=24, heads=14, kv_heads=2, head_dim=64,
                   intermediate=4864, vocab=151936, tied_embeddings=True, qkv_bias=True)
