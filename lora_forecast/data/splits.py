"""Train / validation / test split over *systems* (never over time within one system), so test
forecasts are made on trajectories the model never saw during training or model selection."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lora_forecast.errors import DataFormatError

SPLIT_NAMES = ("train", "val", "test")


def _frozen_indices(values: Any) -> np.ndarray:
    arr = np.array(values, dtype=np.int64).reshape(-1)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class SystemSplit:
    """Sorted, disjoint system indices of the three splits (read-only int64 arrays)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            arr = _frozen_indices(getattr(self, name))
            if arr.size and (arr.min() < 0 or (np.diff(arr) <= 0).any()):
                raise ValueError(f"split {name!r} must be sorted, unique, non-negative indices")
            object.__setattr__(self, name, arr)
        joined = np.concatenate([self.train, self.val, self.test])
        if np.unique(joined).size != joined.size:
            raise ValueError("splits train/val/test must be disjoint")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SystemSplit):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in SPLIT_NAMES)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    @property
    def n_systems(self) -> int:
        """Total number of systems across the three splits."""
        return int(self.train.size + self.val.size + self.test.size)

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-ready ``{"train": [...], "val": [...], "test": [...]}``."""
        return {name: [int(i) for i in getattr(self, name)] for name in SPLIT_NAMES}

    def save(self, path: str | Path, ids: tuple[str, ...] | None = None) -> Path:
        """Write the split as JSON (creates parent folders), so a run's test set is on record;
        with ``ids`` (one per series) also ``"ids": {"train": [...], ...}`` by series id."""
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = self.to_dict()
        if ids is not None:
            payload["ids"] = {name: [ids[i] for i in getattr(self, name)] for name in SPLIT_NAMES}
        dest.write_text(json.dumps(payload) + "\n")
        return dest

    @classmethod
    def load(cls, path: str | Path) -> SystemSplit:
        """Read a split written by :meth:`save`.

        Raises:
            DataFormatError: missing file, invalid JSON, a missing key or invalid indices.
        """
        src = Path(path)
        if not src.is_file():
            raise DataFormatError(f"{path}: file not found")
        try:
            data = json.loads(src.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}: not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise DataFormatError(f"{path}: expected a JSON object with keys {list(SPLIT_NAMES)}")
        for name in SPLIT_NAMES:
            if name not in data:
                raise DataFormatError(f"{path}: missing key {name!r} (found: {sorted(data)})")
        try:
            return cls(**{name: data[name] for name in SPLIT_NAMES})
        except (TypeError, ValueError) as exc:
            raise DataFormatError(f"{path}: {exc}") from exc


def _split_sizes(n_systems: int, train: float, val: float, test: float) -> tuple[int, int, int]:
    """Sizes (train, val, test): val and test round half up, train takes the remainder.

    A split with a positive fraction gets at least one system (when n_systems >= 3); if that
    leaves train empty, the larger of val/test gives one back.
    """
    def size(fraction: float) -> int:
        if fraction <= 0:
            return 0
        return max(1, math.floor(n_systems * fraction + 0.5))

    n_val, n_test = size(val), size(test)
    while n_systems - n_val - n_test < (1 if train > 0 else 0) and n_val + n_test > 0:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_systems - n_val - n_test, n_val, n_test


def split_systems(
    n_systems: int, train: float = 0.8, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> SystemSplit:
    """Seeded random split of ``range(n_systems)`` into train/val/test.

    Rounding: ``n_val = round_half_up(n * val)`` and ``n_test = round_half_up(n * test)``, each
    at least 1 when its fraction is > 0; train takes the rest (so it absorbs rounding). With
    1000 systems and 0.8/0.1/0.1 that is exactly 800/100/100; with 3 systems 1/1/1.

    Example:
        >>> s = split_systems(10, seed=0)
        >>> (len(s.train), len(s.val), len(s.test))
        (8, 1, 1)

    Args:
        n_systems: number of systems (>= 3 when all three fractions are > 0).
        train, val, test: fractions, >= 0, summing to 1.
        seed: permutation seed.

    Returns:
        A :class:`SystemSplit` whose three sorted index arrays partition ``range(n_systems)``.
    """
    fractions = (train, val, test)
    if min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    needed = sum(f > 0 for f in fractions)
    if n_systems < needed:
        raise ValueError(f"need at least {needed} systems for {needed} non-empty splits, "
                         f"got {n_systems}")
    n_train, n_val, n_test = _split_sizes(n_systems, train, val, test)
    perm = np.random.default_rng(seed).permutation(n_systems)
    return SystemSplit(
        train=np.sort(perm[:n_train]),
        val=np.sort(perm[n_train:n_train + n_val]),
        test=np.sort(perm[n_train + n_val:]),
    )
