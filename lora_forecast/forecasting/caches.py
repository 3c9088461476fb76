"""Row- and column-wise surgery on the opaque KV cache of a :data:`~.decoding.LogitsFn`.

Decoding keeps a batch's cache in whatever the model call returns: a transformers ``Cache``
(``DynamicCache`` in transformers 5: a list of ``layers`` with ``keys``/``values``
``[B, heads, S, head_dim]``) or, for injected calls, tensors (batch first), tuples/lists of
them, ``None`` or plain numbers (a step counter). These helpers repeat, join and select batch
rows, and drop trailing columns, for every one of those forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def repeat_rows(cache: Any, repeats: int) -> Any:
    """``cache`` with each batch row repeated ``repeats`` times in place (repeat_interleave).

    A transformers ``Cache`` (``DynamicCache`` in transformers 5) has
    ``batch_repeat_interleave``, which repeats every layer's keys/values along dim 0. Other
    opaque caches of injected :data:`LogitsFn` s may be tensors (batch first) or tuples/lists of
    them; ``None`` and plain numbers (a step counter) carry no batch dimension.
    """
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    if isinstance(cache, torch.Tensor):
        return cache.repeat_interleave(repeats, dim=0)
    if isinstance(cache, (tuple, list)):
        return type(cache)(repeat_rows(item, repeats) for item in cache)
    if cache is None or isinstance(cache, (int, float)):
        return cache
    raise TypeError(f"cannot repeat the rows of a {type(cache).__name__} cache")


def concat_rows(caches: Sequence[Any]) -> Any:
    """The caches of consecutive row chunks (equal widths) joined into one, batch first.

    A transformers ``Cache`` keeps the first chunk's object (and with it each layer's type,
    e.g. sliding-window layers) and concatenates every layer's keys and values along dim 0,
    as its own ``batch_repeat_interleave`` rewrites them. Other opaque caches may be tensors
    (batch first), tuples/lists of them, ``None`` or plain numbers (see :func:`repeat_rows`).
    """
    first = caches[0]
    if len(caches) == 1:
        return first
    if hasattr(first, "layers"):
        for i, layer in enumerate(first.layers):
            layer.keys = torch.cat([c.layers[i].keys for c in caches], dim=0)
            layer.values = torch.cat([c.layers[i].values for c in caches], dim=0)
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(list(caches), dim=0)
    if isinstance(first, (tuple, list)):
        return type(first)(concat_rows(items) for items in zip(*caches, strict=True))
    if first is None or isinstance(first, (int, float)):
        return first
    raise TypeError(f"cannot join the rows of {type(first).__name__} caches")


def select_rows(cache: Any, index: torch.Tensor) -> Any:
    """``cache`` restricted to the batch rows ``index`` (in that order): finished rows leave.

    A transformers ``Cache`` is changed in place, layer by layer (as its own
    ``batch_select_indices`` does); tensors are indexed on dim 0.
    """
    if hasattr(cache, "layers"):
        for layer in cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[index.to(layer.keys.device)]
                layer.values = layer.values[index.to(layer.values.device)]
        return cache
    if isinstance(cache, torch.Tensor):
        return cache[index.to(cache.device)]
    if isinstance(cache, (tuple, list)):
        return type(cache)(select_rows(item, index) for item in cache)
    if cache is None or isinstance(cache, (int, float)):
        return cache
    raise TypeError(f"cannot select rows of a {type(cache).__name__} cache")


def crop_columns(cache: Any, width: int, total: int) -> bool:
    """Drop ``cache``'s positions from ``width`` on, in place, when every layer holds all
    ``total`` of them; returns whether it did (the attention mask must then lose them too).

    Drafted tokens the model rejected sit at the end of the cache; once no row keeps any of
    them they can go. Sliding-window layers (which keep a count of their own) and other
    cache forms keep them: the attention mask already hides them, so cropping only saves
    memory and work, it never changes a logit.
    """
    layers = getattr(cache, "layers", None)
    if not layers or any(getattr(layer, "keys", None) is None or getattr(layer, "is_sliding",
                                                                          False)
                         or layer.keys.shape[-2] != total for layer in layers):
        return False
    for layer in layers:
        layer.keys = layer.keys[..., :width, :]
        layer.values = layer.values[..., :width, :]
    return True
