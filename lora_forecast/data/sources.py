"""One reader for every input file: the suffix picks HDF5 (SPEC layout) or a table."""

from __future__ import annotations

from pathlib import Path

from lora_forecast.config import DataConfig
from lora_forecast.data.series import SeriesSet, read_hdf5_series
from lora_forecast.data.tabular import TABLE_SUFFIXES, read_table
from lora_forecast.errors import DataFormatError

HDF5_SUFFIXES = (".h5", ".hdf5")

__all__ = ["HDF5_SUFFIXES", "read_series"]


def read_series(path: str | Path, cfg: DataConfig) -> SeriesSet:
    """Read ``path`` (``.h5``/``.hdf5``, ``.csv``, ``.parquet``) into a :class:`SeriesSet`.

    Args:
        path: the input file.
        cfg: ``data.*`` settings (table columns, layout, missing-value policy, and
            ``data.signed``: whether negative values are admitted).

    Raises:
        DataFormatError: one line naming the file (and row, series or column).
    """
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES:  # populations (SPEC): non-negative unless declared signed
        return read_hdf5_series(path, non_negative=cfg.signed is not True)
    if suffix in TABLE_SUFFIXES:
        return read_table(path, cfg)
    raise DataFormatError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                          f"use {', '.join(HDF5_SUFFIXES + TABLE_SUFFIXES)}")
