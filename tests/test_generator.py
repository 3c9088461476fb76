"""Synthetic Lotka-Volterra generator, atomic writes, the cache and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import lora_forecast.data.generator as generator
from lora_forecast.data import (
    ensure_synthetic,
    generate_lotka_volterra,
    load_trajectories,
    read_shape,
    write_trajectories,
)
from lora_forecast.data.__main__ import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    return generate_lotka_volterra(n_systems=40, seed=0)


def test_shapes_dtypes_and_time(small: tuple[np.ndarray, np.ndarray]) -> None:
    trajectories, time = small
    assert trajectories.shape == (40, 100, 2) and trajectories.dtype == np.float32
    assert time.dtype == np.float64
    np.testing.assert_array_equal(time, np.linspace(0.0, 200.0, 100))
    assert np.isfinite(trajectories).all() and (trajectories >= 0).all()
    assert ((trajectories[:, 0] >= 0.8) & (trajectories[:, 0] <= 1.2)).all()


def test_seeded_and_prefix_stable(small: tuple[np.ndarray, np.ndarray]) -> None:
    again, _ = generate_lotka_volterra(n_systems=5, seed=0)
    np.testing.assert_array_equal(again, small[0][:5])  # system i does not depend on S
    other, _ = generate_lotka_volterra(n_systems=5, seed=1)
    assert np.abs(other - again).max() > 0.1


def test_custom_steps_and_horizon() -> None:
    trajectories, time = generate_lotka_volterra(n_systems=2, n_steps=11, t_max=50.0)
    assert trajectories.shape == (2, 11, 2)
    np.testing.assert_allclose(np.diff(time), 5.0)


@pytest.mark.parametrize("kwargs", [{"n_systems": 0}, {"n_steps": 1}, {"t_max": 0.0}])
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_lotka_volterra(**kwargs)


def test_integration_follows_the_model(small: tuple[np.ndarray, np.ndarray]) -> None:
    """Invariants of the model: classic LV conserves H = d x - g ln x + b y - a ln y; with a
    carrying capacity K > x* = g/d, V = d (x - x* ln x) + b (y - y* ln y) with
    y* = (a/b)(1 - x*/K) decreases (dV/dt = -(a d / K)(x - x*)^2); with K <= x* the predator
    dies out."""
    trajectories, _ = small
    params = generator._sample_parameters(40, seed=0)
    kinds = {"classic": 0, "damped": 0, "extinct": 0}
    for (a, b, d, g, capacity, x0, y0), series in zip(params, trajectories, strict=True):
        np.testing.assert_allclose(series[0], [x0, y0], rtol=1e-6)
        x, y = series[:, 0].astype(np.float64), series[:, 1].astype(np.float64)
        x_eq = g / d
        if np.isinf(capacity):
            kinds["classic"] += 1
            h = d * x - g * np.log(x) + b * y - a * np.log(y)
            assert np.ptp(h) < 1e-5 * np.abs(h).max()
        elif x_eq < capacity:
            kinds["damped"] += 1
            y_eq = a / b * (1 - x_eq / capacity)
            v = d * (x - x_eq * np.log(x)) + b * (y - y_eq * np.log(y))
            assert (np.diff(v) < 1e-6).all()  # float32 storage noise only
            assert v[-1] < v[0]
        else:
            kinds["extinct"] += 1
            assert y[-1] < 0.1 * y.max()
    assert kinds["classic"] >= 5 and kinds["damped"] >= 5, kinds


def test_parameters_within_documented_ranges() -> None:
    params = generator._sample_parameters(2000, seed=3)
    for col, (lo, hi) in enumerate(generator.RATE_RANGES.values()):
        assert lo <= params[:, col].min() and params[:, col].max() <= hi
    finite = params[np.isfinite(params[:, 4]), 4]
    lo, hi = generator.CAPACITY_RANGE
    assert lo <= finite.min() <= finite.max() <= hi
    assert abs(finite.size / 2000 - generator.LOGISTIC_FRACTION) < 0.05


def test_write_is_atomic_and_round_trips(tmp_path: Path,
                                         small: tuple[np.ndarray, np.ndarray]) -> None:
    trajectories, time = small
    dest = tmp_path / "a" / "b" / "lv.h5"
    assert write_trajectories(dest, trajectories, time, attrs={"seed": 0}) == dest
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lv.h5"]  # no temp file left
    with h5py.File(dest, "r") as handle:
        assert handle["trajectories"].dtype == np.float32 and handle["time"].dtype == np.float64
        assert handle.attrs["seed"] == 0
    loaded, loaded_time = load_trajectories(dest)
    np.testing.assert_array_equal(loaded, trajectories.astype(np.float64))
    np.testing.assert_array_equal(loaded_time, time)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "lv.h5"
    write_trajectories(dest, np.ones((1, 3, 2)), np.arange(3.0))
    monkeypatch.setattr(generator.os, "replace", lambda *_: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        write_trajectories(dest, np.zeros((2, 3, 2)), np.arange(3.0))
    assert read_shape(dest) == (1, 3, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["lv.h5"]
    with pytest.raises(ValueError, match="shapes"):
        write_trajectories(dest, np.ones((1, 3, 2)), np.arange(4.0))


def test_ensure_synthetic_caches_and_regenerates(tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple] = []
    real = generator.generate_lotka_volterra

    def counting(**kwargs):
        calls.append((kwargs["n_systems"], kwargs["seed"]))
        return real(**kwargs)

    monkeypatch.setattr(generator, "generate_lotka_volterra", counting)
    cache = tmp_path / "cache" / "lv.h5"
    assert ensure_synthetic(cache, n_systems=3, seed=0) == cache
    assert ensure_synthetic(cache, n_systems=3, seed=0) == cache
    assert calls == [(3, 0)]
    ensure_synthetic(cache, n_systems=4, seed=0)  # shape differs
    ensure_synthetic(cache, n_systems=4, seed=1)  # seed differs
    assert calls == [(3, 0), (4, 0), (4, 1)]
    assert read_shape(cache) == (4, 100, 2)
    cache.write_text("corrupt")
    ensure_synthetic(cache, n_systems=4, seed=1)
    assert len(calls) == 4 and read_shape(cache) == (4, 100, 2)


def test_cli_generate_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "gen" / "lv.h5"
    result = subprocess.run(
        [sys.executable, "-m", "lora_forecast.data", "generate", "--out", str(out),
         "--systems", "5"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: 5 systems x 100 steps")
    trajectories, _ = load_trajectories(out)
    np.testing.assert_allclose(trajectories, generate_lotka_volterra(5)[0], rtol=0, atol=0)


def test_cli_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    assert cli_main(["generate", "--out", str(tmp_path / "x.h5"), "--systems", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: n_systems must be >= 1, got 0\n"
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli_main(["generate", "--out", str(blocker / "x.h5"), "--systems", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        cli_main(["generate"])  # argparse: --out is required
    assert info.value.code == 2
