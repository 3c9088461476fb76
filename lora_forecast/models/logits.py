"""The model call every forecast makes: one signature, whatever the head.

A :data:`LogitsFn` maps a batch's new tokens (and the KV cache of the ones before) to the
next-token logits of each row's last position and the cache for the next call. The decode loop
(:mod:`lora_forecast.forecasting.decoding`) is written against it; the full head is here, the
numeric head in :mod:`lora_forecast.models.numeric_head`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import transformers
from packaging.version import Version

__all__ = ["CACHE_ARG", "LogitsFn", "full_head_logits_fn"]

# (input_ids [B, T], attention_mask [B, T_past + T], position_ids [B, T], cache | None)
#   -> (logits of the last position [B, V], the cache for the next call); draft-and-verify
#   decoding also passes ``keep=n`` (n > 1) and reads the last n positions' logits [B, n, V]
LogitsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]

# transformers 5.24 renamed the KV-cache argument and output field ``past_key_values`` to
# ``cache`` (the old name still works there, with a FutureWarning); older 5.x know only the old
# name. Pass and read it as ``**{CACHE_ARG: cache}`` / ``getattr(out, CACHE_ARG)``.
CACHE_ARG = ("cache" if Version(transformers.__version__) >= Version("5.24")
             else "past_key_values")


def full_head_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """The default :data:`LogitsFn`: a causal LM's full vocabulary head, KV-cached.

    A ``None`` cache on the prefill lets the model create its ``DynamicCache``;
    ``logits_to_keep`` computes the head for the last ``keep`` positions only.
    """

    def logits_fn(input_ids, attention_mask, position_ids, cache, keep: int = 1):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=keep, **{CACHE_ARG: cache})
        logits = out.logits[:, -1, :] if keep == 1 else out.logits[:, -keep:, :]
        return logits, getattr(out, CACHE_ARG)

    return logits_fn
