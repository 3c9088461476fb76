"""LLMTIME series -> fixed-length token windows for causal-LM training and validation.

Series arrive as token ids with the offsets of their time steps
(:meth:`lora_forecast.llmtime.LLMTimeFormat.encode_series`: one token per LLMTIME symbol), so
this module is pure window arithmetic and knows no token id or separator.

Window rule (for one series of n tokens, context C, stride s):
  * candidates are the grid positions 0, s, 2s, ... up to the first one whose window reaches
    the end (``k*s + C >= n``); there are ``1 + max(0, ceil((n - C) / s))`` of them;
  * each candidate snaps FORWARD to the next time-step start, so no window begins mid-number
    (a candidate past the last step start snaps back to it, so the end of the series is always
    in a window); repeated starts are kept once, and we stop after the first window that
    reaches the end of the series;
  * every window holds C tokens; the last may be shorter and is right-padded (attention 0,
    label -100). A series shorter than C gives one padded window.
Training uses s = C // 2, so every token is covered whenever a step is at most C/2 tokens.
Validation uses s = C (no overlap); snapping may then skip the tail of at most one time step
between consecutive windows (< 1 step per window, about 2% of tokens at C=512).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lora_forecast.llmtime import Series

IGNORE_INDEX = -100  # label value ignored by HF causal-LM losses


def _check_window_args(context_tokens: int, stride: int) -> None:
    if context_tokens < 1:
        raise ValueError(f"context_tokens must be >= 1, got {context_tokens}")
    if not 1 <= stride <= context_tokens:
        raise ValueError(f"stride must be in 1..context_tokens ({context_tokens}), got {stride}")


def count_windows(series_len_tokens: Sequence[int], context_tokens: int, stride: int) -> int:
    """Grid-candidate count: ``sum(1 + max(0, ceil((n - C) / s)))`` over non-empty series.

    Pure arithmetic on lengths, for the budget guard before any data is tokenised. It is an
    upper bound on ``len(make_windows(...))`` and equal to it unless snapping makes windows
    collide or reach the series end early (only within one step of the end, or with a stride
    shorter than a step).
    """
    _check_window_args(context_tokens, stride)
    return sum(1 + max(0, math.ceil((n - context_tokens) / stride)) for n in series_len_tokens
               if n > 0)


def window_starts(n_tokens: int, step_starts: np.ndarray, context_tokens: int, stride: int
                  ) -> np.ndarray:
    """Start offsets of the windows of one series (rule in the module docstring)."""
    if n_tokens == 0:
        return np.zeros(0, dtype=np.int64)
    n_candidates = count_windows([n_tokens], context_tokens, stride)
    candidates = np.arange(n_candidates, dtype=np.int64) * stride
    idx = np.searchsorted(step_starts, candidates, side="left")  # first step start >= candidate
    idx = np.minimum(idx, len(step_starts) - 1)  # past the last step start: snap back to it
    snapped = np.unique(np.asarray(step_starts, dtype=np.int64)[idx])
    reaches_end = np.flatnonzero(snapped + context_tokens >= n_tokens)
    return snapped[: reaches_end[0] + 1] if reaches_end.size else snapped


class TokenWindows(Dataset):
    """Fixed-length token windows: item i is a dict of LongTensor[C] ``input_ids``,
    ``attention_mask`` (0 on padding) and ``labels`` (input ids, -100 on padding; the model
    shifts labels internally as HF causal LMs do)."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(f"need matching [N, C] tensors, got {tuple(input_ids.shape)} and "
                             f"{tuple(attention_mask.shape)}")
        self.input_ids = input_ids.long()  # (N, C)
        self.attention_mask = attention_mask.long()  # (N, C)
        self.labels = self.input_ids.masked_fill(self.attention_mask == 0, IGNORE_INDEX)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index],
                "labels": self.labels[index]}

    @property
    def context_tokens(self) -> int:
        """Window length C."""
        return int(self.input_ids.shape[1])

    @property
    def n_real_tokens(self) -> int:
        """Non-padding tokens over all windows."""
        return int(self.attention_mask.sum())


def make_windows(series: Sequence[Series], context_tokens: int, stride: int, pad_id: int
                 ) -> TokenWindows:
    """Cut every series into windows of ``context_tokens`` tokens starting at step starts.

    Args:
        series: ``(ids, step_starts)`` per series (``LLMTimeFormat.encode_series``).
        context_tokens: window length C.
        stride: grid spacing of candidate starts, 1..C (training C // 2, validation C).
        pad_id: id written into padding positions (masked anyway).

    Returns:
        A :class:`TokenWindows` dataset, windows in series order.
    """
    _check_window_args(context_tokens, stride)
    rows: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for ids, step_starts in series:
        for start in window_starts(len(ids), step_starts, context_tokens, stride):
            chunk = ids[start:start + context_tokens]
            row = np.full(context_tokens, pad_id, dtype=np.int64)
            row[: len(chunk)] = chunk
            mask = np.zeros(context_tokens, dtype=np.int64)
            mask[: len(chunk)] = 1
            rows.append(row)
            masks.append(mask)
    shape = (len(rows), context_tokens)
    input_ids = np.stack(rows) if rows else np.zeros(shape, dtype=np.int64)
    attention = np.stack(masks) if masks else np.zeros(shape, dtype=np.int64)
    return TokenWindows(torch.from_numpy(input_ids), torch.from_numpy(attention))


def train_windows(series: Sequence[Series], context_tokens: int, pad_id: int) -> TokenWindows:
    """Training windows: stride C // 2 (half overlap), as in the reference study."""
    return make_windows(series, context_tokens, max(1, context_tokens // 2), pad_id)


def val_windows(series: Sequence[Series], context_tokens: int, pad_id: int) -> TokenWindows:
    """Validation windows: stride C (no overlap), so each token is scored about once."""
    return make_windows(series, context_tokens, context_tokens, pad_id)
