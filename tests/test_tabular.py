"""Tables (CSV/Parquet) in both layouts -> SeriesSet, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lora_forecast.config import DataConfig
from lora_forecast.data.series import from_arrays
from lora_forecast.data.sources import read_series
from lora_forecast.errors import DataFormatError


def cfg(**kw) -> DataConfig:
    return DataConfig(**kw)


def long_frame() -> pd.DataFrame:
    """Two series of different lengths (3 and 2 steps), variables a and b."""
    return pd.DataFrame({
        "series_id": ["s1", "s1", "s1", "s2", "s2"],
        "time": [0.0, 1.0, 2.0, 5.0, 7.0],
        "a": [1.0, 2.0, 3.0, 10.0, 20.0],
        "b": [0.5, 0.6, 0.7, 1.5, 2.5],
    })


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_columns_layout_is_ragged(tmp_path: Path, suffix: str) -> None:
    data = read_series(write(long_frame(), tmp_path / f"x{suffix}"), cfg())
    assert data.ids == ("s1", "s2") and data.variables == ("a", "b")
    assert data.lengths.tolist() == [3, 2]
    np.testing.assert_array_equal(data.values[1], [[10.0, 1.5], [20.0, 2.5]])
    np.testing.assert_array_equal(data.times[1], [5.0, 7.0])


def test_long_variable_value_rows_equal_columns_layout(tmp_path: Path) -> None:
    narrow = long_frame().melt(id_vars=["series_id", "time"], var_name="variable",
                               value_name="value").sample(frac=1.0, random_state=0)
    narrow = narrow.sort_values(["series_id", "time"], kind="stable")
    data = read_series(write(narrow, tmp_path / "n.csv"), cfg())
    ref = read_series(write(long_frame(), tmp_path / "w.csv"), cfg())
    assert data.ids == ref.ids and set(data.variables) == {"a", "b"}
    for got, want in zip(data.values, ref.values, strict=True):
        order = [data.variables.index(v) for v in ref.variables]
        np.testing.assert_array_equal(got[:, order], want)


def test_wide_one_series_per_file_and_named_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame({"year": [2000, 2001, 2002], "x": [1, 2, 3], "y": [4, 5, 6],
                          "note": ["a", "b", "c"]})
    data = read_series(write(frame, tmp_path / "farm.parquet"),
                       cfg(time_column="year", value_columns=["y"], layout="wide"))
    assert data.ids == ("farm",) and data.variables == ("y",)
    np.testing.assert_array_equal(data.values[0][:, 0], [4.0, 5.0, 6.0])


def test_dates_as_time(tmp_path: Path) -> None:
    frame = pd.DataFrame({"time": ["2024-01-01", "2024-01-02", "2024-01-04"], "v": [1, 2, 4]})
    data = read_series(write(frame, tmp_path / "d.csv"), cfg(missing="interpolate"))
    assert np.issubdtype(data.times[0].dtype, np.datetime64)


def test_interpolate_is_linear_in_time(tmp_path: Path) -> None:
    # times 0, 1, 4: the gap at t=1 between 0 (v=0) and 4 (v=8) is 2 when linear in time
    frame = pd.DataFrame({"time": [0.0, 1.0, 4.0], "v": [0.0, None, 8.0], "w": [None, 1, 1]})
    data = read_series(write(frame, tmp_path / "m.csv"), cfg(missing="interpolate"))
    np.testing.assert_allclose(data.values[0], [[0.0, 1.0], [2.0, 1.0], [8.0, 1.0]])


def test_hdf5_through_the_same_structure(tmp_path: Path) -> None:
    import h5py

    traj = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    with h5py.File(tmp_path / "t.h5", "w") as h:
        h["trajectories"], h["time"] = traj, np.arange(4.0)
    data = read_series(tmp_path / "t.h5", cfg())
    assert data.ids == ("0", "1", "2") and data.lengths.tolist() == [4, 4, 4]
    stacked, time = data.uniform()
    np.testing.assert_array_equal(stacked, traj)
    assert from_arrays(traj, np.arange(4.0)).n_vars == 2


BAD = [
    # (case, CSV text, config, expected fragments of the one-line message)
    ("nan", "series_id,time,a\ns1,0,1\ns1,1,\ns1,2,3\n", {},
     ["row 2", "series s1", "time 1", "column 'a'", "missing value"]),
    ("non-numeric", "series_id,time,a\ns1,0,1\ns1,1,abc\n", {},
     ["row 2", "column 'a'", "non-numeric", "'abc'"]),
    ("duplicate", "series_id,time,a\ns1,0,1\ns1,1,2\ns1,1,3\n", {},
     ["row 3", "series s1", "duplicate time 1"]),
    ("unsorted", "series_id,time,a\ns1,0,1\ns1,2,2\ns1,1,3\n", {},
     ["row 3", "series s1", "unsorted"]),
    ("empty-series", "series_id,time,a,b\ns1,0,1,2\ns2,0,,1\ns2,1,,2\n", {"missing": "interpolate"},
     ["series s2", "column 'a'", "empty"]),
    ("no-rows", "series_id,time,a\n", {}, ["no data rows"]),
    ("unknown-id", "id,time,a\n1,0,1\n", {"layout": "long"},
     ["column 'series_id' (data.id_column) not found", "columns: id, time, a"]),
    ("unknown-time", "series_id,t,a\n1,0,1\n", {}, ["column 'time' (data.time_column)"]),
    ("unknown-value", "series_id,time,a\n1,0,1\n", {"value_columns": ["b"]},
     ["column 'b' (data.value_columns) not found"]),
    ("bad-time", "series_id,time,a\n1,0,1\n1,yesterday?,2\n", {},
     ["row 2", "neither a number nor a date"]),
    ("missing-time", "series_id,time,a\n1,0,1\n1,,2\n", {}, ["row 2", "has no time"]),
]


@pytest.mark.parametrize("case,text,overrides,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_tables_are_one_line(tmp_path: Path, case, text, overrides, fragments) -> None:
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_series(path, cfg(**overrides))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, message


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="unsupported file type '.txt'"):
        read_series(tmp_path / "a.txt", cfg())
    with pytest.raises(DataFormatError, match="file not found"):
        read_series(tmp_path / "a.csv", cfg())
