"""Pure training parts: lr schedules, early stopping, resumable batch order, checkpoints."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lora_forecast.config import TrainConfig
from lora_forecast.training import checkpoint as ckpt
from lora_forecast.training.batches import BatchOrder
from lora_forecast.training.early_stopping import EarlyStopping
from lora_forecast.training.schedule import build_scheduler


def multipliers(schedule: str, warmup: int, max_steps: int, steps: int) -> list[float]:
    """The lr multiplier (lr / base lr) at optimiser steps 0 .. steps-1, through the real
    scheduler: one optimiser step, then one scheduler step, as the training loop does."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2.0)
    scheduler = build_scheduler(optimizer, TrainConfig(schedule=schedule, warmup_steps=warmup,
                                                       max_steps=max_steps))
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0] / 2.0)
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("constant", 0, 1.0),
        ("constant", 99, 1.0),
        ("linear", 0, 1.0),
        ("linear", 50, 0.5),
        ("linear", 100, 0.0),
        ("cosine", 0, 1.0),
        ("cosine", 50, 0.5),
        ("cosine", 100, 0.0),
        ("cosine", 25, (1 + math.cos(math.pi / 4)) / 2),
    ],
)
def test_schedule_values(schedule: str, step: int, expected: float) -> None:
    assert multipliers(schedule, 0, 100, step + 1)[step] == pytest.approx(expected)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_warmup_rises_linearly_from_zero_then_follows_the_schedule(schedule: str) -> None:
    f = multipliers(schedule, 4, 104, 55)
    assert f[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert f[54] == pytest.approx({"constant": 1.0, "linear": 0.5, "cosine": 0.5}[schedule])


def test_early_stopping_counts_evaluations_without_improvement() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert stopper.update(1.0, 10)
    assert not stopper.update(0.95, 20)  # better, but by less than min_delta
    assert not stopper.should_stop
    assert not stopper.update(1.2, 30)
    assert stopper.should_stop
    assert (stopper.best, stopper.best_step) == (1.0, 10)
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(json.loads(json.dumps(stopper.state_dict())))
    assert restored == stopper


def test_early_stopping_without_patience_never_stops() -> None:
    stopper = EarlyStopping(patience=None)
    for step, value in enumerate([3.0, 4.0, 5.0, 6.0, float("nan")]):
        stopper.update(value, step)
    assert not stopper.should_stop and stopper.best == 3.0


def test_batch_order_is_a_pure_function_of_seed_and_position() -> None:
    order = BatchOrder(n=10, batch_size=3, seed=7)
    first = [order.indices(i).tolist() for i in range(8)]
    again = [BatchOrder(n=10, batch_size=3, seed=7).indices(i).tolist() for i in range(8)]
    assert first == again
    epoch0 = np.concatenate([order.indices(i) for i in range(order.batches_per_epoch)])
    assert sorted(epoch0.tolist()) == list(range(10))  # each epoch visits every window once
    assert first[:4] != first[4:8]  # next epoch is reshuffled


def test_batch_order_shards_ranks_disjointly() -> None:
    ranks = [BatchOrder(n=8, batch_size=2, seed=0, world_size=2, rank=r) for r in (0, 1)]
    seen = np.concatenate([ranks[r].indices(i) for i in range(2) for r in (0, 1)])
    assert sorted(seen.tolist()) == list(range(8))


def _save(directory: Path, step: int, keep: int = 2) -> Path:
    return ckpt.save_checkpoint(
        directory,
        step,
        trainable={"w": torch.full((2,), float(step))},
        optimizer={"state": {}},
        scheduler={"last_epoch": step},
        state={"step": step},
        keep=keep,
    )


def test_checkpoints_round_trip_and_keep_newest(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        _save(tmp_path, step)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_0000002", "step_0000003"]
    loaded = ckpt.latest_valid_checkpoint(tmp_path)
    assert loaded is not None and loaded.state == {"step": 3}
    assert torch.equal(loaded.trainable["w"], torch.full((2,), 3.0))


def test_corrupt_or_partial_checkpoints_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    _save(tmp_path, 1, keep=5)
    good = _save(tmp_path, 2, keep=5)
    truncated = _save(tmp_path, 3, keep=5)
    (truncated / "optimizer.pt").write_bytes(b"x")
    partial = _save(tmp_path, 4, keep=5)
    (partial / "meta.json").unlink()
    loaded = ckpt.latest_valid_checkpoint(tmp_path)
    assert loaded is not None and loaded.path == good
    assert "step_0000004" in caplog.text and "step_0000003" in caplog.text


def test_rng_capture_and_restore_replays_random_streams() -> None:
    state = ckpt.capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_collate_stacks_the_windows_in_index_order() -> None:
    from lora_forecast.data.windows import TokenWindows
    from lora_forecast.training.loop import collate

    ids = torch.arange(12).reshape(4, 3)  # window i holds 3i, 3i+1, 3i+2
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
    batch = collate(TokenWindows(ids, mask), [3, 1], torch.device("cpu"))
    assert batch["input_ids"].tolist() == [[9, 10, 11], [3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1], [0, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 11], [-100, 4, 5]]
