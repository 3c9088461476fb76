"""Architecture-faithful FLOPs: the op graph of each model call of a workload, then its price.

A workload (forward passes, training steps, generation) is a sequence of model calls; each
call's ops come from :func:`lora_forecast.flops.graph.model_graph` (which documents every op
and its SPEC price, family by family) and are priced under a convention by
:mod:`lora_forecast.flops.ops`.
"""

from __future__ import annotations

from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.graph import Call, Lora, model_graph
from lora_forecast.flops.ops import Convention, Op
from lora_forecast.flops.request import FlopsRequest


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
