"""``count_flops``: validate a workload once, then dispatch to a registered accounting."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

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


def count_flops(
    arch: Architecture,
    *,
    accounting: str,
    mode: str,
    context_tokens: int,
    batch_size: int = 1,
    steps: int = 1,
    new_tokens: int = 0,
    lora_rank: int = 0,
    lora_targets: Sequence[str] | None = None,
    lm_head_bias: bool = False,
    convention: str | Convention = "coursework",
    backward: str = "rule",
    kv_cache: bool = True,
    head_vocab: int | None = None,
    gradient_checkpointing: bool = False,
) -> FlopsReport:
    """Count the FLOPs of a workload on ``arch`` (any family of ``flops.families.FAMILIES``).

    Args:
        arch: model shape.
        accounting: ``"seed"`` (the reference report's formulas, exactly) or ``"exact"``
            (architecture-faithful op graph).
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
        convention: ``"coursework"`` (SPEC primitive costs, causal discount) or ``"torch"``
            (what ``FlopCounterMode`` counts: 2mnp per matmul, elementwise free), or a
            :class:`~lora_forecast.flops.ops.Convention`.
        backward: ``"rule"`` (2 x forward) or ``"autograd"`` (what autograd computes with a
            frozen base: weight gradients for trainable parameters only, input gradients only
            where something trainable lies upstream).
        kv_cache: inference reuses keys/values (True) or recomputes the sequence each token.
        head_vocab: vocabulary rows the lm head computes (None: ``arch.vocab``; a numeric-only
            head computes 13).
        gradient_checkpointing: train only: the decoder layers' forward runs again during the
            backward (activation checkpointing), counted as ``recompute/*`` (the head is not
            checkpointed).

    Returns:
        A :class:`FlopsReport` whose ``breakdown`` sums to ``total``.

    Raises:
        ValueError: an argument is unknown or out of range (the message names it).
    """
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"accounting: must be one of {tuple(ACCOUNTINGS)}, got {accounting!r}")
    conv = _convention(convention)
    vocab = arch.vocab if head_vocab is None else head_vocab
    if isinstance(vocab, int) and vocab > arch.vocab:
        raise ValueError(f"head_vocab: must be <= arch.vocab={arch.vocab}, got {vocab}")
    if isinstance(lora_targets, str):
        raise ValueError(f"lora_targets: must be a sequence of module names, got {lora_targets!r}")
    request = FlopsRequest(
        mode=mode, context_tokens=context_tokens, batch_size=batch_size, steps=steps,
        new_tokens=new_tokens, lora_rank=lora_rank,
        lora_targets=resolve_lora_targets(arch, lora_targets, key="lora_targets"),
        lm_head_bias=bool(lm_head_bias), backward=backward, kv_cache=bool(kv_cache),
        head_vocab=vocab,
    )
    breakdown = ACCOUNTINGS[accounting](arch, request, conv)
    if gradient_checkpointing and mode == "train":
        breakdown = {**breakdown, **_recompute(arch, request, conv, accounting)}
    return FlopsReport(breakdown, accounting=accounting, mode=mode, convention=conv.name)


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
