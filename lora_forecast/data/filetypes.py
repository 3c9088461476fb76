"""Which reader a file's suffix picks: the one table of suffixes every reader and writer uses."""

from __future__ import annotations

from pathlib import Path

__all__ = ["FILE_KINDS", "file_kind", "suffixes_of"]

# suffix (lower case) -> kind: "hdf5" (the SPEC's trajectories layout) or a table format
FILE_KINDS: dict[str, str] = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def file_kind(path: str | Path) -> str | None:
    """``"hdf5"``, ``"csv"``, ``"parquet"``, or None for a suffix no reader knows."""
    return FILE_KINDS.get(Path(path).suffix.lower())


def suffixes_of(*kinds: str) -> tuple[str, ...]:
    """The suffixes of ``kinds`` (for messages and ``in`` checks), in table order."""
    return tuple(suffix for suffix, kind in FILE_KINDS.items() if kind in kinds)
