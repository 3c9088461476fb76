"""Cost prediction from config alone: phases, bounds, and the seed formulas of SPEC."""

from __future__ import annotations

import pytest

from lora_forecast.config import to_settings
from lora_forecast.flops import Architecture
from lora_forecast.planning import predict_cost, run_shape
from tests.conftest import count_with


def seed_forward(n: int, d: int = 896, h: int = 14, layers: int = 24, v: int = 151936) -> float:
    """SPEC's forward(N), written out independently of the implementation."""
    layer = (4 * d * d * n / h + (22 * n * n - n + 10) * h + 22 * d * d * n + 4 * d * n * n
             + 31 * d * n + 20 * n)
    return layers * layer + (2 * d + 22) * v * n - v


def test_default_experiment_with_seed_accounting_matches_spec_formulas(compose_cfg) -> None:
    settings = to_settings(compose_cfg("+experiment=default", "data=synthetic",
                                       "budget.accounting=seed", shrink=False))
    cost = predict_cost(settings)
    # 2000 steps x batch 4 of 512-token windows, training = 3 x forward.
    assert cost.training == pytest.approx(3 * seed_forward(512) * 4 * 2000, rel=1e-12)
    # 1000 systems -> 100 val series of 100 steps; <= 12 tokens a step (2 integer digits,
    # point, 2 decimals, 2 variables): 1199 tokens -> 3 windows each, capped at 64 windows;
    # evaluations at steps 100, 200, ..., 2000 (the last step is one of them): 20.
    assert cost.validation == pytest.approx(20 * 64 * seed_forward(512), rel=1e-12)
    # 100 test systems, prompt 50 x 12 tokens, 10 x 12 - 1 new tokens, no KV cache (seed rule).
    assert cost.forecasting == pytest.approx(100 * seed_forward(600) * 119, rel=1e-12)
    assert cost.total == pytest.approx(cost.training + cost.validation + cost.forecasting)


def test_exact_prediction_uses_the_numeric_head_and_lora(compose_cfg) -> None:
    numeric = to_settings(compose_cfg("+experiment=default", "data=synthetic", shrink=False))
    full = to_settings(compose_cfg("+experiment=default", "data=synthetic", "model.head=full",
                                   shrink=False))
    arch = Architecture.qwen2_5_0_5b()
    step = count_with(arch, accounting="exact", mode="train", context_tokens=512, batch_size=4,
                       lora_rank=4, lm_head_bias=True, head_vocab=13).total
    assert predict_cost(numeric).per_train_step == pytest.approx(step)
    assert predict_cost(full).training > 1.2 * predict_cost(numeric).training


def test_shape_bounds_and_task_variants(compose_cfg) -> None:
    settings = to_settings(compose_cfg("eval.n_systems=3"))
    shape = run_shape(settings)
    assert shape.n_test_systems == 3
    assert shape.tokens_per_step == 2 * (2 + 1 + 2) + 2
    assert predict_cost(to_settings(compose_cfg("+experiment=baselines"))).total == 0.0
    evaluate = predict_cost(to_settings(compose_cfg("+experiment=baseline")))
    assert evaluate.training == evaluate.validation == 0.0 and evaluate.forecasting > 0


def test_sampled_forecasting_prefills_each_system_once(compose_cfg) -> None:
    from lora_forecast.planning import flops_counter

    greedy = to_settings(compose_cfg("eval.n_systems=3"))
    sampled = to_settings(compose_cfg("eval.n_systems=3", "eval.num_samples=4"))
    shape, count = run_shape(sampled), flops_counter(sampled)
    full = count("inference", shape.prompt_tokens, new_tokens=shape.horizon_tokens)
    prefill = count("inference", shape.prompt_tokens, new_tokens=1)
    assert predict_cost(sampled).forecasting == pytest.approx(
        shape.n_test_systems * (prefill + 4 * (full - prefill)), rel=1e-12)
    assert predict_cost(greedy).forecasting == shape.n_test_systems * full
    assert predict_cost(sampled).forecasting < 4 * predict_cost(greedy).forecasting


def test_metering_charges_one_prefill_per_system(compose_cfg) -> None:
    from types import SimpleNamespace

    import numpy as np

    from lora_forecast.planning import flops_counter, forecast_cost

    settings = to_settings(compose_cfg("eval.n_systems=3"))
    count = flops_counter(settings)
    greedy = SimpleNamespace(prompt_tokens=np.array([30]), generated_tokens=np.array([[9]]))
    spent = forecast_cost(count, greedy.prompt_tokens, greedy.generated_tokens)
    assert spent == count("inference", 30, new_tokens=9)
    sampled = SimpleNamespace(prompt_tokens=np.array([30]), generated_tokens=np.array([[9, 5]]))
    prefill = count("inference", 30, new_tokens=1)
    expected = prefill + sum(count("inference", 30, new_tokens=g) - prefill for g in (9, 5))
    spent = forecast_cost(count, sampled.prompt_tokens, sampled.generated_tokens)
    assert spent == pytest.approx(expected, rel=1e-12)


def test_training_windows_shorter_than_the_prompts_are_pointed_out(compose_cfg) -> None:
    """Qwen tokens, 2 variables, 2 decimals: a step is '0.25,1.50;' = 10 tokens at one integer
    digit, 12 at eval.max_int_digits=2; 8 context steps -> prompts of 80 (at most 96) tokens."""
    from lora_forecast.planning import short_training_context

    note = short_training_context(to_settings(compose_cfg("data.context_tokens=64")))
    assert note == ("data.context_tokens=64 is shorter than the evaluation's prompts "
                    "(eval.context_steps=8 steps: 80 tokens at one integer digit per number, "
                    "at most 96): the model trains on shorter windows than it forecasts from; "
                    "consider data.context_tokens>=80")
    assert short_training_context(to_settings(compose_cfg("data.context_tokens=80"))) is None
    baseline = compose_cfg("+experiment=baseline", "data.context_tokens=64")
    assert short_training_context(to_settings(baseline)) is None  # nothing is trained


def test_the_short_context_line_comes_before_the_run_starts(compose_cfg, run_dir,
                                                            caplog) -> None:
    import logging

    from lora_forecast.task import run_task

    with caplog.at_level(logging.WARNING, logger="lora_forecast.task"):
        run_task(compose_cfg("budget.dry_run=true"), run_dir)
    assert [r.getMessage()[:36] for r in caplog.records] == [
        "data.context_tokens=64 is shorter th"]


def test_a_run_charges_its_forecasts_with_the_counter_that_predicted_them(
        compose_cfg, run_dir, monkeypatch) -> None:
    """One cost owner: the planner builds the bound counter once, and every validation and
    test forecast of the run is charged with it (no counter rebuilt per forecast)."""
    import json

    import lora_forecast.planning as planning
    from lora_forecast.task import run_task

    built, original = [], planning.flops_counter

    def counting(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(planning, "flops_counter", counting)
    run_task(compose_cfg("train.eval_forecast=true", "train.eval_forecast_systems=2"), run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    kinds = results["flops"]["spent_by_kind"]
    assert kinds["forecasting"] > 0 and kinds["validation"] > 0  # forecasts were charged
    assert len(built) == 1
