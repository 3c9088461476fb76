"""Synthetic Lotka-Volterra trajectories in the SPEC file format, so the project runs without
the user's ``lotka_volterra_data.h5``.

Model, per system (prey x, predator y)::

    dx/dt = a x (1 - x / K) - b x y
    dy/dt = d x y - g y

With ``K = inf`` this is the classic conservative Lotka-Volterra system (closed orbits: the
series oscillate for ever). A finite carrying capacity ``K`` damps the oscillations towards the
equilibrium (or lets the predator die out when ``K < g / d``, rare with the ranges below); this
is where the real file's "some decay" comes from.

Calibration against the real file (1000 systems, 100 steps over 200 time units): 300
generated systems at seed 0 vs the real file (quantiles over all values; the dominant period is
the FFT peak of each prey series, in steps of 200/99 time units):

=========================  ==================  ==================
statistic                  real                generated
=========================  ==================  ==================
prey q10 / q50 / q90       0.36 / 1.31 / 3.47  0.40 / 1.15 / 3.33
predator q10 / q50 / q90   0.12 / 0.52 / 1.05  0.10 / 0.52 / 1.01
prey max / predator max    13.7 / 4.8          14.4 / 2.8
period q25 / q50 / q75     18 / 21 / 26 steps  17 / 20 / 26 steps
=========================  ==================  ==================

Note the real period is about 20 steps (~40 time units), not 40 steps.

The parameter ranges below come from fitting this model to real series (least squares on the
ODE solution) and then widening/narrowing them until the statistics above matched. The real
file is not exactly this model (fits leave structured residuals), so only statistics match.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy.integrate import solve_ivp

from lora_forecast.data.loader import TIME_KEY, TRAJECTORIES_KEY, read_shape
from lora_forecast.errors import DataFormatError

GENERATOR_NAME = "lotka_volterra"
GENERATOR_VERSION = 1  # bump when the sampling or the model changes: invalidates caches

# Uniform ranges of the rate parameters (per time unit).
RATE_RANGES = {"a": (0.08, 0.30), "b": (0.18, 0.50), "d": (0.04, 0.20), "g": (0.08, 0.25)}
LOGISTIC_FRACTION = 0.6  # share of systems with a finite carrying capacity (damped)
CAPACITY_RANGE = (5.0, 60.0)  # log-uniform carrying capacity K of the prey
INITIAL_RANGE = (0.8, 1.2)  # uniform initial prey and predator populations
STEPS = 100  # time points per generated system (the reference data's length)
VARIABLES = 2  # prey and predator


def _sample_parameters(n_systems: int, seed: int) -> np.ndarray:
    """Per-system parameters [S, 7] = (a, b, d, g, K, x0, y0).

    All draws come from one [S, 8] uniform matrix, row by row, so system i gets the same
    parameters whatever ``n_systems`` is (a 5-system file is a prefix of a 1000-system one).
    """
    u = np.random.default_rng(seed).uniform(size=(n_systems, 8))
    lows = np.array([lo for lo, _ in RATE_RANGES.values()])
    highs = np.array([hi for _, hi in RATE_RANGES.values()])
    rates = lows + u[:, :4] * (highs - lows)  # [S, 4]
    log_lo, log_hi = np.log(CAPACITY_RANGE)
    capacity = np.where(u[:, 4] < LOGISTIC_FRACTION, np.exp(log_lo + u[:, 5] * (log_hi - log_lo)),
                        np.inf)
    lo, hi = INITIAL_RANGE
    initial = lo + u[:, 6:8] * (hi - lo)  # [S, 2]
    return np.column_stack([rates, capacity, initial])


def _integrate(params: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Solve one system on ``time``; returns [T, 2] (prey, predator), clipped at 0."""
    a, b, d, g, capacity, x0, y0 = params

    def rhs(_t: float, state: np.ndarray) -> list[float]:
        x, y = state
        return [a * x * (1.0 - x / capacity) - b * x * y, d * x * y - g * y]

    sol = solve_ivp(rhs, (float(time[0]), float(time[-1])), [x0, y0], t_eval=time,
                    method="LSODA", rtol=1e-8, atol=1e-10)
    if not sol.success:
        raise RuntimeError(f"Lotka-Volterra integration failed: {sol.message}")
    # Populations stay positive analytically; clip solver round-off below zero.
    return np.clip(sol.y.T, 0.0, None)


def generate_lotka_volterra(
    n_systems: int = 1000, n_steps: int = STEPS, t_max: float = 200.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded synthetic predator-prey trajectories, statistically close to the real file.

    Args:
        n_systems: number of independent systems S (>= 1).
        n_steps: number of time points T (>= 2), ``linspace(0, t_max, T)``.
        t_max: last time point (> 0).
        seed: random seed; equal seeds give identical output.

    Returns:
        ``(trajectories, time)``: float32 [S, T, 2] with [..., 0] prey and [..., 1] predator,
        and float64 [T].
    """
    if n_systems < 1:
        raise ValueError(f"n_systems must be >= 1, got {n_systems}")
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    time = np.linspace(0.0, t_max, n_steps)
    params = _sample_parameters(n_systems, seed)
    trajectories = np.stack([_integrate(p, time) for p in params])  # [S, T, 2]
    return trajectories.astype(np.float32), time


def write_trajectories(
    path: str | Path,
    trajectories: np.ndarray,
    time: np.ndarray,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write the SPEC format atomically (temp file in the same folder, then ``os.replace``).

    A reader never sees a half-written file, even with parallel sweep jobs writing the same
    cache. Parent folders are created.

    Args:
        path: destination ``.h5`` file.
        trajectories: [S, T, V] values, stored as float32 as in the reference file.
        time: [T] time points, stored as float64.
        attrs: optional file attributes (provenance; the loader ignores them).

    Returns:
        The destination path.
    """
    trajectories = np.asarray(trajectories)
    time = np.asarray(time)
    if trajectories.ndim != 3 or time.ndim != 1 or time.shape[0] != trajectories.shape[1]:
        raise ValueError(f"need trajectories [S, T, V] and time [T], got shapes "
                         f"{trajectories.shape} and {time.shape}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        with h5py.File(tmp_name, "w") as handle:
            handle.create_dataset(TRAJECTORIES_KEY, data=trajectories.astype(np.float32))
            handle.create_dataset(TIME_KEY, data=time.astype(np.float64))
            for key, value in (attrs or {}).items():
                handle.attrs[key] = value
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def provenance(seed: int) -> dict[str, Any]:
    """File attributes recording how a synthetic file was made (checked by the cache)."""
    return {"generator": GENERATOR_NAME, "seed": seed, "version": GENERATOR_VERSION}


def _cache_is_valid(path: Path, expected_shape: tuple[int, int, int], seed: int) -> bool:
    if not path.is_file():
        return False
    try:
        if read_shape(path) != expected_shape:
            return False
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
    except (DataFormatError, OSError):
        return False
    return all(attrs.get(key) == value for key, value in provenance(seed).items())


def ensure_synthetic(cache_path: str | Path, n_systems: int, seed: int,
                     n_steps: int = STEPS) -> Path:
    """Generate the synthetic data set once and reuse it.

    The cache is regenerated when its shape differs, or its provenance attributes (generator,
    seed, version) do not match; an unreadable cache is regenerated too.

    Args:
        cache_path: where the ``.h5`` file lives.
        n_systems: number of systems wanted.
        seed: generator seed.
        n_steps: time points per system.

    Returns:
        ``cache_path`` as a Path, holding a valid file.
    """
    path = Path(cache_path)
    if _cache_is_valid(path, (n_systems, n_steps, VARIABLES), seed):
        return path
    trajectories, time = generate_lotka_volterra(n_systems=n_systems, n_steps=n_steps, seed=seed)
    return write_trajectories(path, trajectories, time, attrs=provenance(seed))
