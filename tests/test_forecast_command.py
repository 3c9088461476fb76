"""The forecast command on a smoke-sized run, and export: reproduces the run's own forecasts,
writes the input's layout, and every bad input is one line, exit 1, nothing reserved/written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from lora_forecast.budget.ledger import Ledger
from lora_forecast.errors import LoraForecastError
from lora_forecast.forecast_job import ForecastJob, run_forecast_job
from lora_forecast.run_folder import run_config, settings_from
from lora_forecast.task import run_task
from tests.conftest import CONF_DIR, REPO, SHRINK, subprocess_env


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A smoke-sized finetuned run on generated data (2 test series, context 8, horizon 2)."""
    root = tmp_path_factory.mktemp("trained")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SHRINK, f"output_dir={root / 'outputs'}"])
    run_dir = root / "run"
    run_dir.mkdir()
    run_task(cfg, run_dir)
    return run_dir


def _test_series(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, values [S, T, V], time [T]) of the run's scored test series, from its own data."""
    config, results = run_config(run_dir), json.loads((run_dir / "results.json").read_text())
    with h5py.File(config["data"]["cache_path"]) as handle:
        trajectories, time = handle["trajectories"][()], handle["time"][()]
    ids = results["eval_series"]["ids"]
    return ids, trajectories[[int(i) for i in ids]].astype(np.float64), time


def _input_csv(path: Path, ids: list[str], values: np.ndarray, time: np.ndarray) -> Path:
    rows = [{"series_id": sid, "time": time[t], "var0": v[t, 0], "var1": v[t, 1]}
            for sid, v in zip(ids, values, strict=True) for t in range(len(v))]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _job(run_dir: Path | None, input_path: Path, out: Path, horizon: int = 2,
         overrides: tuple[str, ...] = ()):
    settings = settings_from({**run_config(run_dir), "data": {**run_config(run_dir)["data"],
                                                              "path": str(input_path)}},
                             list(overrides))
    return ForecastJob(str(run_dir), str(input_path), horizon, str(out)), settings


def test_forecast_reproduces_the_runs_own_numbers(trained: Path, tmp_path: Path) -> None:
    ids, values, time = _test_series(trained)
    results = json.loads((trained / "results.json").read_text())
    context = results["config"]["eval"]["context_steps"]
    source = _input_csv(tmp_path / "new.csv", ids, values[:, :context], time[:context])
    job, settings = _job(trained, source, tmp_path / "fc")
    out = run_forecast_job(job, settings, run_config(trained))
    table = pd.read_csv(out / "forecasts.csv")
    assert list(table.columns) == ["series_id", "time", "var0", "var0_q10", "var0_q90",
                                   "var1", "var1_q10", "var1_q90"]
    # the input's time axis continued: the file's own next times (its step is 200/99)
    np.testing.assert_allclose(table["time"].to_numpy().reshape(len(ids), 2),
                               np.tile(time[context:context + 2], (len(ids), 1)), rtol=1e-9)
    point = table[["var0", "var1"]].to_numpy().reshape(len(ids), 2, 2)  # [S, H, V]
    truth = values[:, context:context + 2]
    err = (point - truth) ** 2
    # the run scored exactly these series: its recorded errors are the oracle
    assert err.mean() == pytest.approx(results["metrics"]["mse"], rel=1e-12)
    np.testing.assert_allclose(err.mean(axis=(0, 2)), results["metrics"]["mse_per_step"],
                               rtol=1e-12)
    summary = json.loads((out / "forecast.json").read_text())
    assert (out / "forecasts.png").is_file()
    with Ledger(settings.budget.ledger_url) as ledger:
        row = ledger.get(summary["flops"]["run_id"])
    assert row.status == "completed" and 0 < row.spent_flops <= row.predicted_flops


def test_the_run_wrote_its_test_forecasts_as_a_table(trained: Path) -> None:
    ids, values, time = _test_series(trained)  # read from the HDF5 file, not the run
    results = json.loads((trained / "results.json").read_text())
    table = pd.read_csv(trained / "forecasts.csv", dtype={"series_id": str})
    assert list(table.columns) == ["series_id", "time", "var0_truth", "var0_forecast",
                                   "var1_truth", "var1_forecast"]  # greedy: no quantiles
    assert table["series_id"].tolist() == [i for i in ids for _ in range(2)]
    np.testing.assert_allclose(table["time"].to_numpy().reshape(len(ids), 2),
                               np.tile(time[8:10], (len(ids), 1)), rtol=1e-12)
    truth = table[["var0_truth", "var1_truth"]].to_numpy().reshape(len(ids), 2, 2)
    np.testing.assert_allclose(truth, values[:, 8:10], rtol=1e-12)
    point = table[["var0_forecast", "var1_forecast"]].to_numpy().reshape(len(ids), 2, 2)
    assert ((point - truth) ** 2).mean() == pytest.approx(results["metrics"]["mse"], rel=1e-9)


def test_rows_layout_in_rows_layout_out(trained: Path, tmp_path: Path) -> None:
    ids, values, time = _test_series(trained)
    narrow = pd.read_csv(_input_csv(tmp_path / "w.csv", ids, values[:, :12], time[:12])).melt(
        id_vars=["series_id", "time"], var_name="variable", value_name="value")
    narrow.to_parquet(tmp_path / "rows.parquet", index=False)
    job, settings = _job(trained, tmp_path / "rows.parquet", tmp_path / "fc", horizon=3)
    out = run_forecast_job(job, settings, run_config(trained))
    table = pd.read_parquet(out / "forecasts.parquet")
    assert list(table.columns) == ["series_id", "time", "variable", "forecast", "q10", "q90"]
    assert len(table) == len(ids) * 3 * 2 and set(table["variable"]) == {"var0", "var1"}


def _recording_figures(monkeypatch) -> list:
    """Per forecast figure the command builds, per panel its title, x label and the x data of
    its lines (context, forecast), read before the figure is rendered and cleared."""
    from lora_forecast.evaluation import plots

    figures, original = [], plots.forecast_figure

    def recording(*args, **kwargs):
        fig = original(*args, **kwargs)
        figures.append([(ax.get_title(), ax.get_xlabel(),
                         [line.get_xdata() for line in ax.get_lines()]) for ax in fig.axes])
        return fig

    monkeypatch.setattr(plots, "forecast_figure", recording)
    return figures


def test_wide_csv_with_years_gets_the_next_years(trained, tmp_path, monkeypatch) -> None:
    _, values, _ = _test_series(trained)
    years = np.arange(1900, 1921)
    frame = pd.DataFrame({"year": years, "var0": values[0, :21, 0], "var1": values[0, :21, 1]})
    frame.to_csv(tmp_path / "in.csv", index=False)
    figures = _recording_figures(monkeypatch)
    job, settings = _job(trained, tmp_path / "in.csv", tmp_path / "fc", horizon=5,
                         overrides=("data.time_column=year",))
    out = run_forecast_job(job, settings, run_config(trained))
    table = pd.read_csv(out / "forecasts.csv")
    assert list(table.columns) == ["year", "var0", "var0_q10", "var0_q90",
                                   "var1", "var1_q10", "var1_q90"]
    assert table["year"].tolist() == [1921, 1922, 1923, 1924, 1925]
    assert json.loads((out / "forecast.json").read_text())["time_column"] == "year"
    ((title, _, (context, forecast, *_)), (_, xlabel, _)) = figures[0]
    np.testing.assert_array_equal(context, years[-8:])  # the run's 8 context steps
    np.testing.assert_array_equal(forecast, [1921, 1922, 1923, 1924, 1925])
    assert title == "series from in.csv: var0"  # no id column: named by its file
    assert xlabel == "year"


def test_long_csv_with_dates_continues_each_series_frequency(trained, tmp_path,
                                                             monkeypatch) -> None:
    ids, values, _ = _test_series(trained)
    days = pd.date_range("2024-02-22", periods=6, freq="D")  # shorter than the context
    months = pd.date_range("2023-01-31", periods=12, freq="ME")  # month ends
    frame = pd.concat([
        pd.DataFrame({"shop": "daily", "date": days.strftime("%Y-%m-%d"),
                      "var0": values[0, :6, 0], "var1": values[0, :6, 1]}),
        pd.DataFrame({"shop": "monthly", "date": months.strftime("%Y-%m-%d"),
                      "var0": values[1, :12, 0], "var1": values[1, :12, 1]}),
    ])
    frame.to_csv(tmp_path / "sales.csv", index=False)
    figures = _recording_figures(monkeypatch)
    job, settings = _job(trained, tmp_path / "sales.csv", tmp_path / "fc", horizon=3,
                         overrides=("data.id_column=shop", "data.time_column=date"))
    out = run_forecast_job(job, settings, run_config(trained))
    table = pd.read_csv(out / "forecasts.csv")
    assert list(table.columns[:2]) == ["shop", "date"]
    assert table.groupby("shop")["date"].apply(list).to_dict() == {
        "daily": ["2024-02-28", "2024-02-29", "2024-03-01"],  # a leap day
        "monthly": ["2024-01-31", "2024-02-29", "2024-03-31"]}
    (daily, _, monthly, (_, xlabel, _)) = figures[0]
    assert (daily[0], monthly[0]) == ("series daily: var0", "series monthly: var0")
    context, forecast = monthly[2][:2]
    np.testing.assert_array_equal(
        forecast, np.array(["2024-01-31", "2024-02-29", "2024-03-31"], dtype="datetime64[ns]"))
    np.testing.assert_array_equal(context, months[-8:].to_numpy())  # the last 8 month ends
    assert np.isnat(daily[2][0][:2]).all()  # 6 days drawn where the 8-step contexts end
    np.testing.assert_array_equal(daily[2][0][2:], days.to_numpy())
    assert xlabel == "date"


def test_irregular_times_fall_back_to_steps_with_one_line(trained, tmp_path,
                                                          caplog) -> None:
    text = ("series_id,time,var0,var1\n" + "".join(f"a,{t},1,2\n" for t in range(6))
            + "".join(f"b,{t},1,2\n" for t in (0, 1, 2, 4, 5, 7)))
    (tmp_path / "in.csv").write_text(text)
    job, settings = _job(trained, tmp_path / "in.csv", tmp_path / "fc", horizon=2)
    with caplog.at_level("WARNING", logger="lora_forecast.forecast_job"):
        out = run_forecast_job(job, settings, run_config(trained))
    table = pd.read_csv(out / "forecasts.csv")
    assert list(table.columns[:2]) == ["series_id", "step"]
    assert table["step"].tolist() == [1, 2, 1, 2]
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "series b: irregular time spacing" in line and "numbered by step" in line
    assert "\n" not in line


def test_export_merged_model_forecasts_like_the_adapter(trained: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from lora_forecast.data.scaling import Scaling
    from lora_forecast.export import export_run
    from lora_forecast.forecasting.scaled import forecast_scaled
    from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat
    from lora_forecast.models.build import load_base_model
    from lora_forecast.models.tokenizer import load_tokenizer
    from lora_forecast.run_folder import load_run_model, run_scaling

    settings = settings_from(run_config(trained))
    out = export_run(trained, tmp_path / "export", merge=True)
    assert (out / "adapter" / "adapter_config.json").is_file()
    scaling = Scaling.from_dict(run_scaling(trained))
    fmt = LLMTimeFormat.for_tokenizer(LLMTimeCodec(scaling.alpha, settings.data.decimals),
                                      load_tokenizer(settings.model))
    _, values, _ = _test_series(trained)
    contexts = values[:, :8]
    adapter = forecast_scaled(settings, load_run_model(settings, trained), fmt,
                              scaling.text_scale, contexts, progress=False)
    merged_model = AutoModelForCausalLM.from_pretrained(out / "merged")
    # the one line README gives for runs with the reference study's lm_head bias
    merged_model.lm_head.bias = torch.nn.Parameter(
        load_file(out / "merged" / "lm_head_bias.safetensors")["bias"])
    assert merged_model.lm_head.bias.abs().max() > 0  # trained: the line matters
    merged = forecast_scaled(settings, merged_model, fmt, scaling.text_scale, contexts,
                             progress=False)
    assert merged.texts == adapter.texts
    np.testing.assert_array_equal(merged.point, adapter.point)
    base_model = load_base_model(settings.model)
    base_model.lm_head.bias = torch.nn.Parameter(
        load_file(out / "adapter" / "lm_head_bias.safetensors")["bias"])
    reloaded = PeftModel.from_pretrained(base_model, out / "adapter")
    again = forecast_scaled(settings, reloaded, fmt, scaling.text_scale, contexts, progress=False)
    assert again.texts == adapter.texts
    # next-token logits agree with the adapter's, and differ from the untrained base model's,
    # so the equal forecasts above are not those of a model the adapter never changed
    ids = torch.tensor([[15, 13, 17, 18, 11, 16, 13, 19, 20, 26]])  # "0.23,1.45;"
    with torch.no_grad():
        want = load_run_model(settings, trained)(input_ids=ids).logits
        got = merged_model(input_ids=ids).logits
        untrained = load_base_model(settings.model)(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (untrained - want).abs().max() > 1e-3


def _ledger_rows(url: str) -> int:
    with Ledger(url) as ledger:
        return len(ledger.rows())


BAD_INPUTS = [
    # (case, CSV text or None for no file, extra overrides, fragment of the one line)
    ("missing-file", None, (), "file not found"),
    ("nan", "series_id,time,var0,var1\na,0,1,2\na,1,,2\n", (),
     "series a, time 1, column 'var0': missing value"),
    ("variables", "series_id,time,prey,wolf,hare\na,0,1,2,3\n", (),
     "variables (prey, wolf, hare) do not match the run's (var0, var1)"),
    ("unsorted", "series_id,time,var0,var1\na,1,1,2\na,0,1,2\n", (), "unsorted"),
    ("budget", "series_id,time,var0,var1\na,0,1,2\n", ("budget.max_flops=1",), "budget:"),
    # the run trained on non-negative text: no '-' to read or write (issue #19)
    ("negative", "series_id,time,var0,var1\na,0,1,2\na,1,-1.5,2\n", (),
     "series a, time 1, variable 'var0': value -1.5 is negative, but run"),
    ("inf", "series_id,time,var0,var1\na,0,1,2\na,1,1,inf\n", (),
     "row 2: series a, time 1, column 'var1': value inf is not finite"),
    ("draft", "series_id,time,var0,var1\na,0,1,2\na,1,1,2\n", ("eval.draft=nope",),
     "eval.draft: unknown baseline 'nope'"),
]


@pytest.mark.parametrize("case,text,overrides,fragment", BAD_INPUTS,
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_reserves_and_writes_nothing(trained, tmp_path, case, text, overrides,
                                               fragment) -> None:
    source = tmp_path / "in.csv"
    if text is not None:
        source.write_text(text)
    job, settings = _job(trained, source, tmp_path / "fc", overrides=overrides)
    before = _ledger_rows(settings.budget.ledger_url)
    with pytest.raises(LoraForecastError) as info:
        run_forecast_job(job, settings, run_config(trained))
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "fc").exists()
    with Ledger(settings.budget.ledger_url) as ledger:  # a refusal is on record, not reserved
        new = ledger.rows()[before:]
    assert all(row.status == "rejected" and row.spent_flops == 0 for row in new)
    assert (case == "budget") == (len(new) == 1)


@pytest.mark.parametrize("args,fragment", [
    (["input=nope.csv", "horizon=2"], "nope.csv: file not found"),
    (["input=in.csv", "horizon=0"], "horizon: must be >= 1"),
    (["input=in.csv", "horizon=2", "run=/no/such/run"], "run: /no/such/run: no results.json"),
])
def test_command_line_errors_are_one_line_exit_1(tmp_path: Path, args, fragment) -> None:
    (tmp_path / "in.csv").write_text("series_id,time,var0\na,0,1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lora_forecast.forecast", "model=tiny", *args,
         f"output_dir={tmp_path / 'outputs'}"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert not (tmp_path / "outputs" / "forecasts").exists()
    assert not (tmp_path / "outputs" / "ledger.sqlite").exists()
    assert REPO.is_dir()


@pytest.mark.integration  # separate processes or a whole command
def test_forecast_and_export_commands_print_no_warning(trained: Path, tmp_path: Path) -> None:
    """Like training (tests/test_quiet.py): no FutureWarning from peft/transformers, no
    deprecation line, on either command's stderr or stdout."""
    ids, values, time = _test_series(trained)
    source = _input_csv(tmp_path / "new.csv", ids, values[:, :8], time[:8])
    env = subprocess_env()
    env.pop("PYTHONWARNINGS", None)
    commands = [
        ["lora_forecast.forecast", f"run={trained}", f"input={source}", "horizon=2",
         f"out={tmp_path / 'fc'}"],
        ["lora_forecast.export", f"run={trained}", f"out={tmp_path / 'export'}"],
    ]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        noisy = [line for line in (done.stderr + done.stdout).splitlines()
                 if "Warning" in line or "deprecated" in line.lower()]
        assert noisy == [], (command[0], noisy)
    assert (tmp_path / "fc" / "forecasts.csv").is_file()
    assert (tmp_path / "export" / "adapter" / "adapter_config.json").is_file()


def test_the_command_predicts_with_the_planners_one_cost_formula(tmp_path, monkeypatch) -> None:
    """No second formula: replace the planner's per-series forecast cost with a fake that
    records what it is asked, and the command's prediction is the fake's sum."""
    import lora_forecast.planning as planning
    from lora_forecast.config import to_settings
    from lora_forecast.forecast_job import predict_forecast_flops

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SHRINK, "eval.num_samples=3"])
    settings = to_settings(cfg)
    asked: list[tuple[int, list[int]]] = []

    def fake_cost(count, prompt_tokens, generated):
        asked.append((prompt_tokens, list(generated)))
        return 1000.0 * prompt_tokens + sum(generated)

    monkeypatch.setattr(planning, "system_forecast_cost", fake_cost)
    contexts = [np.ones((5, 2)), np.ones((7, 2))]  # 5 and 7 steps of 2 variables
    per_step = planning.token_format(settings).max_tokens_per_step(2, settings.eval.max_int_digits)
    g = 4 * per_step - 1  # a horizon of 4 steps, the last separator not generated
    predicted = predict_forecast_flops(settings, contexts, horizon=4).total
    assert asked == [(5 * per_step, [g] * 3), (7 * per_step, [g] * 3)]
    expected = 1000.0 * 12 * per_step + 6 * g
    assert predicted == pytest.approx(expected * (1 + planning.ROUNDING_MARGIN), rel=1e-12)
