"""The numeric head: logits over the LLMTIME alphabet only, never over the 151936-row vocabulary.

An LLMTIME target is always one of a few tokens (``LLMTimeFormat.head_ids``: the digits, '.',
',', ';', plus a joiner in the digit_spaced layout, and '-' for signed series; 13 for Qwen,
14 signed), so training only needs
the output distribution *renormalised over that set*. We run the decoder backbone once (LoRA
layers live inside it) and multiply the final hidden states by the 13 allowed rows of the tied
``lm_head`` weight (plus their bias entries):

    logits[N, K] = hidden[N, D] @ W[allowed].T (+ b[allowed])          K = 13, D = 896

instead of ``hidden[B, T, D] @ W.T -> [B, T, 151936]`` followed by a 151936-wide softmax in the
forward and backward pass. For decoding, :func:`numeric_logits_fn` scatters the K logits of the
last position into a ``-inf``-filled full-vocabulary row, so grammar processors written in
full-vocabulary id space and greedy argmax behave exactly as with the full head whenever the
argmax is allowed (which the constrained grammar guarantees).

Loss functions share one signature (``HeadLoss``) and are picked from :data:`HEAD_LOSSES` by
``model.head``, so the training loop does not branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from peft import PeftModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lora_forecast.models.logits import CACHE_ARG, LogitsFn, full_head_logits_fn

IGNORE_INDEX = -100  # label of positions the loss skips (padding, prompt), as in HF

# (model, input_ids[B, T], attention_mask[B, T], labels[B, T]) -> scalar loss
HeadLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The decoder backbone (e.g. ``Qwen2Model``) and the ``lm_head`` of a causal LM.

    Works for a ``PeftModel`` (LoRA layers sit inside the backbone, so calling it applies them),
    for a bare ``*ForCausalLM``, and for either wrapped by DDP (unwrapped with accelerate's
    ``extract_model_from_parallel``: fine for decoding; a training loss must not call it on a
    DDP model, see :func:`numeric_head_loss`).

    Raises:
        TypeError: ``lm_head`` is not a plain ``nn.Linear`` (e.g. wrapped with LoRA itself),
            whose rows the numeric head could not slice faithfully.
    """
    model = extract_model_from_parallel(model)
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    backbone = getattr(base, base.base_model_prefix)
    head = base.get_output_embeddings()
    if type(head) is not nn.Linear:
        raise TypeError(
            f"numeric head needs lm_head to be a plain nn.Linear, got {type(head).__name__} "
            "(LoRA on lm_head is not supported; use model.head=full)"
        )
    return backbone, head


def allowed_logits(hidden: torch.Tensor, head: nn.Linear, allowed: torch.Tensor,
                   softcap: float | None = None) -> torch.Tensor:
    """``hidden[..., D] @ W[allowed].T + b[allowed] -> [..., K]``.

    The rows are gathered inside the forward pass, so a trainable bias receives gradients
    (zero outside ``allowed``) and the frozen tied weight stays frozen. The K logits are
    computed in float32 even under bf16 autocast or with bf16 weights (K is tiny, and logits
    that close to each other deserve the precision). ``softcap`` applies the model's final
    logit soft-capping (Gemma-2: ``cap * tanh(logits / cap)``), as its full head does.
    """
    with torch.autocast(hidden.device.type, enabled=False):
        weight = head.weight[allowed].float()  # (K, D)
        bias = head.bias[allowed].float() if head.bias is not None else None  # (K,)
        logits = F.linear(hidden.float(), weight, bias)
        return logits if not softcap else torch.tanh(logits / softcap) * softcap


def final_softcap(model: nn.Module) -> float | None:
    """The model's ``final_logit_softcapping`` (Gemma-2), or None."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return getattr(base.config, "final_logit_softcapping", None)


def _allowed_tensor(allowed_ids: Sequence[int], device: torch.device) -> torch.Tensor:
    if len(allowed_ids) == 0:
        raise ValueError("numeric head: allowed_ids is empty")
    return torch.as_tensor(tuple(allowed_ids), dtype=torch.long, device=device)


@torch.compiler.disable  # its data-dependent check would break a compiled graph, with a warning
def _local_targets(targets: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Map vocabulary ids [N] to positions in ``allowed`` [N]; raise on any id outside it."""
    hits = targets.unsqueeze(-1) == allowed  # (N, K)
    found = hits.any(-1)
    if not bool(found.all()):
        bad = int(targets[~found][0])
        raise ValueError(
            f"numeric head: label id {bad} is not among the allowed ids {allowed.tolist()}; "
            "training targets must be LLMTIME characters (or -100), or use model.head=full"
        )
    return hits.to(torch.long).argmax(-1)


def numeric_head_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    allowed_ids: Sequence[int],
) -> torch.Tensor:
    """Causal-LM cross-entropy over the allowed ids only (softmax renormalised over them).

    Same shift and reduction as HF's causal LM loss: position t predicts ``labels[:, t + 1]``,
    labels equal to -100 are skipped, the mean runs over the remaining tokens (NaN if none).
    Logits are only formed for positions that carry a label: at most [B * T, K], never
    [B, T, V].

    Args:
        model: ``PeftModel`` or causal LM whose backbone and ``lm_head`` are used.
        input_ids: (B, T) token ids.
        attention_mask: (B, T) 1 for real tokens, 0 for padding, or None.
        labels: (B, T) target ids (usually ``input_ids``) with -100 where ignored.
        allowed_ids: the K vocabulary ids the head scores (``LLMTimeFormat.head_ids()``).

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: a non-ignored label is not in ``allowed_ids`` (a training-data error).
        TypeError: ``model`` is wrapped by DistributedDataParallel: running its backbone
            directly would skip DDP's forward and with it the gradient averaging; wrap the
            loss instead (``lora_forecast.training.distributed.LossModule``).
    """
    if isinstance(model, DistributedDataParallel):
        raise TypeError("numeric_head_loss: got a DDP-wrapped model, whose gradients would not "
                        "be averaged; let DDP wrap training.distributed.LossModule instead")
    backbone, head = backbone_and_head(model)
    allowed = _allowed_tensor(allowed_ids, input_ids.device)
    targets = labels[:, 1:]  # (B, T-1): position t predicts token t+1
    keep = targets != IGNORE_INDEX  # (B, T-1)
    local = _local_targets(targets[keep], allowed)  # (N,)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    scored = hidden[:, :-1][keep]  # (N, D)
    logits = allowed_logits(scored, head, allowed, final_softcap(model))  # (N, K) float32
    return F.cross_entropy(logits, local)


def full_head_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
) -> torch.Tensor:
    """The plain HF path: cross-entropy over the whole vocabulary (``model(..., labels).loss``)."""
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def _full(allowed_ids: Sequence[int]) -> HeadLoss:
    return full_head_loss


def _numeric(allowed_ids: Sequence[int]) -> HeadLoss:
    return partial(numeric_head_loss, allowed_ids=tuple(allowed_ids))


# model.head -> factory(allowed_ids) -> HeadLoss
HEAD_LOSSES: dict[str, Callable[[Sequence[int]], HeadLoss]] = {
    "full": _full,
    "numeric": _numeric,
}


def loss_fn_for(head: str, allowed_ids: Sequence[int]) -> HeadLoss:
    """The training loss for ``model.head`` (``full`` or ``numeric``), ready to call.

    Raises:
        ValueError: ``head`` is not registered in :data:`HEAD_LOSSES` (lists what is).
    """
    if head not in HEAD_LOSSES:
        raise ValueError(f"model.head: must be one of {sorted(HEAD_LOSSES)}, got {head!r}")
    return HEAD_LOSSES[head](allowed_ids)


def numeric_logits_fn(model: nn.Module, allowed_ids: Sequence[int]) -> LogitsFn:
    """A decoding :data:`LogitsFn` that scores only ``allowed_ids`` at the last ``keep``
    positions.

    The backbone runs with ``use_cache=True`` on the given cache and explicit position ids; the
    last position's K logits are scattered into a [B, V_full] row filled with ``-inf`` (one
    position per call, so cheap), keeping full-vocabulary id space for grammar processors.
    The logits are float32 whatever the model's dtype. Callers should run it under
    ``torch.inference_mode()``.
    """
    backbone, head = backbone_and_head(model)
    allowed = _allowed_tensor(allowed_ids, head.weight.device)
    softcap = final_softcap(model)

    def logits_fn(
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any,
        keep: int = 1,
    ) -> tuple[torch.Tensor, Any]:
        out = backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **{CACHE_ARG: cache},
        )
        hidden = out.last_hidden_state
        last = hidden[:, -1] if keep == 1 else hidden[:, -keep:]  # (B, D) or (B, keep, D)
        small = allowed_logits(last, head, allowed, softcap)  # (B, [keep,] K)
        full = small.new_full((*small.shape[:-1], head.out_features), float("-inf"))
        full[..., allowed] = small  # (B, [keep,] V)
        return full, getattr(out, CACHE_ARG)

    return logits_fn


# model.head -> decoding LogitsFn (same grammar, same greedy outputs; numeric is cheaper)
HEAD_LOGITS: dict[str, Callable[[nn.Module, Sequence[int]], LogitsFn]] = {
    "full": lambda model, allowed_ids: full_head_logits_fn(model),
    "numeric": numeric_logits_fn,
}


def logits_fn_for(head: str, model: nn.Module, allowed_ids: Sequence[int]) -> LogitsFn:
    """The decoding logits function for ``model.head`` (see :data:`HEAD_LOGITS`)."""
    if head not in HEAD_LOGITS:
        raise ValueError(f"model.head: must be one of {sorted(HEAD_LOGITS)}, got {head!r}")
    return HEAD_LOGITS[head](model, allowed_ids)
