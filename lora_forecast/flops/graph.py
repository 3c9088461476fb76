"""The op graph of one model call, family by family, with PEFT LoRA on any layer linear.

One model call (:class:`Call`) over ``batch`` sequences of ``rows`` new tokens after ``past``
cached ones is written down op by op (:func:`model_graph`), following transformers'
``modeling_<family>.py`` decoder layers; :mod:`lora_forecast.flops.ops` prices it under a
convention. Embedding lookups, masks, computing RoPE's cos/sin, and the loss cost 0 (SPEC:
indexing is free, positional encodings are not counted, only their application; the loss is
outside the model and the seed accounting does not count it either).

Elementwise prices in SPEC primitives (add/sub/neg/mul/div/inverse 1, exp/sqrt/tanh 10); a row
of RMSNorm has width D, a softmax row k scores:

    RMSNorm   fwd per row 4D + 12: x^2 (D), mean (D-1 adds + 1 div), +eps (1), sqrt (10),
              inverse (1), x * inv (D), * weight (D); Gemma's ``1 + weight`` adds D per call.
              bwd per row 6D + 3 (frozen weight): gw = g*w (D), s = sum(gw*x) (2D-1),
              c = s * inv^3 / D (4), dx = inv*gw - c*x (3D).
              Qwen3's q/k norms are RMSNorms over rows of one head (width d).
    RoPE      fwd/bwd 3 per rotated element: x*cos + rotate_half(x)*sin (mul, mul, add); the
              sign flip of rotate_half is folded into the precomputed sin table (not counted,
              like cos/sin). Phi-3 may rotate only ``rotary_dim`` of each head's d dims.
    scaling   1 mul per score (transformers scales the scores, not q); bwd 1 mul per score.
    softcap   Gemma-2, per score or logit: s / c, tanh, * c: fwd 12; bwd 5 (g * c, g * (1 - t^2),
              / c).
    softmax   fwd per row 14k - 2: max (k-1 compares), x - max (k), exp (10k), sum (k-1),
              divide (k). bwd per row 4k - 1: dx = p * (g - sum(g*p)) (k mul, k-1 add,
              k sub, k mul); the max shift has zero gradient.
    act       SiLU or tanh-GELU of the gate (prices in ``families.ACTIVATIONS``), then * up:
              1 mul; bwd 1 mul per input that requires grad.
    biases    1 add per output; frozen, so its backward is the identity (0).
    embedding Gemma multiplies it by sqrt(D): 1 mul per element, never differentiated.
    LoRA      y = base(x) + B(A(x)) * s: x A^T, (.) B^T, * s (1), + base (1) per output;
              bwd: d(B-out) = g*s (1 per output), dB, dA always; dx only if x requires grad.
    forks     a tensor read by c ops that each return a gradient needs c - 1 adds per element
              in backward (autograd accumulates them), e.g. a normed input read by q/k/v and
              the LoRA A's, or Phi-3's fused qkv output read as three slices; GQA's repeat_kv
              sums H/KV head gradients back onto each kv head. Phi-3's ``chunk`` of gate_up is
              one node whose backward concatenates (free).

Backward ("autograd") follows requires_grad: base weights are frozen (no weight gradients);
an op's input gradient is computed only if that input requires grad, i.e. something trainable
lies upstream of it. The first layer's input (the embedding) never does; a layer's output does
as soon as any LoRA sits in that layer or before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.families import ACTIVATIONS
from lora_forecast.flops.ops import Attention, AttentionPointwise, MatMul, Op, Pointwise

_ROPE = 3
_SOFTMAX_FWD = (14, -2)  # per score, per row
_SOFTMAX_BWD = (4, -1)
_SOFTCAP_FWD, _SOFTCAP_BWD = 12, 5


@dataclass(frozen=True)
class Call:
    """One forward call: ``batch`` sequences, ``rows`` new tokens each after ``past`` cached
    tokens; the lm head runs on the last ``head_rows`` positions of each sequence."""

    batch: int
    rows: int
    past: int
    head_rows: int


@dataclass(frozen=True)
class Lora:
    """The trainable adapters: LoRA rank and wrapped modules, and a trainable lm-head bias."""

    rank: int
    targets: frozenset[str]
    head_bias: bool

    def wraps(self, name: str) -> bool:
        return self.rank > 0 and name in self.targets


def _rmsnorm(arch: Architecture, rows: int, width: int, needs_grad: bool) -> Op:
    offset = width if arch.traits.norm_offset else 0  # Gemma: (1 + weight), once per call
    return Pointwise("norm", rows * (4 * width + 12) + offset,
                     rows * (6 * width + 3) if needs_grad else 0)


def _fork(elements: int, consumers: int, needs_grad: bool) -> Op:
    """Gradient accumulation where one tensor feeds ``consumers`` differentiated ops."""
    return Pointwise("grad_accumulation", 0, (consumers - 1) * elements if needs_grad else 0)


def _lora(tokens: int, d_in: int, d_out: int, rank: int, x_grad: bool) -> list[Op]:
    """PEFT's ``base + lora_B(lora_A(x)) * scaling`` on top of the base projection."""
    return [
        MatMul("lora", tokens, d_in, rank, grad_a=x_grad, grad_b=True),  # u = x A^T
        MatMul("lora", tokens, rank, d_out, grad_a=True, grad_b=True),  # v = u B^T
        Pointwise("lora", 2 * tokens * d_out, tokens * d_out),  # v * s + base; bwd g * s
    ]


def _projection(arch: Architecture, name: str, tokens: int, x_grad: bool,
                lora: Lora) -> tuple[list[Op], bool]:
    """A frozen linear (plus bias, plus LoRA): its ops and whether its output requires grad."""
    d_in, d_out = arch.module_shape(name)
    ops: list[Op] = [MatMul(name, tokens, d_in, d_out, grad_a=x_grad)]
    if arch.has_bias(name):
        ops.append(Pointwise(name, tokens * d_out))
    if lora.wraps(name):
        return ops + _lora(tokens, d_in, d_out, lora.rank, x_grad), True
    return ops, x_grad


def _qkv(arch: Architecture, t: int, lora: Lora,
         x_grad: bool) -> tuple[list[Op], tuple[bool, bool, bool]]:
    """q, k, v from the normed input (t, D): separate or fused projections, Qwen3's q/k norms.

    Returns the ops and whether q, k and v require grad.
    """
    if arch.traits.fused_qkv:  # (t, D) -> (t, (H + 2 KV) d), sliced three ways
        ops, grad = _projection(arch, "qkv_proj", t, x_grad, lora)
        width = arch.module_shape("qkv_proj")[1]
        ops += [_fork(t * arch.hidden, 1 + lora.wraps("qkv_proj"), x_grad),
                _fork(t * width, 3, grad)]
        grads = (grad, grad, grad)
    else:  # (t, D) -> (t, H*d) for q, (t, KV*d) for k and v
        ops, flags = [], []
        for name in ("q_proj", "k_proj", "v_proj"):
            proj_ops, grad = _projection(arch, name, t, x_grad, lora)
            ops += proj_ops
            flags.append(grad)
        wrapped = sum(map(lora.wraps, ("q_proj", "k_proj", "v_proj")))
        ops.append(_fork(t * arch.hidden, 3 + wrapped, x_grad))
        grads = (flags[0], flags[1], flags[2])
    if arch.traits.qk_norm:  # one RMSNorm row per head and token
        d = arch.head_dim
        ops += [_rmsnorm(arch, t * arch.heads, d, grads[0]),
                _rmsnorm(arch, t * arch.kv_heads, d, grads[1])]
    return ops, grads


def _attention(arch: Architecture, call: Call, q_grad: bool, k_grad: bool,
               v_grad: bool) -> list[Op]:
    """Scores, scaling, soft-cap, softmax and the value mix for every query head, plus GQA
    folding."""
    heads, d = arch.heads, arch.head_dim
    shape = {"rows": call.rows, "past": call.past, "count": call.batch * heads}
    s_grad = q_grad or k_grad
    fold = call.batch * (heads - arch.kv_heads) * (call.past + call.rows) * d
    ops: list[Op] = [
        Attention("attn_scores", "scores", head_dim=d, grad_a=q_grad, grad_b=k_grad, **shape),
        AttentionPointwise("attn_scores", fwd_pair=1, fwd_row=0, bwd_pair=1, bwd_row=0,
                           needs_grad=s_grad, **shape),
    ]
    if arch.attn_softcap is not None:
        ops.append(AttentionPointwise("attn_softcap", fwd_pair=_SOFTCAP_FWD, fwd_row=0,
                                      bwd_pair=_SOFTCAP_BWD, bwd_row=0, needs_grad=s_grad,
                                      **shape))
    return [
        *ops,
        AttentionPointwise("attn_softmax", fwd_pair=_SOFTMAX_FWD[0], fwd_row=_SOFTMAX_FWD[1],
                           bwd_pair=_SOFTMAX_BWD[0], bwd_row=_SOFTMAX_BWD[1],
                           needs_grad=s_grad, **shape),
        Attention("attn_values", "values", head_dim=d, grad_a=s_grad, grad_b=v_grad, **shape),
        Pointwise("grad_accumulation", 0, fold * (k_grad + v_grad)),
    ]


def _attention_block(arch: Architecture, call: Call, lora: Lora,
                     x_grad: bool) -> tuple[list[Op], bool]:
    """RMSNorm -> q/k/v (+bias, +LoRA) -> RoPE -> attention -> o_proj (-> Gemma-2's norm);
    whether its output requires grad."""
    t = call.batch * call.rows
    ops, (q_grad, k_grad, v_grad) = _qkv(arch, t, lora, x_grad)
    ops.insert(0, _rmsnorm(arch, t, arch.hidden, x_grad))
    rope = _ROPE * t * arch.rope_width
    ops.append(Pointwise("rope", rope * arch.heads, rope * arch.heads * q_grad))
    ops.append(Pointwise("rope", rope * arch.kv_heads, rope * arch.kv_heads * k_grad))
    ops += _attention(arch, call, q_grad, k_grad, v_grad)
    a_grad = q_grad or k_grad or v_grad
    o_ops, o_grad = _projection(arch, "o_proj", t, a_grad, lora)  # (t, H*d) -> (t, D)
    ops += [*o_ops, _fork(t * arch.q_width, 1 + lora.wraps("o_proj"), a_grad)]
    if arch.traits.sandwich_norms:
        ops.append(_rmsnorm(arch, t, arch.hidden, o_grad))
    return ops, o_grad


def _gate_up(arch: Architecture, t: int, lora: Lora,
             h_grad: bool) -> tuple[list[Op], bool, bool]:
    """gate and up from the normed input (t, D) -> (t, I) each, separate or fused."""
    if arch.traits.fused_gate_up:  # (t, D) -> (t, 2I), chunked (free, see module doc)
        ops, grad = _projection(arch, "gate_up_proj", t, h_grad, lora)
        return [*ops, _fork(t * arch.hidden, 1 + lora.wraps("gate_up_proj"), h_grad)], grad, grad
    gate_ops, gate_grad = _projection(arch, "gate_proj", t, h_grad, lora)
    up_ops, up_grad = _projection(arch, "up_proj", t, h_grad, lora)
    consumers = 2 + lora.wraps("gate_proj") + lora.wraps("up_proj")
    return [*gate_ops, *up_ops, _fork(t * arch.hidden, consumers, h_grad)], gate_grad, up_grad


def _mlp_block(arch: Architecture, call: Call, lora: Lora,
               h_grad: bool) -> tuple[list[Op], bool]:
    """RMSNorm -> down(act(gate(h)) * up(h)) (-> Gemma-2's norm); whether its output needs
    grad."""
    t, inter = call.batch * call.rows, arch.intermediate
    act_fwd, act_bwd = ACTIVATIONS[arch.hidden_act]
    gate_up_ops, gate_grad, up_grad = _gate_up(arch, t, lora, h_grad)
    ops: list[Op] = [_rmsnorm(arch, t, arch.hidden, h_grad), *gate_up_ops]
    ops.append(Pointwise("mlp_act", act_fwd * t * inter, act_bwd * t * inter * gate_grad))
    ops.append(Pointwise("mlp_act", t * inter, t * inter * (gate_grad + up_grad)))
    m_grad = gate_grad or up_grad
    down_ops, down_grad = _projection(arch, "down_proj", t, m_grad, lora)  # (t, I) -> (t, D)
    ops += [*down_ops, _fork(t * inter, 1 + lora.wraps("down_proj"), m_grad)]
    if arch.traits.sandwich_norms:
        ops.append(_rmsnorm(arch, t, arch.hidden, down_grad))
    return ops, down_grad


def _layer(arch: Architecture, call: Call, lora: Lora, x_grad: bool) -> tuple[list[Op], bool]:
    """One decoder layer, h = x + attn(x); out = h + mlp(h): its ops and output grad.

    Each residual stream tensor feeds its block and the residual add, so when it requires
    grad autograd adds the two incoming gradients (t * D adds).
    """
    tokens = call.batch * call.rows * arch.hidden
    attn_ops, attn_grad = _attention_block(arch, call, lora, x_grad)
    h_grad = x_grad or attn_grad
    mlp_ops, mlp_grad = _mlp_block(arch, call, lora, h_grad)
    residual = [Pointwise("residual", tokens)]
    return ([*attn_ops, *residual, _fork(tokens, 2, x_grad),
             *mlp_ops, *residual, _fork(tokens, 2, h_grad)], h_grad or mlp_grad)


def _head(arch: Architecture, call: Call, lora: Lora, head_vocab: int,
          h_grad: bool) -> list[Op]:
    """Final RMSNorm on every position, then the lm head (and soft-cap) on the kept ones."""
    rows = call.batch * call.head_rows
    ops: list[Op] = [
        _rmsnorm(arch, call.batch * call.rows, arch.hidden, h_grad),
        MatMul("lm_head", rows, arch.hidden, head_vocab, grad_a=h_grad),
    ]
    if lora.head_bias:  # logits + b; its gradient sums over the rows: (rows - 1) adds a column
        ops.append(Pointwise("lm_head_bias", rows * head_vocab, (rows - 1) * head_vocab))
    if arch.final_softcap is not None:
        logits_grad = h_grad or lora.head_bias
        ops.append(Pointwise("lm_head_softcap", _SOFTCAP_FWD * rows * head_vocab,
                             _SOFTCAP_BWD * rows * head_vocab * logits_grad))
    return ops


def model_graph(arch: Architecture, call: Call, lora: Lora,
                head_vocab: int) -> list[tuple[int, list[Op]]]:
    """The ops of one call, as (multiplicity, ops) blocks.

    Layers differ only in whether their input requires grad (the layers before and including
    the first one holding a LoRA, and the rest) and, in a cached call beyond a sliding window,
    in how many past keys they score (:meth:`Architecture.cached_past`), so few distinct layer
    blocks exist.
    """
    built: dict[tuple[bool, int], tuple[list[Op], bool]] = {}
    counts: dict[tuple[bool, int], int] = {}
    x_grad = False
    for index in range(arch.layers):
        key = (x_grad, arch.cached_past(index, call.past))
        if key not in built:
            built[key] = _layer(arch, replace(call, past=key[1]), lora, x_grad)
        counts[key] = counts.get(key, 0) + 1
        x_grad = built[key][1]
    blocks = [(counts[k], built[k][0]) for k in counts]
    if arch.traits.embed_scale:  # Gemma: embeddings * sqrt(D), (t, D)
        blocks.insert(0, (1, [Pointwise("embed_scale", call.batch * call.rows * arch.hidden)]))
    return [*blocks, (1, _head(arch, call, lora, head_vocab, x_grad))]
