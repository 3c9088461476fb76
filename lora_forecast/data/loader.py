"""Read and validate a trajectories file (HDF5 format of SPEC.md).

Format: dataset ``trajectories`` [S systems, T steps, V variables] (float32 in the reference
file) and dataset ``time`` [T] (float64). Every problem is reported as a one-line
:class:`DataFormatError` naming the file and the HDF5 key, because users bring their own file
and the first thing they need to know is which key of which file is wrong.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from lora_forecast.errors import DataFormatError

TRAJECTORIES_KEY = "trajectories"
TIME_KEY = "time"


def _fail(path: str | Path, message: str) -> DataFormatError:
    return DataFormatError(f"{path}: {message}")


def _open(path: str | Path) -> h5py.File:
    """Open ``path`` read-only, turning 'missing' and 'not HDF5' into DataFormatError."""
    p = Path(path)
    if not p.exists():
        raise _fail(path, f"file not found; pass data.path=/path/to/file.h5, or use "
                          f"data=synthetic (generated, no file needed), or write it with "
                          f"`python -m lora_forecast.data generate --out {path}`")
    if not p.is_file():
        raise _fail(path, "not a file")
    if not h5py.is_hdf5(p):
        raise _fail(path, "not an HDF5 file")
    try:
        return h5py.File(p, "r")
    except OSError as exc:  # truncated or unreadable despite a valid signature
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(path, f"cannot read HDF5 file ({first_line})") from exc


def _dataset(handle: h5py.File, path: str | Path, key: str) -> h5py.Dataset:
    if key not in handle:
        raise _fail(path, f"missing dataset {key!r} (found: {sorted(handle.keys())})")
    node = handle[key]
    if not isinstance(node, h5py.Dataset):
        raise _fail(path, f"key {key!r} is a group, not a dataset")
    if node.dtype.kind not in "iuf":
        raise _fail(path, f"key {key!r} must hold numbers, got dtype {node.dtype}")
    return node


def _check_shapes(
    path: str | Path, traj_shape: tuple[int, ...], time_shape: tuple[int, ...]
) -> None:
    if len(traj_shape) != 3:
        raise _fail(path, f"key {TRAJECTORIES_KEY!r} must be 3-D [systems, steps, variables], "
                          f"got shape {traj_shape}")
    if min(traj_shape) < 1:
        raise _fail(path, f"key {TRAJECTORIES_KEY!r} must have >= 1 system, step and variable, "
                          f"got shape {traj_shape}")
    if len(time_shape) != 1:
        raise _fail(path, f"key {TIME_KEY!r} must be 1-D [steps], got shape {time_shape}")
    if time_shape[0] != traj_shape[1]:
        raise _fail(path, f"key {TIME_KEY!r} has {time_shape[0]} entries but "
                          f"{TRAJECTORIES_KEY!r} has {traj_shape[1]} time steps")


def read_shape(path: str | Path) -> tuple[int, int, int]:
    """Shape of the trajectories without reading the data (for the budget guard).

    Validates existence, HDF5 signature, both keys, ranks and the time length; values are not
    read, so NaN/negative checks happen only in :func:`load_trajectories`.

    Args:
        path: HDF5 file in the SPEC format.

    Returns:
        ``(systems, steps, variables)``.

    Raises:
        DataFormatError: one line naming the file and the key.
    """
    with _open(path) as handle:
        traj = _dataset(handle, path, TRAJECTORIES_KEY)
        time = _dataset(handle, path, TIME_KEY)
        _check_shapes(path, traj.shape, time.shape)
        n_systems, n_steps, n_vars = traj.shape
    return int(n_systems), int(n_steps), int(n_vars)


def _where(index: np.ndarray) -> str:
    """``system s, step t, variable v`` of a trajectories index (``step t`` of a time index)."""
    names = ("system", "step", "variable") if len(index) == 3 else ("step",)
    return ", ".join(f"{name} {int(i)}" for name, i in zip(names, index, strict=True))


def _check_values(path: str | Path, trajectories: np.ndarray, time: np.ndarray,
                  non_negative: bool = True) -> None:
    for key, values in ((TRAJECTORIES_KEY, trajectories), (TIME_KEY, time)):
        if not np.isfinite(values).all():
            first = np.argwhere(~np.isfinite(values))[0]
            raise _fail(path, f"key {key!r} holds NaN or inf values (first: "
                              f"{values[tuple(first)]} at {_where(first)})")
    if non_negative and (trajectories < 0).any():
        first = np.argwhere(trajectories < 0)[0]
        raise _fail(path, f"key {TRAJECTORIES_KEY!r} holds negative populations (first at "
                          f"{_where(first)}); data.signed=true admits signed series")
    if time.size > 1 and not (np.diff(time) > 0).all():
        raise _fail(path, f"key {TIME_KEY!r} must be strictly increasing")


def load_trajectories(path: str | Path,
                      non_negative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate a trajectories file.

    Args:
        path: HDF5 file with datasets ``trajectories`` [S, T, V] and ``time`` [T].
        non_negative: refuse negative values (the SPEC file holds populations; False only
            for series declared signed, ``data.signed=true``).

    Returns:
        ``(trajectories, time)``: float64 arrays of shape [S, T, V] and [T]. Populations are
        finite (and >= 0 when ``non_negative``), time is finite and strictly increasing.

    Raises:
        DataFormatError: one line naming the file and the key (missing file, not HDF5, missing
            key, wrong rank/shape, mismatched time length, NaN/inf, negative values).
    """
    with _open(path) as handle:
        traj_ds = _dataset(handle, path, TRAJECTORIES_KEY)
        time_ds = _dataset(handle, path, TIME_KEY)
        _check_shapes(path, traj_ds.shape, time_ds.shape)
        trajectories = np.asarray(traj_ds[()], dtype=np.float64)  # [S, T, V]
        time = np.asarray(time_ds[()], dtype=np.float64)  # [T]
    _check_values(path, trajectories, time, non_negative)
    return trajectories, time
