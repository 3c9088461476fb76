"""Loader validation (one-line errors naming file and key) and the system split."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from lora_forecast.data import SystemSplit, load_trajectories, read_shape, split_systems
from lora_forecast.errors import DataFormatError


def write_h5(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)
    return path


def good_arrays(s: int = 4, t: int = 6, v: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"trajectories": rng.uniform(0, 5, size=(s, t, v)).astype(np.float32),
            "time": np.linspace(0.0, 10.0, t)}


def test_valid_file_loads_as_float64(tmp_path: Path) -> None:
    arrays = good_arrays()
    path = write_h5(tmp_path / "ok.h5", **arrays)
    trajectories, time = load_trajectories(path)
    assert trajectories.dtype == np.float64 and time.dtype == np.float64
    assert trajectories.shape == (4, 6, 2) and time.shape == (6,)
    np.testing.assert_array_equal(trajectories, arrays["trajectories"].astype(np.float64))
    np.testing.assert_array_equal(time, arrays["time"])
    assert read_shape(path) == (4, 6, 2)


def with_value(key: str, index: tuple, value: float) -> dict[str, np.ndarray]:
    arrays = good_arrays()
    arrays[key] = arrays[key].copy()
    arrays[key][index] = value
    return arrays


BAD_FILES = [
    # (case id, datasets to write, key named in the message, message fragment)
    ("missing-time", {"trajectories": good_arrays()["trajectories"], "foo": np.zeros(3)},
     "time", "missing dataset 'time' (found: ['foo', 'trajectories'])"),
    ("missing-traj", {"time": np.arange(6.0)}, "trajectories", "missing dataset 'trajectories'"),
    ("traj-2d", {"trajectories": np.ones((4, 6)), "time": np.arange(6.0)},
     "trajectories", "must be 3-D"),
    ("traj-zero-vars", {"trajectories": np.ones((4, 6, 0)), "time": np.arange(6.0)},
     "trajectories", ">= 1 system, step and variable"),
    ("time-2d", {"trajectories": np.ones((4, 6, 2)), "time": np.ones((6, 1))},
     "time", "must be 1-D"),
    ("time-length", {"trajectories": np.ones((4, 6, 2)), "time": np.arange(5.0)},
     "time", "has 5 entries but 'trajectories' has 6 time steps"),
    ("traj-strings", {"trajectories": np.array([[[b"a"]]]), "time": np.arange(1.0)},
     "trajectories", "must hold numbers"),
]

BAD_VALUES = [
    ("traj-nan", with_value("trajectories", (1, 2, 0), np.nan), "trajectories",
     "NaN or inf values (first: nan at system 1, step 2, variable 0)"),
    ("traj-inf", with_value("trajectories", (0, 0, 1), np.inf), "trajectories",
     "NaN or inf values (first: inf at system 0, step 0, variable 1)"),
    ("time-nan", with_value("time", (3,), np.nan), "time", "NaN or inf values (first: nan at "
                                                           "step 3)"),
    ("negative", with_value("trajectories", (2, 3, 1), -0.5), "trajectories",
     "negative populations (first at system 2, step 3, variable 1)"),
    ("time-not-increasing", with_value("time", (3,), 0.0), "time", "strictly increasing"),
]


@pytest.mark.parametrize(("case", "datasets", "key", "fragment"), BAD_FILES + BAD_VALUES,
                         ids=[c[0] for c in BAD_FILES + BAD_VALUES])
def test_bad_file_gives_one_line_naming_file_and_key(
    tmp_path: Path, case: str, datasets: dict, key: str, fragment: str
) -> None:
    path = write_h5(tmp_path / f"{case}.h5", **datasets)
    with pytest.raises(DataFormatError) as info:
        load_trajectories(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert f"'{key}'" in message
    assert fragment in message


@pytest.mark.parametrize(("case", "datasets", "key", "fragment"), BAD_FILES,
                         ids=[c[0] for c in BAD_FILES])
def test_read_shape_validates_keys_and_ranks(
    tmp_path: Path, case: str, datasets: dict, key: str, fragment: str
) -> None:
    path = write_h5(tmp_path / f"{case}.h5", **datasets)
    with pytest.raises(DataFormatError, match=f"'{key}'"):
        read_shape(path)


# Values only the full read sees; with the 12 cases above, none may reserve anything.
BAD_VALUES_TOO = [
    ("traj-minus-inf", with_value("trajectories", (3, 5, 0), -np.inf), "trajectories",
     "NaN or inf values (first: -inf at system 3, step 5, variable 0)"),
    ("negative-first", with_value("trajectories", (0, 0, 0), -1e-6), "trajectories",
     "negative populations (first at system 0, step 0, variable 0)"),
]


@pytest.mark.parametrize(("case", "datasets", "key", "fragment"),
                         BAD_FILES + BAD_VALUES + BAD_VALUES_TOO,
                         ids=[c[0] for c in BAD_FILES + BAD_VALUES + BAD_VALUES_TOO])
def test_bad_file_reserves_nothing(compose_cfg, tmp_path: Path, capsys, case: str,
                                   datasets: dict, key: str, fragment: str) -> None:
    """Every bad HDF5 file (shape AND values: NaN, inf, negative populations) is refused by the
    pre-admission pass, as a bad table is: one line naming file and key (for values: system,
    step and variable), exit 1, no ledger row, no run folder."""
    from lora_forecast.task import run_task

    path = write_h5(tmp_path / f"{case}.h5", **datasets)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(SystemExit) as exited:
        run_task(compose_cfg("data.source=file", f"data.path={path}"), run_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {path}: ") and f"'{key}'" in err[0] and fragment in err[0]
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()  # no ledger, so no row
    assert not run_dir.exists() or list(run_dir.iterdir()) == []
    assert not (tmp_path / "outputs" / "runs").exists()


def test_signed_file_is_admitted_when_declared(tmp_path: Path) -> None:
    arrays = with_value("trajectories", (2, 3, 1), -0.5)
    path = write_h5(tmp_path / "signed.h5", **arrays)
    trajectories, _ = load_trajectories(path, non_negative=False)
    assert trajectories[2, 3, 1] == -0.5


def test_read_shape_does_not_inspect_values(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "nan.h5", **with_value("trajectories", (0, 0, 0), np.nan))
    assert read_shape(path) == (4, 6, 2)


def test_missing_file_message_is_the_relative_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for fn in (load_trajectories, read_shape):
        with pytest.raises(DataFormatError) as info:
            fn("nope.h5")
        assert str(info.value) == (
            "nope.h5: file not found; pass data.path=/path/to/file.h5, or use data=synthetic "
            "(generated, no file needed), or write it with "
            "`python -m lora_forecast.data generate --out nope.h5`")


def test_not_hdf5_and_directory(tmp_path: Path) -> None:
    text = tmp_path / "x.h5"
    text.write_text("prey,predator\n1,2\n")
    with pytest.raises(DataFormatError, match=r"x\.h5: not an HDF5 file$"):
        load_trajectories(text)
    with pytest.raises(DataFormatError, match="not a file"):
        read_shape(tmp_path)


def test_group_instead_of_dataset(tmp_path: Path) -> None:
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("trajectories", data=np.ones((2, 3, 1)))
        handle.create_group("time")
    with pytest.raises(DataFormatError, match="key 'time' is a group, not a dataset"):
        load_trajectories(path)


# --- system split ---------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "sizes"), [(1000, (800, 100, 100)), (3, (1, 1, 1)),
                                          (10, (8, 1, 1)), (25, (19, 3, 3)), (4, (2, 1, 1))])
def test_split_sizes_and_partition(n: int, sizes: tuple[int, int, int]) -> None:
    split = split_systems(n, seed=1)
    assert (len(split.train), len(split.val), len(split.test)) == sizes
    joined = np.concatenate([split.train, split.val, split.test])
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    for part in (split.train, split.val, split.test):
        assert part.dtype == np.int64 and (np.diff(part) > 0).all()
    assert split.n_systems == n


def test_split_every_part_non_empty_for_small_n_and_skewed_fractions() -> None:
    for n in range(3, 30):
        for fractions in [(0.8, 0.1, 0.1), (0.98, 0.01, 0.01), (0.1, 0.45, 0.45)]:
            split = split_systems(n, *fractions, seed=n)
            assert min(len(split.train), len(split.val), len(split.test)) >= 1, (n, fractions)
            assert split.n_systems == n


def test_split_seeded() -> None:
    assert split_systems(100, seed=3) == split_systems(100, seed=3)
    assert split_systems(100, seed=3) != split_systems(100, seed=4)


def test_split_zero_fraction_gives_empty_part() -> None:
    split = split_systems(10, 0.9, 0.1, 0.0)
    assert (len(split.train), len(split.val), len(split.test)) == (9, 1, 0)


@pytest.mark.parametrize("args", [(2,), (10, 0.5, 0.5, 0.5), (10, 1.2, -0.1, -0.1)])
def test_split_rejects_bad_arguments(args: tuple) -> None:
    with pytest.raises(ValueError):
        split_systems(*args)


def test_split_arrays_are_read_only_and_validated() -> None:
    split = split_systems(10)
    with pytest.raises(ValueError):
        split.train[0] = 5
    with pytest.raises(ValueError, match="disjoint"):
        SystemSplit(train=[0, 1], val=[1], test=[2])
    with pytest.raises(ValueError, match="sorted"):
        SystemSplit(train=[1, 0], val=[2], test=[3])


def test_split_json_round_trip(tmp_path: Path) -> None:
    split = split_systems(20, seed=2)
    path = split.save(tmp_path / "sub" / "split.json")
    assert json.loads(path.read_text()) == split.to_dict()
    assert SystemSplit.load(path) == split


def test_split_load_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [0], "val": [1]}))
    with pytest.raises(DataFormatError, match=r"split\.json: missing key 'test'"):
        SystemSplit.load(path)
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        SystemSplit.load(path)
    path.write_text(json.dumps({"train": [0, 1], "val": [1], "test": [2]}))
    with pytest.raises(DataFormatError, match="disjoint"):
        SystemSplit.load(path)
