"""Paired comparisons: hand-worked differences, scipy's paired t interval as an independent
check of the bootstrap, run-to-run comparison from results.json, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lora_forecast.errors import ConfigError
from lora_forecast.evaluation.paired import paired_block, paired_difference, within_run
from lora_forecast.report.compare import compare_runs, main


def test_paired_difference_by_hand() -> None:
    # differences a - b: 1 - 2 = -1, 3 - 2 = 1, 2 - 4 = -2 -> mean -2/3; s4 has no score in a
    a = {"s1": 1.0, "s2": 3.0, "s3": 2.0, "s4": None}
    b = {"s1": 2.0, "s2": 2.0, "s3": 4.0, "s4": 1.0}
    got = paired_difference(a, b, n_resamples=200, seed=0)
    assert got.mean == pytest.approx(-2 / 3) and got.n == 3
    # a percentile interval of resampled means stays within the extreme differences
    assert -2.0 <= got.low <= got.mean <= got.high <= 1.0
    # a constant difference of 0.5 has a zero-width interval
    same = paired_difference({"x": 1.5, "y": 2.5}, {"x": 1.0, "y": 2.0}, 50)
    assert (same.mean, same.low, same.high) == pytest.approx((0.5, 0.5, 0.5))


def test_paired_bootstrap_agrees_with_the_paired_t_interval() -> None:
    rng = np.random.default_rng(0)
    b = rng.uniform(1.0, 2.0, 400)
    a = b + rng.normal(-0.1, 0.2, 400)
    got = paired_difference(dict(enumerate(a)), dict(enumerate(b)), n_resamples=2000)
    t = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert got.mean == pytest.approx(np.mean(a - b))
    assert got.low == pytest.approx(t.low, abs=0.006) and got.high == pytest.approx(t.high,
                                                                                   abs=0.006)
    assert got.high < 0  # a is clearly better


def test_paired_difference_refuses_different_series() -> None:
    with pytest.raises(ValueError, match="different series ids: 1 only in the first"):
        paired_difference({"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0})


RESULTS = {
    "eval_series": {"ids": ["s1", "s2", "s3"]},
    "metrics": {"per_series": {"mse": [1.0, 3.0, 2.0], "mae": [1.0, 1.0, 1.0]}},
    "baselines": {"linear_ar": {"per_series": {"mse": [2.0, 2.0, 4.0], "mae": [2.0, 1.0, 1.0]}}},
}


def test_within_run_compares_the_llm_with_each_baseline() -> None:
    got = within_run(RESULTS, "mse", n_resamples=100)
    assert set(got) == {"linear_ar"} and got["linear_ar"].mean == pytest.approx(-2 / 3)
    block = paired_block(RESULTS, n_resamples=100)
    # MAE differences -1, 0, 0 -> -1/3; no per-series MASE here -> no entry
    assert set(block) == {"mse", "mae"}
    assert block["mae"]["linear_ar"]["mean"] == pytest.approx(-1 / 3)
    assert within_run({"baselines": {}}, "mse") == {}


def _write(run_dir: Path, ids: list[str], mse: list[float]) -> Path:
    run_dir.mkdir(parents=True)
    results = {"eval_series": {"ids": ids}, "metrics": {"per_series": {"mse": mse}}}
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_compare_runs_pairs_by_series_id(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a", ["s1", "s2", "s3"], [1.0, 3.0, 2.0])
    b = _write(tmp_path / "b", ["s3", "s1", "s2"], [4.0, 2.0, 2.0])  # same ids, other order
    got = compare_runs(a, b, "mse", n_resamples=100)
    assert got.mean == pytest.approx(-2 / 3) and got.n == 3
    assert main([str(a), str(b), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mse A - B: -0.6667 [") and "over 3 series" in out


def test_compare_runs_refuses_other_series_and_missing_scores(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a", ["s1", "s2"], [1.0, 3.0])
    b = _write(tmp_path / "b", ["s1", "s9"], [1.0, 2.0])
    with pytest.raises(ConfigError, match="tested on different series"):
        compare_runs(a, b)
    assert main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "1 shared" in err
    with pytest.raises(ConfigError, match="no per-series .wql. scores; .* holds: mse"):
        compare_runs(a, a, "wql")
    with pytest.raises(ConfigError, match="not found"):
        compare_runs(tmp_path / "nowhere", a)
