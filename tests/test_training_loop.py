"""The training loop a researcher can trust (issue #4): early stopping keeps the best adapter,
padding carries no loss, gradient accumulation equals a larger batch, W&B records what the
loop logged, and only the main process writes files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import lora_forecast.training.distributed as distributed_module
from lora_forecast.budget.ledger import Ledger
from lora_forecast.budget.meter import FlopsMeter
from lora_forecast.config import LoraConfig, ModelConfig, TrainConfig
from lora_forecast.data.windows import TokenWindows
from lora_forecast.finetune import batch_loss_fn
from lora_forecast.llmtime import LLMTimeCodec, LLMTimeFormat
from lora_forecast.models.build import build_model, trainable_state
from lora_forecast.models.tokenizer import qwen_tokenizer
from lora_forecast.results import read_results
from lora_forecast.task import run_task
from lora_forecast.tracking.offline_reader import read_offline_run
from lora_forecast.training.loop import Trainer, TrainHooks


def qwen_format() -> LLMTimeFormat:
    return LLMTimeFormat.for_tokenizer(LLMTimeCodec(alpha=10.0), qwen_tokenizer())


TRAIN_KEYS = (
    "train/loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "flops/spent",
    "flops/budget_fraction",
)


def trainable(run_dir: Path, sub: str) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / sub / "trainable.pt", weights_only=True)


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ---- early stopping and best/ -------------------------------------------------------------------


def test_early_stopping_ends_the_run_and_best_holds_the_best_validated_adapter(
    compose_cfg, run_dir: Path
) -> None:
    # patience 1 with an improvement threshold no loss can meet: the first evaluation (step 2)
    # is the best, the second (step 4) stops the run.
    cfg = compose_cfg(
        "train.max_steps=8", "train.eval_every=2", "train.patience=1", "train.min_delta=100"
    )
    monitored = run_task(cfg, run_dir)
    results = read_results(run_dir)
    train = results["train"]
    assert (results["status"], results["end_reason"]) == ("completed", "early_stopped")
    assert train["steps"] == 4 and train["best_step"] == 2
    val = {h["step"]: h["val/loss"] for h in train["history"] if "val/loss" in h}
    assert sorted(val) == [2, 4]
    assert train["best_metric"] == pytest.approx(val[2]) and monitored == pytest.approx(val[2])
    best = trainable(run_dir, "best")
    step2 = torch.load(run_dir / "checkpoints" / "step_0000002" / "trainable.pt", weights_only=True)
    assert max_abs_diff(best, step2) == 0.0  # the adapter validated at step 2, not a later one
    assert max_abs_diff(best, trainable(run_dir, "adapter")) > 0  # the last one differs
    assert results["metrics"] is not None  # the test forecast still ran (on best/)


# ---- padding is not in the loss -----------------------------------------------------------------


def _windows(rows: list[list[int]], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded windows through the project's own masking (TokenWindows)."""
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    data = TokenWindows(ids, mask)
    return {key: torch.stack([data[i][key] for i in range(len(data))]) for key in data[0]}


@pytest.mark.parametrize("head", ["full", "numeric"])
def test_padding_is_excluded_from_the_loss(head: str) -> None:
    tokenizer = qwen_tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="tiny", head=head, lm_head_bias=True), LoraConfig())
    with torch.no_grad():  # a non-trivial adapter, so LoRA paths see the padding too
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.05)
    loss_fn = batch_loss_fn(head, qwen_format())
    long = tokenizer.encode("0.25,1.50;0.27,1.47;0.31,1.42;0.36,1.37", add_special_tokens=False)
    short = tokenizer.encode("2.10,0.93;2.31,0.88", add_special_tokens=False)
    pad = tokenizer.pad_token_id
    model.eval()
    with torch.no_grad():
        tight = loss_fn(model, _windows([long, short], len(long), pad))
        padded = loss_fn(model, _windows([long, short], len(long) + 9, pad))
        alone = [loss_fn(model, _windows([row], len(row), pad)) for row in (long, short)]
    assert float(padded) == pytest.approx(float(tight), abs=1e-5)
    # The short row's padding carries no weight: the batch loss is the token-weighted mean of
    # each row's loss computed without any padding at all.
    n_long, n_short = len(long) - 1, len(short) - 1  # shifted targets per row
    expected = (float(alone[0]) * n_long + float(alone[1]) * n_short) / (n_long + n_short)
    assert float(tight) == pytest.approx(expected, abs=1e-5)


# ---- gradient accumulation ----------------------------------------------------------------------

WIDTH = 24

REAL_LENGTHS = (24, 9, 24, 15, 20, 24)  # unequal padding: token-weighting matters


def _train_windows() -> TokenWindows:
    allowed = qwen_format().head_ids()
    rng = np.random.default_rng(0)
    ids = torch.full((len(REAL_LENGTHS), WIDTH), qwen_tokenizer().pad_token_id)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(REAL_LENGTHS):
        ids[i, :n] = torch.as_tensor(rng.choice(allowed, size=n))
        mask[i, :n] = 1
    return TokenWindows(ids, mask)


def _fit(
    run_dir: Path,
    batch_size: int,
    grad_accum: int,
    steps: int = 3,
    accelerator: Accelerator | None = None,
    **hooks: Any,
) -> tuple[Trainer, list[tuple[int, tuple[int, ...]]]]:
    """Train a fresh tiny model; returns the trainer and (step, window row) per loss call."""
    data = _train_windows()
    rows = {tuple(data.input_ids[i].tolist()): i for i in range(len(data))}
    seen: list[tuple[int, tuple[int, ...]]] = []
    loss = batch_loss_fn("numeric", qwen_format())
    holder: dict[str, Trainer] = {}

    def recording_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if torch.is_grad_enabled():  # training micro-batches only, not validation
            seen.extend((holder["t"].step, rows[tuple(r.tolist())]) for r in batch["input_ids"])
        return loss(model, batch)

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="tiny", head="numeric", lm_head_bias=True), LoraConfig())
    cfg = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=1e-2,
        eval_every=100,
        val_max_windows=2,
        seed=0,
    )
    hook_args = dict(
        loss_fn=recording_loss,
        meter=FlopsMeter(None, None, math.inf),
        step_flops=1.0,
        val_window_flops=1.0,
        progress=False,
    )
    trainer = Trainer(
        model,
        data,
        data,
        cfg,
        run_dir,
        TrainHooks(**{**hook_args, **hooks}),
        accelerator or Accelerator(cpu=True),
    )
    holder["t"] = trainer
    trainer.result = trainer.fit()
    return trainer, seen


def _windows_per_step(seen: list[tuple[int, tuple[int, ...]]]) -> dict[int, list[int]]:
    steps: dict[int, list[int]] = {}
    for step, row in seen:
        steps.setdefault(step, []).append(row)
    return {step: sorted(rows) for step, rows in steps.items()}


def test_gradient_accumulation_equals_a_larger_batch(tmp_path: Path) -> None:
    """batch 2 x accum 2 (and 1 x 4) == batch 4: same windows per step, same LoRA weights.

    Six windows, three steps of four: step 2 crosses the epoch boundary, where drawing
    micro-batches independently would give the two schedules different windows.
    """
    runs = {f"{b}x{a}": _fit(tmp_path / f"{b}x{a}", b, a) for b, a in ((4, 1), (2, 2), (1, 4))}
    reference_trainer, reference_seen = runs.pop("4x1")
    reference = trainable_state(reference_trainer.acc.unwrap_model(reference_trainer.model))
    losses = [h["train/loss"] for h in reference_trainer.result.history]
    assert len(_windows_per_step(reference_seen)) == 3
    for name, (trainer, seen) in runs.items():
        assert _windows_per_step(seen) == _windows_per_step(reference_seen), name
        state = trainable_state(trainer.acc.unwrap_model(trainer.model))
        assert max_abs_diff(state, reference) <= 1e-6, name
        assert [h["train/loss"] for h in trainer.result.history] == pytest.approx(losses, rel=1e-5)
    assert (
        max_abs_diff(
            reference,
            trainable_state(build_model(ModelConfig(kind="tiny", lm_head_bias=True), LoraConfig())),
        )
        > 1e-3
    )  # it did train


# ---- only the main process writes ---------------------------------------------------------------


class NonMainAccelerator(Accelerator):
    """A rank that is not rank 0 (the process itself is alone; only the flag differs)."""

    @property
    def is_main_process(self) -> bool:
        return False


class RecordingTracker:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append((step, metrics))


def test_trainer_on_a_non_main_rank_trains_but_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tracker = RecordingTracker()
    trainer, _ = _fit(
        run_dir, 2, 1, steps=2, tracker=tracker, accelerator=NonMainAccelerator(cpu=True)
    )
    assert trainer.result.steps == 2 and len(trainer.result.history) == 2  # it did train
    assert trainer.save_checkpoint() is None
    assert list(run_dir.iterdir()) == []  # no checkpoints, best/, adapter/, history
    assert tracker.calls == []


def test_task_on_a_non_main_rank_writes_no_results_no_tracker_and_no_ledger_row(
    compose_cfg, run_dir: Path, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(distributed_module, "Accelerator", NonMainAccelerator)
    cfg = compose_cfg("logger=wandb", "train.checkpoint_every=1")
    assert run_task(cfg, run_dir) is not None  # the rank computes the monitored value too
    assert list(run_dir.iterdir()) == []  # no results.json, .run_id, split.json, wandb/, plots
    with Ledger(cfg.budget.ledger_url) as ledger:
        assert ledger.rows() == []  # only rank 0 reserves and settles


# ---- W&B, offline, not mocked -------------------------------------------------------------------


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "wandb_home"
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return home


def test_wandb_offline_run_records_the_training_log_summary_and_forecast_plot(
    compose_cfg, run_dir: Path, wandb_home: Path
) -> None:
    run_task(compose_cfg("logger=wandb"), run_dir)
    results = read_results(run_dir)
    assert list((run_dir / "wandb").glob("offline-run-*"))
    run = read_offline_run(run_dir)
    assert run["exit_code"] == 0

    rows = [row for row in run["history"] if "train/loss" in row]
    assert [row["_step"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert set(TRAIN_KEYS) <= set(row), sorted(row)
    logged = {h["step"]: h for h in results["train"]["history"]}
    for row in rows:
        for key in ("train/loss", "lr", "grad_norm", "flops/spent", "flops/budget_fraction"):
            assert row[key] == pytest.approx(logged[row["_step"]][key]), key
    val = {row["_step"]: row["val/loss"] for row in run["history"] if "val/loss" in row}
    assert val == pytest.approx({s: h["val/loss"] for s, h in logged.items() if "val/loss" in h})
    assert sorted(val) == [2, 4]

    summary = run["summary"]
    assert summary["end_reason"] == "max_steps" and summary["status"] == "completed"
    for key in ("mse", "mae", "r2", "mase", "smape", "mase_rel"):
        assert summary[f"test/{key}"] == pytest.approx(results["metrics"][key]), key
    for name, scores in results["baselines"].items():  # every baseline's field metrics too
        assert summary[f"baseline/{name}/mase"] == pytest.approx(scores["mase"]), name
        assert summary[f"paired/mse/{name}"] == pytest.approx(
            results["paired"]["mse"][name]["mean"]), name
    assert summary["flops/spent"] == pytest.approx(results["flops"]["spent"])

    images = [row["forecasts"] for row in run["history"] if "forecasts" in row]
    assert images and images[0]["_type"] == "image-file"
    files = run["path"].parent / "files"
    assert (files / images[0]["path"]).is_file()
