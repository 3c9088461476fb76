"""Architecture-faithful FLOPs: the op graph of a Qwen2-style model call, then its price.

One model call (:class:`Call`) over ``batch`` sequences of ``rows`` new tokens after ``past``
cached ones is written down op by op (:func:`model_graph`), following transformers'
``Qwen2DecoderLayer`` with PEFT LoRA; :mod:`lora_forecast.flops.ops` prices it under a
convention. Embedding lookups, masks, computing RoPE's cos/sin, and the loss cost 0 (SPEC:
indexing is free, positional encodings are not counted, only their application; the loss is
outside the model and the seed accounting does not count it either).

Elementwise prices in SPEC primitives (add/sub/neg/mul/div/inverse 1, exp/sqrt 10); a row of
RMSNorm has width D, a softmax row k scores:

    RMSNorm   fwd per row 4D + 12: x^2 (D), mean (D-1 adds + 1 div), +eps (1), sqrt (10),
              inverse (1), x * inv (D), * weight (D).
              bwd per row 6D + 3 (frozen weight): gw = g*w (D), s = sum(gw*x) (2D-1),
              c = s * inv^3 / D (4), dx = inv*gw - c*x (3D).
    RoPE      fwd/bwd 3 per element: x*cos + rotate_half(x)*sin (mul, mul, add); the sign flip
              of rotate_half is folded into the precomputed sin table (not counted, like cos/sin).
    scaling   1 mul per score (transformers scales the scores, not q); bwd 1 mul per score.
    softmax   fwd per row 14k - 2: max (k-1 compares), x - max (k), exp (10k), sum (k-1),
              divide (k). bwd per row 4k - 1: dx = p * (g - sum(g*p)) (k mul, k-1 add,
              k sub, k mul); the max shift has zero gradient.
    SiLU      fwd 14 per element: x * 1/(1 + exp(-x)) (neg, exp, add, inverse, mul).
              bwd 18: aten.silu_backward recomputes sigma (13) then g*sigma*(1 + x*(1-sigma)) (5).
    SwiGLU    act(gate) * up: 1 mul; bwd 1 mul per input that requires grad.
    biases    q/k/v bias add 1 per output; frozen, so its backward is the identity (0).
    LoRA      y = base(x) + B(A(x)) * s: x A^T, (.) B^T, * s (1), + base (1) per output;
              bwd: d(B-out) = g*s (1 per output), dB, dA always; dx only if x requires grad.
    forks     a tensor read by c ops that each return a gradient needs c - 1 adds per element
              in backward (autograd accumulates them), e.g. a normed input read by q/k/v and
              the LoRA A's; GQA's repeat_kv sums H/KV head gradients back onto each kv head.

Backward ("autograd") follows requires_grad: base weights are frozen (no weight gradients);
an op's input gradient is computed only if that input requires grad, i.e. something trainable
lies upstream of it. The first layer's input (the embedding) never does; a layer's output does
as soon as any LoRA sits in that layer or before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.ops import (
    Attention,
    AttentionPointwise,
    Convention,
    MatMul,
    Op,
    Pointwise,
)
from lora_forecast.flops.request import FlopsRequest

_QKV = ("q_proj", "k_proj", "v_proj")
_SILU_FWD, _SILU_BWD = 14, 18
_ROPE = 3
_SOFTMAX_FWD = (14, -2)  # per score, per row
_SOFTMAX_BWD = (4, -1)


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


def _rmsnorm(tokens: int, width: int, needs_grad: bool) -> Op:
    return Pointwise("norm", tokens * (4 * width + 12),
                     tokens * (6 * width + 3) if needs_grad else 0)


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
    if arch.qkv_bias and name in _QKV:
        ops.append(Pointwise(name, tokens * d_out))
    if lora.wraps(name):
        return ops + _lora(tokens, d_in, d_out, lora.rank, x_grad), True
    return ops, x_grad


def _attention(arch: Architecture, call: Call, q_grad: bool, k_grad: bool,
               v_grad: bool) -> list[Op]:
    """Scores, scaling, softmax and the value mix for every query head, plus GQA folding."""
    heads, d = arch.heads, arch.head_dim
    shape = {"rows": call.rows, "past": call.past, "count": call.batch * heads}
    s_grad = q_grad or k_grad
    fold = call.batch * (heads - arch.kv_heads) * (call.past + call.rows) * d
    return [
        Attention("attn_scores", "scores", head_dim=d, grad_a=q_grad, grad_b=k_grad, **shape),
        AttentionPointwise("attn_scores", fwd_pair=1, fwd_row=0, bwd_pair=1, bwd_row=0,
                           needs_grad=s_grad, **shape),
        AttentionPointwise("attn_softmax", fwd_pair=_SOFTMAX_FWD[0], fwd_row=_SOFTMAX_FWD[1],
                           bwd_pair=_SOFTMAX_BWD[0], bwd_row=_SOFTMAX_BWD[1],
                           needs_grad=s_grad, **shape),
        Attention("attn_values", "values", head_dim=d, grad_a=s_grad, grad_b=v_grad, **shape),
        Pointwise("grad_accumulation", 0, fold * (k_grad + v_grad)),
    ]


def _attention_block(arch: Architecture, call: Call, lora: Lora,
                     x_grad: bool) -> tuple[list[Op], bool]:
    """input RMSNorm -> q/k/v (+bias, +LoRA) -> RoPE -> attention -> o_proj; output grad?"""
    t, width = call.batch * call.rows, arch.hidden
    ops: list[Op] = [_rmsnorm(t, width, x_grad)]
    grads = {}
    for name in _QKV:  # (t, D) -> (t, H*d) for q, (t, KV*d) for k and v
        proj_ops, grads[name] = _projection(arch, name, t, x_grad, lora)
        ops += proj_ops
    ops.append(_fork(t * width, 3 + sum(map(lora.wraps, _QKV)), x_grad))
    q_grad, k_grad, v_grad = (grads[name] for name in _QKV)
    ops.append(Pointwise("rope", _ROPE * t * arch.q_width, _ROPE * t * arch.q_width * q_grad))
    ops.append(Pointwise("rope", _ROPE * t * arch.kv_width, _ROPE * t * arch.kv_width * k_grad))
    ops += _attention(arch, call, q_grad, k_grad, v_grad)
    a_grad = q_grad or k_grad or v_grad
    o_ops, o_grad = _projection(arch, "o_proj", t, a_grad, lora)  # (t, H*d) -> (t, D)
    ops += [*o_ops, _fork(t * arch.q_width, 1 + lora.wraps("o_proj"), a_grad)]
    return ops, o_grad


def _mlp_block(arch: Architecture, call: Call, lora: Lora,
               h_grad: bool) -> tuple[list[Op], bool]:
    """post-attention RMSNorm -> down(silu(gate(h)) * up(h)); whether its output needs grad."""
    t, width, inter = call.batch * call.rows, arch.hidden, arch.intermediate
    ops: list[Op] = [_rmsnorm(t, width, h_grad)]
    gate_ops, gate_grad = _projection(arch, "gate_proj", t, h_grad, lora)  # (t, D) -> (t, I)
    up_ops, up_grad = _projection(arch, "up_proj", t, h_grad, lora)
    ops += [*gate_ops, *up_ops]
    ops.append(_fork(t * width, 2 + lora.wraps("gate_proj") + lora.wraps("up_proj"), h_grad))
    ops.append(Pointwise("mlp_act", _SILU_FWD * t * inter, _SILU_BWD * t * inter * gate_grad))
    ops.append(Pointwise("mlp_act", t * inter, t * inter * (gate_grad + up_grad)))
    m_grad = gate_grad or up_grad
    down_ops, down_grad = _projection(arch, "down_proj", t, m_grad, lora)  # (t, I) -> (t, D)
    return [*ops, *down_ops, _fork(t * inter, 1 + lora.wraps("down_proj"), m_grad)], down_grad


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
    """Final RMSNorm on every position, then the lm head on the kept positions."""
    rows = call.batch * call.head_rows
    ops: list[Op] = [
        _rmsnorm(call.batch * call.rows, arch.hidden, h_grad),
        MatMul("lm_head", rows, arch.hidden, head_vocab, grad_a=h_grad),
    ]
    if lora.head_bias:  # logits + b; its gradient sums over the rows: (rows - 1) adds a column
        ops.append(Pointwise("lm_head_bias", rows * head_vocab, (rows - 1) * head_vocab))
    return ops


def model_graph(arch: Architecture, call: Call, lora: Lora,
                head_vocab: int) -> list[tuple[int, list[Op]]]:
    """The ops of one call, as (multiplicity, ops) blocks.

    Layers differ only in whether their input requires grad, so at most two distinct layer
    blocks exist: the layers before (and including) the first one holding a LoRA, and the rest.
    """
    built: dict[bool, tuple[list[Op], bool]] = {}
    counts: dict[bool, int] = {}
    x_grad = False
    for _ in range(arch.layers):
        if x_grad not in built:
            built[x_grad] = _layer(arch, call, lora, x_grad)
        counts[x_grad] = counts.get(x_grad, 0) + 1
        x_grad = built[x_grad][1]
    blocks = [(counts[g], built[g][0]) for g in counts]
    return [*blocks, (1, _head(arch, call, lora, head_vocab, x_grad))]


def _add(into: dict[str, float], key: str, value: float) -> None:
    if value:
        into[key] = into.get(key, 0.0) + value


def price(blocks: list[tuple[int, list[Op]]], conv: Convention, phase: str,
          backward: str | None = None, scale: float = 1.0) -> dict[str, float]:
    """FLOPs per ``phase/component``; with ``backward`` also ``backward/component``.

    ``backward="rule"`` prices backward as 2 x forward (SPEC); ``"autograd"`` sums the ops'
    own backward prices.
    """
    out: dict[str, float] = {}
    for times, ops in blocks:
        for op in ops:
            fwd = scale * times * op.forward(conv)
            _add(out, f"{phase}/{op.component}", fwd)
            if backward == "rule":
                _add(out, f"backward/{op.component}", 2 * fwd)
            elif backward == "autograd":
                _add(out, f"backward/{op.component}", scale * times * op.backward(conv))
    return out


def _inference_calls(req: FlopsRequest) -> list[tuple[str, Call]]:
    """Generation as transformers' ``generate`` runs it (logits only for the last position).

    With a KV cache the prefill over the prompt yields token 1, then new_tokens - 1 decode
    calls each feed the latest token (rows 1) against context + s - 1 cached positions.
    Without a cache every token recomputes the whole sequence so far (context + s tokens).
    """
    b, c, n = req.batch_size, req.context_tokens, req.new_tokens
    if n == 0:
        return []
    if not req.kv_cache:
        return [("prefill" if s == 0 else "decode", Call(b, c + s, 0, 1)) for s in range(n)]
    return [("prefill", Call(b, c, 0, 1))] + [("decode", Call(b, 1, c + s - 1, 1))
                                              for s in range(1, n)]


def _forward(arch: Architecture, req: FlopsRequest, conv: Convention,
             lora: Lora) -> dict[str, float]:
    call = Call(req.batch_size, req.context_tokens, 0, req.context_tokens)
    return price(model_graph(arch, call, lora, req.head_vocab), conv, "forward")


def _train(arch: Architecture, req: FlopsRequest, conv: Convention,
           lora: Lora) -> dict[str, float]:
    call = Call(req.batch_size, req.context_tokens, 0, req.context_tokens)
    blocks = model_graph(arch, call, lora, req.head_vocab)
    return price(blocks, conv, "forward", backward=req.backward, scale=req.steps)


def _inference(arch: Architecture, req: FlopsRequest, conv: Convention,
               lora: Lora) -> dict[str, float]:
    out: dict[str, float] = {}
    for phase, call in _inference_calls(req):
        graph = model_graph(arch, call, lora, req.head_vocab)
        for key, value in price(graph, conv, phase).items():
            _add(out, key, value)
    return out


# mode -> (arch, request, convention, adapters) -> breakdown
_MODES = {"forward": _forward, "train": _train, "inference": _inference}


def count_exact(arch: Architecture, req: FlopsRequest, conv: Convention) -> dict[str, float]:
    """Breakdown ``phase/component -> FLOPs`` of the architecture-faithful count.

    Phases: ``forward`` (and ``backward`` for train, times ``steps``), or ``prefill`` and
    ``decode`` for inference; components are named after the modules (see module docstring).
    """
    lora = Lora(req.lora_rank, req.trainable_lora, req.lm_head_bias)
    return _MODES[req.mode](arch, req, conv, lora)
