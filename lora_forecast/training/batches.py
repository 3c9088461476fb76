"""Deterministic, resumable batch order: batch ``i`` is a pure function of (seed, i).

The loop builds it with ``batch_size x grad_accum`` and indexes it by optimiser step, then
splits each draw into micro-batches, so accumulation sees exactly the windows of one larger
batch. Each epoch is a fresh permutation drawn from ``seed + epoch``, so the data-loader
position a checkpoint needs is one integer (the step), and a resumed run sees exactly the
batches an uninterrupted run would have seen. Data-parallel ranks take interleaved batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class BatchOrder:
    """Indices of batch ``i`` over a dataset of ``n`` windows."""

    n: int
    batch_size: int
    seed: int
    world_size: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("no training windows: the training split produced no text")

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def indices(self, batch: int) -> np.ndarray:
        """Window indices of this rank's batch number ``batch`` (0-based, global)."""
        global_index = batch * self.world_size + self.rank
        epoch, position = divmod(global_index, self.batches_per_epoch)
        permutation = np.random.default_rng(self.seed + epoch).permutation(self.n)
        return permutation[position * self.batch_size : (position + 1) * self.batch_size]


def collate(dataset: Dataset, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    items = [dataset[int(i)] for i in indices]
    return {key: torch.stack([item[key] for item in items]).to(device) for key in items[0]}


def label_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that carry a loss: shifted labels that are not padding (-100)."""
    return int((batch["labels"][:, 1:] != -100).sum())
