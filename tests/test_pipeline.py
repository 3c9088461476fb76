"""End-to-end runs of the pipeline's variants on the tiny model, through the composed config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lora_forecast.task import run_task


def _run(compose_cfg, run_dir: Path, *overrides: str) -> tuple[float | None, dict]:
    value = run_task(compose_cfg(*overrides), run_dir)
    return value, json.loads((run_dir / "results.json").read_text())


def test_smoke_experiment_writes_results_and_figures(compose_cfg, run_dir: Path) -> None:
    value, results = _run(compose_cfg, run_dir, "+experiment=smoke", "train.max_steps=4",
                          "train.eval_every=2")
    assert results["status"] == "completed" and results["end_reason"] == "max_steps"
    metrics = results["metrics"]
    assert metrics["n_systems"] == 2 and metrics["parse_failures"] == 0
    assert all(math.isfinite(metrics[k]) for k in ("mse", "mae", "r2"))
    assert len(metrics["mse_per_step"]) == 2 and len(metrics["mse_per_variable"]) == 2
    assert value == results["train"]["best_metric"]  # what a sweeper optimises
    flops = results["flops"]
    assert 0 < flops["spent"] <= flops["predicted"]
    assert flops["spent"] == pytest.approx(sum(flops["spent_by_kind"].values()))
    for name in ("forecasts.png", "error_per_step.png", "split.json", "adapter", "best"):
        assert (run_dir / name).exists(), name


def test_forecast_validation_can_drive_early_stopping(compose_cfg, run_dir: Path) -> None:
    value, results = _run(compose_cfg, run_dir, "train.eval_forecast=true",
                          "train.monitor=val/mse", "train.eval_forecast_systems=2")
    history = [h for h in results["train"]["history"] if "val/mse" in h]
    assert [h["step"] for h in history] == [2, 4]
    assert value == min(h["val/mse"] for h in history)
    assert results["flops"]["spent"] <= results["flops"]["predicted"]


def test_untrained_llm_sampling_gives_intervals_and_crps(compose_cfg, run_dir: Path) -> None:
    _, results = _run(compose_cfg, run_dir, "+experiment=baseline", "eval.num_samples=4")
    metrics = results["metrics"]
    assert results["train"] is None and results["flops"]["spent_by_kind"]["training"] == 0
    assert 0.0 <= metrics["coverage_80"] <= 1.0 and metrics["crps"] >= 0
    # the field's metrics for the LLM (with samples: WQL, CRPS) and for every baseline
    ids = results["eval_series"]["ids"]
    for key in ("mase", "smape", "msis", "wql", "mase_rel", "wql_rel", "crps_rel", "mse_rel"):
        assert metrics[key] is not None and metrics[key] >= 0, key
    assert metrics["rel_reference"] == "seasonal_naive"
    assert all(len(v) == len(ids) for v in metrics["per_series"].values())
    for name, scores in results["baselines"].items():
        assert scores["mase"] >= 0 and scores["smape"] >= 0 and scores["mase_rel"] > 0, name
        assert set(results["paired"]["mse"]) >= {name}
    assert results["paired"]["mse"]["persistence"]["n"] == metrics["n_systems"]


def test_forecast_validation_can_monitor_the_fields_metrics(compose_cfg, run_dir: Path) -> None:
    value, results = _run(compose_cfg, run_dir, "train.eval_forecast=true",
                          "train.monitor=val/mase", "train.eval_forecast_systems=2")
    history = [h for h in results["train"]["history"] if "val/mase" in h]
    assert [h["step"] for h in history] == [2, 4]
    assert all(h["val/mse"] >= 0 and h["val/smape"] >= 0 and h["val/mase_rel"] > 0
               for h in history)
    assert value == min(h["val/mase"] for h in history)


def test_free_decoding_counts_parse_failures(compose_cfg, run_dir: Path) -> None:
    _, results = _run(compose_cfg, run_dir, "+experiment=baseline", "eval.constrained=false")
    metrics = results["metrics"]
    assert metrics["n_systems"] + metrics["parse_failures"] == 2
    assert metrics["parse_failures"] >= 1  # a random model rarely writes valid LLMTIME


def test_baselines_experiment_spends_nothing(compose_cfg, run_dir: Path) -> None:
    _, results = _run(compose_cfg, run_dir, "+experiment=baselines",
                      "eval.baselines=[persistence,ode_fit]")
    assert results["metrics"] is None and set(results["baselines"]) == {"persistence", "ode_fit"}
    assert results["flops"]["predicted"] == results["flops"]["spent"] == 0
