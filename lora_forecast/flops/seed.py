"""The reference report's own ("seed") FLOPs formulas, reproduced exactly as the SPEC gives them.

With D hidden, H heads, L layers, V vocab (``arch.vocab``) and N context tokens::

    layer(N)   = 4*D^2*N/H + (22*N^2 - N + 10)*H + 22*D^2*N + 4*D*N^2 + 31*D*N + 20*N
    forward(N) = L*layer(N) + (2*D + 22)*V*N - V
    training   = 3 * forward(N) * batch_size * steps
    inference  = forward(N) * new_tokens       (N stays the context length; no KV cache)

The formulas treat the MLP as D -> 4D -> D, ignore GQA, head_dim, the real intermediate size,
biases and LoRA, so this accounting reads only D, H, L, V from the architecture and ignores
``lora_rank``, ``lora_targets``, ``lm_head_bias``, ``head_vocab`` and ``kv_cache``. It has no
notion of batch for inference; we multiply by ``batch_size`` (1 reproduces the formula).
Arithmetic is done in exact rationals and converted to float once, at the end.

Breakdown: ``<phase>/layers`` = L * layer(N), ``<phase>/lm_head`` = (2D + 22) V N - V (the
output head and its softmax as the report counted them); phases ``forward`` and ``backward``
(= 2 x forward, so training = 3 x forward) or ``generate`` for inference.
"""

from __future__ import annotations

from fractions import Fraction

from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.ops import Convention
from lora_forecast.flops.request import FlopsRequest


def seed_layer(d: int, h: int, n: int) -> Fraction:
    """layer(N) = 4 D^2 N / H + (22 N^2 - N + 10) H + 22 D^2 N + 4 D N^2 + 31 D N + 20 N."""
    return (Fraction(4 * d * d * n, h) + (22 * n * n - n + 10) * h + 22 * d * d * n
            + 4 * d * n * n + 31 * d * n + 20 * n)


def seed_head(d: int, v: int, n: int) -> int:
    """The non-layer part of forward(N): (2 D + 22) V N - V."""
    return (2 * d + 22) * v * n - v


def seed_forward(arch: Architecture, n: int) -> Fraction:
    """forward(N) = L * layer(N) + (2 D + 22) V N - V."""
    return arch.layers * seed_layer(arch.hidden, arch.heads, n) + seed_head(arch.hidden,
                                                                          arch.vocab, n)


def count_seed(arch: Architecture, req: FlopsRequest, conv: Convention) -> dict[str, float]:
    """Breakdown of the seed accounting (see the module docstring).

    Raises:
        ValueError: ``convention`` is not coursework or ``backward`` is not ``rule``: the
            published formulas define neither a torch-style count nor an autograd backward.
    """
    if conv.name != "coursework":
        raise ValueError(f"convention: the seed accounting is coursework only, got {conv.name!r}")
    if req.mode == "train" and req.backward != "rule":
        raise ValueError(f"backward: the seed accounting uses the 2 x forward rule, "
                         f"got {req.backward!r}")
    n = req.context_tokens
    parts = {
        "layers": arch.layers * seed_layer(arch.hidden, arch.heads, n),
        "lm_head": Fraction(seed_head(arch.hidden, arch.vocab, n)),
    }
    phases = {  # phase -> multiplier of forward(N)
        "forward": {"forward": req.batch_size},
        "train": {"forward": req.batch_size * req.steps,
                  "backward": 2 * req.batch_size * req.steps},
        "inference": {"generate": req.batch_size * req.new_tokens},
    }[req.mode]
    return {f"{phase}/{name}": float(times * value)
            for phase, times in phases.items() for name, value in parts.items() if times}
