"""SDPA attention whose multi-token cached queries attend to the KV heads without copying them.

With grouped-query attention (Qwen2.5-0.5B: 14 query heads share 2 key/value heads)
transformers' ``sdpa`` attention copies every cached key and value ``groups`` times
(``repeat_kv``) whenever a call carries several new tokens and a mask, which is exactly what
draft-and-verify decoding (:mod:`lora_forecast.forecasting.decoding`) and jump-forward feed:
at 10 rows, a 508-column cache and 8 new tokens one layer's attention took 11.1 ms that way
against 1.0 ms without the copies (this 2-core CPU, float32), a copy of the whole cache per
layer and call. For one new token transformers already avoids it (``pack_gqa``); here the same
idea covers several: the ``groups`` query heads of a KV head are folded into its query rows,

    query [B, H, q, d]  -> [B, H / groups, groups * q, d]
    mask  [B, 1, q, kv] -> [B, 1, groups * q, kv]

so each (query, key) dot product is the one ``repeat_kv`` would compute, with the mask's rows
repeated instead of the cache (``groups * q * kv`` booleans). It is registered with
transformers' own extension points (``AttentionInterface`` and, for the mask, sdpa's
``AttentionMaskInterface`` entry) under :data:`FOLDED_SDPA`; every other call (no cache, one
new token, no mask, no grouping, a position bias) is transformers' ``sdpa`` unchanged, so
training and prefill compute exactly what they did. ``model.attn_implementation=auto`` picks
it wherever transformers would pick ``sdpa`` (:func:`prefer_folded_sdpa`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

FOLDED_SDPA = "sdpa_folded_gqa"  # the registered name (model.attn_implementation)


def folded_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: torch.Tensor | None,
                          dropout: float = 0.0, scaling: float | None = None,
                          **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: ``query [B, H, q, d]``, ``key``/``value``
    ``[B, H_kv, kv, d]``, a ``[B, 1, q, kv]`` mask; returns ``[B, q, H, d]`` and no weights."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_length, dim = query.shape
    if (groups == 1 or q_length == 1 or q_length >= key.shape[2] or attention_mask is None
            or attention_mask.ndim != 4 or attention_mask.shape[1] != 1
            or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
            or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    folded = query.reshape(batch, heads // groups, groups * q_length, dim)
    mask = attention_mask.unsqueeze(2).expand(-1, -1, groups, -1, -1)
    mask = mask.reshape(attention_mask.shape[0], 1, groups * q_length, key.shape[2])
    out = F.scaled_dot_product_attention(folded, key, value, attn_mask=mask, dropout_p=dropout,
                                         scale=scaling)
    return out.reshape(batch, heads, q_length, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(FOLDED_SDPA, folded_sdpa_attention)
AttentionMaskInterface.register(FOLDED_SDPA, sdpa_mask)  # the same masks as sdpa


def prefer_folded_sdpa(model: PreTrainedModel) -> None:
    """Switch a model transformers set up with ``sdpa`` to :data:`FOLDED_SDPA` (the same
    attention, without the cache copies); leave any other implementation as it is."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(FOLDED_SDPA)


def attention_choices() -> tuple[str, ...]:
    """The values ``model.attn_implementation`` may take: ``auto``, ``eager`` and every
    attention transformers has registered (ours included)."""
    return ("auto", "eager", *sorted(ALL_ATTENTION_FUNCTIONS.valid_keys()))
