"""The ragged dataset every data source is read into: series of different lengths, one id each.

HDF5 files (SPEC layout, all series the same length) and tables (CSV/Parquet, any lengths) both
become a :class:`SeriesSet`, so splits, windows, evaluation and forecasting see one structure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lora_forecast.data.loader import load_trajectories

__all__ = ["SeriesSet", "from_arrays", "read_hdf5_series"]


@dataclass(frozen=True)
class SeriesSet:
    """Ragged multivariate series.

    Attributes:
        ids: one id per series (strings, unique).
        values: per series a float64 ``[T_i, V]`` array (finite).
        times: per series its ``[T_i]`` time values (numbers or datetimes), strictly increasing.
        variables: the ``V`` variable names, shared by every series.
        source: the file they were read from (for messages).
        time_name: the input's time column (``time`` for HDF5, whose dataset is so named).
        id_name: the input's id column; None where the file has none: HDF5 systems are
            numbered, a wide table's one series takes its file's stem (``by_file``).
        by_file: the series are named by their file, not by an id in it (a wide table).
    """

    ids: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    times: tuple[np.ndarray, ...]
    variables: tuple[str, ...]
    source: str = ""
    time_name: str = "time"
    id_name: str | None = None
    by_file: bool = False

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.values) == len(self.times):
            raise ValueError("ids, values and times must have one entry per series")
        for v, t in zip(self.values, self.times, strict=True):
            if v.ndim != 2 or v.shape[1] != len(self.variables) or len(t) != len(v):
                raise ValueError(f"series values {v.shape} / times {t.shape} do not match "
                                 f"{len(self.variables)} variables")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_vars(self) -> int:
        return len(self.variables)

    @property
    def lengths(self) -> np.ndarray:
        """``[S]`` steps per series."""
        return np.array([len(v) for v in self.values], dtype=np.int64)

    def subset(self, indices: np.ndarray | list[int]) -> SeriesSet:
        """The series at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return replace(self, ids=tuple(self.ids[i] for i in idx),
                       values=tuple(self.values[i] for i in idx),
                       times=tuple(self.times[i] for i in idx))

    def label(self, i: int) -> str:
        """How figures name series ``i``: ``series <id>`` for a table with an id column,
        ``series from <file>`` for a wide table's one series, ``system <id>`` for HDF5."""
        if self.by_file:
            return f"series from {Path(self.source).name}"
        return f"{'series' if self.id_name is not None else 'system'} {self.ids[i]}"

    def uniform(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(trajectories [S, T, V], time [T])`` when every series shares one time axis."""
        first = self.times[0]
        if all(len(t) == len(first) and np.array_equal(t, first) for t in self.times):
            return np.stack(self.values), first
        return None


def from_arrays(trajectories: np.ndarray, time: np.ndarray, source: str = "",
                variables: tuple[str, ...] | None = None) -> SeriesSet:
    """Equal-length ``[S, T, V]`` series on one ``[T]`` time axis as a :class:`SeriesSet`
    (ids ``"0".."S-1"``, variables ``var0..`` unless named)."""
    traj = np.asarray(trajectories, dtype=np.float64)
    names = variables or tuple(f"var{j}" for j in range(traj.shape[2]))
    return SeriesSet(tuple(str(i) for i in range(len(traj))), tuple(traj),
                     tuple(np.asarray(time) for _ in range(len(traj))), tuple(names), source)


def read_hdf5_series(path: str | Path, non_negative: bool = True) -> SeriesSet:
    """Today's HDF5 layout (validated by :func:`load_trajectories`, negatives refused unless
    ``non_negative`` is False) as a :class:`SeriesSet`."""
    trajectories, time = load_trajectories(path, non_negative)
    return from_arrays(trajectories, time, str(path))
