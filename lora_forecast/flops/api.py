"""``count_flops``: validate a workload once, then dispatch to a registered accounting."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lora_forecast.flops.architecture import Architecture
from lora_forecast.flops.exact import count_exact
from lora_forecast.flops.families import resolve_lora_targets
from lora_forecast.flops.ops import CONVENTIONS, Convention
from lora_forecast.flops.report import FlopsReport
from lora_forecast.flops.request import FlopsRequest
from lora_forecast.flops.seed import count_seed

# name -> (architecture, request, convention) -> {"phase/component": FLOPs}
ACCOUNTINGS: dict[str, Callable[[Architecture, FlopsRequest, Convention], dict[str, float]]] = {
    "seed": count_seed,
    "exact": count_exact,
}


def _convention(convention: str | Convention) -> Convention:
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: must be one of {tuple(CONVENTIONS)}, got {convention!r}")
    return CONVENTIONS[convention]


def count_flops(arch: Architecture, request: FlopsRequest, *, accounting: str,
                convention: str | Convention = "coursework") -> FlopsReport:
    """Count the FLOPs of a workload on ``arch`` (any family of ``flops.families.FAMILIES``).

    Args:
        arch: model shape.
        request: the workload (:class:`FlopsRequest`: mode, tokens, batch, LoRA, ...).
        accounting: ``"seed"`` (the reference report's formulas, exactly) or ``"exact"``
            (architecture-faithful op graph).
        convention: ``"coursework"`` (SPEC primitive costs, causal discount) or ``"torch"``
            (what ``FlopCounterMode`` counts: 2mnp per matmul, elementwise free), or a
            :class:`~lora_forecast.flops.ops.Convention`.

    Returns:
        A :class:`FlopsReport` whose ``breakdown`` sums to ``total``.

    Raises:
        ValueError: an argument is unknown or out of range (the message names it).
    """
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"accounting: must be one of {tuple(ACCOUNTINGS)}, got {accounting!r}")
    conv = _convention(convention)
    vocab = arch.vocab if request.head_vocab is None else request.head_vocab
    if vocab > arch.vocab:
        raise ValueError(f"head_vocab: must be <= arch.vocab={arch.vocab}, got {vocab}")
    request = dataclasses.replace(
        request, head_vocab=vocab,
        lora_targets=resolve_lora_targets(arch, request.lora_targets, key="lora_targets"))
    breakdown = ACCOUNTINGS[accounting](arch, request, conv)
    if request.gradient_checkpointing and request.mode == "train":
        breakdown = {**breakdown, **_recompute(arch, request, conv, accounting)}
    return FlopsReport(breakdown, accounting=accounting, mode=request.mode,
                       convention=conv.name)


def _recompute(arch: Architecture, request: FlopsRequest, conv: Convention,
               accounting: str) -> dict[str, float]:
    """Activation checkpointing's extra cost: every step runs the layers' forward once more.

    Non-reentrant checkpointing stops recomputing once every tensor the backward needs is back;
    a frozen ``down_proj`` needs none (its input gradient uses only its weight), so the exact
    accounting leaves it out unless LoRA wraps it (as ``FlopCounterMode`` sees). The head is not
    checkpointed; embedding lookups are free. The seed accounting adds its whole layer cost.
    """
    forward = dataclasses.replace(request, mode="forward")
    skipped = {"forward/lm_head"}
    if "down_proj" not in request.lora_targets:
        skipped.add("forward/down_proj")
    return {f"recompute/{key.split('/', 1)[1]}": flops * request.steps
            for key, flops in ACCOUNTINGS[accounting](arch, forward, conv).items()
            if key not in skipped}
