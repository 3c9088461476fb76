"""One reader for every input file: the suffix picks HDF5 (SPEC layout) or a table."""

from __future__ import annotations

from pathlib import Path

from lora_forecast.config import DataConfig
from lora_forecast.data.filetypes import file_kind, suffixes_of
from lora_forecast.data.series import SeriesSet, read_hdf5_series
from lora_forecast.data.tabular import read_table
from lora_forecast.errors import DataFormatError

__all__ = ["read_series"]


def read_series(path: str | Path, cfg: DataConfig) -> SeriesSet:
    """Read ``path`` (``.h5``/``.hdf5``, ``.csv``, ``.parquet``) into a :class:`SeriesSet`.

    Args:
        path: the input file.
        cfg: ``data.*`` settings (table columns, layout, missing-value policy, and
            ``data.signed``: whether negative values are admitted).

    Raises:
        DataFormatError: one line naming the file (and row, series or column).
    """
    kind = file_kind(path)
    if kind == "hdf5":  # populations (SPEC): non-negative unless declared signed
        return read_hdf5_series(path, non_negative=cfg.signed is not True)
    if kind is not None:
        return read_table(path, cfg)
    suffix = Path(path).suffix.lower()
    raise DataFormatError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                          f"use {', '.join(suffixes_of('hdf5', 'csv', 'parquet'))}")
