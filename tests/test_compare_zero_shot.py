"""``train.compare_zero_shot``: the untrained model is validated at step 0 and kept when no
adapter beats it, so fine-tuning that hurts leaves the base model in place."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lora_forecast.config import to_settings
from lora_forecast.planning import predict_cost
from lora_forecast.task import run_task


def _run(compose_cfg, run_dir: Path, lr: str) -> dict:
    cfg = compose_cfg("train.compare_zero_shot=true", f"train.lr={lr}", "train.max_steps=4",
                      "train.eval_every=2")
    run_task(cfg, run_dir)
    return json.loads((run_dir / "results.json").read_text()), cfg


def _lora_b_norm(path: Path) -> float:
    state = torch.load(path, weights_only=True)
    return sum(float(v.abs().sum()) for k, v in state.items() if "lora_B" in k)


def test_training_that_hurts_keeps_the_untrained_model(compose_cfg, run_dir: Path) -> None:
    results, _ = _run(compose_cfg, run_dir, "30.0")  # diverges: every adapter is worse
    train = results["train"]
    history = {h["step"]: h["val/loss"] for h in train["history"] if "val/loss" in h}
    assert sorted(history) == [0, 2, 4]
    assert min(history[2], history[4]) > history[0]  # it did hurt
    assert train["kept"] == "untrained" and train["best_step"] == 0
    assert train["zero_shot_metric"] == history[0] == train["best_metric"]
    # best/ holds the untrained adapter: every LoRA B is still zero, i.e. the base model
    assert _lora_b_norm(run_dir / "best" / "trainable.pt") == 0.0
    assert _lora_b_norm(run_dir / "adapter" / "trainable.pt") > 0.0  # the last one trained


def test_training_that_helps_keeps_the_adapter(compose_cfg, run_dir: Path) -> None:
    results, cfg = _run(compose_cfg, run_dir, "3e-3")
    train = results["train"]
    history = {h["step"]: h["val/loss"] for h in train["history"] if "val/loss" in h}
    assert train["kept"] == "adapter" and train["best_step"] in (2, 4)
    assert train["best_metric"] == min(history[2], history[4]) < history[0]
    assert _lora_b_norm(run_dir / "best" / "trainable.pt") > 0.0
    # the step-0 evaluation was predicted and charged: 3 evaluations, not 2
    settings = to_settings(cfg)
    prediction = predict_cost(settings)
    without = predict_cost(replace(settings, train=replace(settings.train,
                                                           compare_zero_shot=False)))
    assert prediction.validation == pytest.approx(1.5 * without.validation)
    assert results["flops"]["spent_by_kind"]["validation"] == pytest.approx(
        prediction.validation)


def test_off_by_default_changes_nothing(compose_cfg, run_dir: Path) -> None:
    run_task(compose_cfg("train.max_steps=4", "train.eval_every=2"), run_dir)
    train = json.loads((run_dir / "results.json").read_text())["train"]
    assert "kept" not in train and "zero_shot_metric" not in train
    assert [h["step"] for h in train["history"]] == [1, 2, 3, 4]


@pytest.mark.parametrize(("kept", "fragment"), [
    ("untrained", "no adapter beat the untrained model (val/loss 2.5 at step 0): kept the "
                  "untrained model"),
    ("adapter", "the adapter beat the untrained model (1.25 < 2.5): kept"),
])
def test_the_summary_says_which_model_was_kept(kept: str, fragment: str) -> None:
    from lora_forecast.summary import SummaryContext, format_summary

    best = 2.5 if kept == "untrained" else 1.25
    results = {"status": "completed", "experiment": "x",
               "train": {"steps": 4, "best_metric": best, "best_step": 0 if best == 2.5 else 4,
                         "zero_shot_metric": 2.5, "kept": kept}}
    text = format_summary(results, SummaryContext(run_dir="r"))
    assert f"  compare_zero_shot: {fragment}" in text.splitlines()[2]
