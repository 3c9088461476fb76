"""Your own series end to end: a ragged 3-variable CSV and a univariate Parquet file train,
validate, forecast and score with the tiny model; per-series scaling maps back to units."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lora_forecast.config import to_settings
from lora_forecast.planning import run_shape
from lora_forecast.task import run_task

TABLE = ["data=table", "data.context_tokens=64", "eval.n_systems=null"]


def ragged_frame(n_series: int, n_vars: int, seed: int = 0) -> pd.DataFrame:
    """Smooth positive series of 14..30 steps, one row per (series, time)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_series):
        length = int(rng.integers(14, 31))
        t = np.arange(length, dtype=float)
        for k in range(length):
            values = {f"v{j}": 2.0 + np.sin(0.4 * t[k] + s + j) for j in range(n_vars)}
            rows.append({"series_id": f"s{s:02d}", "time": t[k], **values})
    return pd.DataFrame(rows)


def _run(compose_cfg, run_dir: Path, *overrides: str) -> dict:
    run_task(compose_cfg(*TABLE, *overrides), run_dir)
    return json.loads((run_dir / "results.json").read_text())


def test_ragged_csv_three_variables_end_to_end(compose_cfg, run_dir, tmp_path) -> None:
    frame = ragged_frame(20, 3)
    # two test-length series too short for 12 + 3 steps would be skipped; make some short
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    results = _run(compose_cfg, run_dir, f"data.path={path}", "eval.context_steps=12",
                   "eval.horizon_steps=3", "eval.baselines=[persistence,theta]")
    assert results["status"] == "completed", results
    metrics = results["metrics"]
    assert metrics["n_systems"] >= 1 and len(metrics["mse_per_variable"]) == 3
    assert math.isfinite(metrics["mse"])
    assert set(results["baselines"]) == {"persistence", "theta"}
    split = json.loads((run_dir / "split.json").read_text())
    lengths = frame.groupby("series_id").size()
    test_ids = split["ids"]["test"]
    assert results["eval_series"]["skipped_too_short"] == int((lengths[test_ids] < 15).sum())
    assert results["eval_series"]["ids"] == [i for i in test_ids if lengths[i] >= 15]
    assert 0 < results["flops"]["spent"] <= results["flops"]["predicted"]


def test_dated_run_writes_its_test_forecasts_on_the_dates(compose_cfg, run_dir, tmp_path,
                                                          monkeypatch) -> None:
    from lora_forecast.evaluation import plots

    frame = ragged_frame(20, 2)
    frame["time"] = (pd.Timestamp("2020-01-01") + pd.to_timedelta(frame["time"], "D")
                     ).dt.strftime("%Y-%m-%d")  # daily dates, each series from 2020-01-01
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    panels, original = [], plots.forecast_figure

    def recording(*args, **kwargs):  # titles and line x data, before rendering clears them
        fig = original(*args, **kwargs)
        panels.extend((ax.get_title(), ax.get_xlabel(), [ln.get_xdata() for ln in ax.lines])
                      for ax in fig.axes)
        return fig

    monkeypatch.setattr(plots, "forecast_figure", recording)
    results = _run(compose_cfg, run_dir, f"data.path={path}", "eval.context_steps=12",
                   "eval.horizon_steps=3", "eval.num_samples=2", "train.max_steps=2")
    assert results["status"] == "completed", results
    ids = results["eval_series"]["ids"]
    table = pd.read_csv(run_dir / "forecasts.csv")
    assert list(table.columns) == ["series_id", "time"] + [
        f"v{j}_{what}" for j in range(2) for what in ("truth", "forecast", "q10", "q90")]
    source = pd.read_csv(path)  # the oracle: the input file itself, read by pandas
    want = pd.concat([source[source["series_id"] == i].iloc[12:15] for i in ids])
    assert table["series_id"].tolist() == want["series_id"].tolist()
    assert table["time"].tolist() == want["time"].tolist() == ["2020-01-13", "2020-01-14",
                                                               "2020-01-15"] * len(ids)
    np.testing.assert_allclose(table[["v0_truth", "v1_truth"]], want[["v0", "v1"]], rtol=1e-12)
    assert (table["v0_q10"] <= table["v0_q90"]).all()
    title, _, (context, *_) = panels[0]
    assert title == f"series {ids[0]}: v0"
    np.testing.assert_array_equal(context, pd.date_range("2020-01-01", periods=12).to_numpy())
    assert panels[-1][1] == "time"


def test_planning_counts_windows_of_the_real_lengths(compose_cfg, tmp_path) -> None:
    frame = ragged_frame(20, 3)
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    settings = to_settings(compose_cfg(*TABLE, f"data.path={path}", "eval.context_steps=12",
                                       "eval.horizon_steps=3"))
    shape = run_shape(settings)
    from lora_forecast.data.splits import split_systems

    split = split_systems(20, 0.8, 0.1, 0.1, 0)
    lengths = frame.groupby("series_id", sort=False).size().to_numpy()
    assert shape.n_test_systems == int((lengths[split.test] >= 15).sum())
    # hand count, bounded: 3 variables x (2 integer digits (eval.max_int_digits) + '.' + 2
    # decimals + separator) = 18 tokens a step; windows of 64 tokens, stride 32, over each
    # series' own (18 L - 1) tokens: 1 + ceil((n - 64) / 32) each
    def windows(n: int, stride: int) -> int:
        return 1 + max(0, math.ceil((n - 64) / stride))

    assert shape.tokens_per_step == 18
    assert shape.n_train_windows == sum(windows(18 * int(n) - 1, 32) for n in lengths[split.train])
    assert shape.n_val_windows == min(4, sum(windows(18 * int(n) - 1, 64)
                                             for n in lengths[split.val]))


def test_univariate_parquet_with_per_series_scaling(compose_cfg, run_dir, tmp_path) -> None:
    frame = ragged_frame(12, 1, seed=1)
    frame["v0"] *= 1000.0  # far outside one digit: per-series scaling brings it back
    path = tmp_path / "series.parquet"
    frame.to_parquet(path, index=False)
    results = _run(compose_cfg, run_dir, f"data.path={path}", "data.scaling=per_series",
                   "data.scale_offset=0.5", "eval.context_steps=10", "eval.horizon_steps=2")
    assert results["status"] == "completed", results
    assert len(results["metrics"]["mse_per_variable"]) == 1
    scaling = json.loads((run_dir / "scaling.json").read_text())
    assert scaling["kind"] == "per_series" and scaling["variables"] == ["v0"]
    assert math.isfinite(results["metrics"]["mae"])


def test_per_series_scaling_makes_forecasts_scale_with_the_series(compose_cfg) -> None:
    """Multiplying a series by c leaves its per-series-scaled text unchanged, so the same
    model's forecast in original units must be exactly c times the forecast of the original."""
    from lora_forecast.data.scaling import Scaling
    from lora_forecast.forecasting.scaled import forecast_scaled
    from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat
    from lora_forecast.models.build import build_model
    from lora_forecast.models.tokenizer import load_tokenizer

    settings = to_settings(compose_cfg("eval.horizon_steps=3"))
    model = build_model(settings.model, settings.lora)
    scaling = Scaling("per_series", 1.0, quantile=0.9, offset=0.0, variables=("a", "b"))
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(1.0, 2), load_tokenizer(settings.model))
    rng = np.random.default_rng(0)
    contexts = rng.uniform(1.0, 3.0, size=(2, 8, 2))
    base = forecast_scaled(settings, model, fmt, scaling.for_history, contexts, progress=False)
    scaled = forecast_scaled(settings, model, fmt, scaling.for_history, 1000.0 * contexts,
                             progress=False)
    assert np.isfinite(base.point).all()
    np.testing.assert_allclose(scaled.point, 1000.0 * base.point, rtol=1e-9)
    assert scaled.texts == base.texts


@pytest.mark.parametrize("layout", ["narrow"])
def test_variable_value_rows_run_too(compose_cfg, run_dir, tmp_path, layout) -> None:
    frame = ragged_frame(10, 2).melt(id_vars=["series_id", "time"], var_name="variable",
                                     value_name="value")
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    results = _run(compose_cfg, run_dir, f"data.path={path}", "eval.context_steps=10",
                   "eval.horizon_steps=2", "task=baselines")
    assert results["status"] == "completed"
    assert len(results["baselines"]["persistence"]["mse_per_variable"]) == 2


@pytest.mark.parametrize("text,fragment", [
    ("series_id,time,v0\na,0,1\na,1,x\n", "row 2: column 'v0' holds non-numeric value 'x'"),
    ("series_id,time,v0\na,0,1\na,0,2\n", "row 2: series a: duplicate time 0"),
    ("series_id,time,v0\na,0,1\na,1,\n", "series a, time 1, column 'v0': missing value"),
    ("series_id,time,v0\na,1,1\na,0,2\n", "row 2: series a: time 0 after 1 (unsorted)"),
    ("series_id,time,v0,v1\na,0,1,\na,1,2,\n", "series a: column 'v1' is empty"),
    ("id,time,v0\na,0,1\n", "column 'series_id' (data.id_column) not found"),
])
def test_bad_table_fails_before_anything_is_reserved(compose_cfg, run_dir, tmp_path, capsys,
                                                     text, fragment) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    layout = ["data.layout=long"] if text.startswith("id,") else []
    with pytest.raises(SystemExit) as info:
        run_task(compose_cfg(*TABLE, f"data.path={path}", *layout), run_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and fragment in err[0]
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ")
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()
    assert list(run_dir.iterdir()) == []
