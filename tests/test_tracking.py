"""Tracking: real offline W&B runs in tmp dirs, read back from their ``.wandb`` logs (no mocks)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lora_forecast.config import LoggerConfig
from lora_forecast.errors import ConfigError
from lora_forecast.tracking import NullTracker, Tracker, make_tracker
from lora_forecast.tracking.offline_reader import (
    find_transaction_log,
    read_offline_run,
    record_payloads,
)
from lora_forecast.tracking.wandb_tracker import WandbTracker

WANDB = LoggerConfig(name="wandb", project="lf-test", group="study-a", tags=["unit"])
CONFIG = {"train": {"lr": 3e-4, "max_steps": 90}, "model": {"kind": "tiny"}}
STEPS = 90  # enough rows that the .wandb file spans more than one 32 KiB block


def _metrics(step: int) -> dict[str, float]:
    return {"train/loss": 2.0 / (step + 1), "lr": 3e-4 * (1 - step / STEPS),
            "grad_norm": 0.5 + step / 100, "tokens_per_s": 1000.0 + step,
            "flops/spent": 1e12 * (step + 1), "flops/budget_fraction": (step + 1) / STEPS}


def _val(step: int) -> float:
    return 1.5 - step / 100


@pytest.fixture(scope="module")
def wandb_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep wandb's cache/config/logs out of $HOME and prove no API key is needed."""
    home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(home / var.lower()))
        mp.delenv("WANDB_API_KEY", raising=False)
        yield home


@pytest.fixture(scope="module")
def logged_run(wandb_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One offline run, as a training job would log it: metrics, val every 10 steps, a plot."""
    job_dir = tmp_path_factory.mktemp("job") / "outputs" / "job0"
    image = job_dir.parent / "forecast.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(image)
    config = {key: dict(value) for key, value in CONFIG.items()}

    tracker = make_tracker(WANDB, run_dir=job_dir, run_name="lr=3e-4", config=config)
    for step in range(STEPS):
        tracker.log(_metrics(step), step=step)
        if step % 10 == 0:
            tracker.log({"val/loss": _val(step)}, step=step)  # same step: merges into the row
    tracker.log_image("eval/forecast", image)  # latest step
    tracker.log_image("eval/forecast_again", image, step=STEPS)
    tracker.set_summary({"val/loss": 0.42, "end_reason": "budget_exhausted"})
    tracker.finish(exit_code=0)
    tracker.finish(exit_code=0)  # idempotent
    return {"tracker": tracker, "job_dir": job_dir, "config": config,
            "run": read_offline_run(job_dir)}


def test_offline_run_lives_inside_the_job_run_dir(logged_run: dict[str, Any]) -> None:
    tracker, job_dir = logged_run["tracker"], logged_run["job_dir"]
    assert isinstance(tracker, WandbTracker) and isinstance(tracker, Tracker)
    assert tracker.run_dir is not None and tracker.run_dir.is_dir()
    assert tracker.run_dir.parent == job_dir / "wandb"
    assert tracker.run_dir.name.startswith("offline-run-")
    assert logged_run["run"]["path"].parent == tracker.run_dir
    assert logged_run["run"]["path"].stat().st_size > 32 * 1024  # reader crossed a block


def test_history_reads_back_every_logged_value(logged_run: dict[str, Any]) -> None:
    rows = {row["_step"]: row for row in logged_run["run"]["history"]}
    assert sorted(rows) == list(range(STEPS + 1))
    for step in range(STEPS):
        for key, value in _metrics(step).items():
            assert rows[step][key] == pytest.approx(value), (step, key)
        assert ("val/loss" in rows[step]) == (step % 10 == 0)
    assert rows[80]["val/loss"] == pytest.approx(_val(80))


def test_images_are_logged_as_media_files(logged_run: dict[str, Any]) -> None:
    rows = {row["_step"]: row for row in logged_run["run"]["history"]}
    files = logged_run["tracker"].run_dir / "files"
    for step, key in ((STEPS - 1, "eval/forecast"), (STEPS, "eval/forecast_again")):
        media = rows[step][key]
        assert media["_type"] == "image-file"
        assert (files / media["path"]).is_file()


def test_summary_config_and_identity(logged_run: dict[str, Any]) -> None:
    run = logged_run["run"]
    assert run["summary"]["end_reason"] == "budget_exhausted"
    assert run["summary"]["val/loss"] == pytest.approx(0.42)  # not the last logged 1.3
    assert run["summary"]["train/loss"] == pytest.approx(_metrics(STEPS - 1)["train/loss"])
    assert run["exit_code"] == 0
    assert (run["project"], run["group"], run["name"], run["tags"]) == (
        "lf-test", "study-a", "lr=3e-4", ["unit"])
    assert {k: v for k, v in run["config"].items() if k != "_wandb"} == CONFIG
    assert logged_run["config"] == CONFIG  # the caller's dict is untouched


def test_reader_rejects_corruption_and_tolerates_a_truncated_tail(
        logged_run: dict[str, Any]) -> None:
    data = logged_run["run"]["path"].read_bytes()
    complete = list(record_payloads(data))
    partial = list(record_payloads(data[: len(data) // 2]))
    assert 0 < len(partial) < len(complete)
    assert partial == complete[: len(partial)]
    corrupt = bytearray(data)
    corrupt[100] ^= 0xFF
    with pytest.raises(ValueError, match="checksum mismatch"):
        list(record_payloads(bytes(corrupt)))
    with pytest.raises(ValueError, match="not a W&B transaction log"):
        list(record_payloads(b"NOPE" + data[4:]))


def test_jobs_in_one_process_each_get_their_own_run(wandb_home: Path, tmp_path: Path) -> None:
    """A basic-launcher multirun: job0 fails; job1 starts while job0 was never finished."""
    dirs = [tmp_path / "multirun" / str(i) for i in range(3)]
    failed = make_tracker(WANDB, run_dir=dirs[0], run_name="job0", config={"job": 0})
    failed.log({"train/loss": 10.0}, step=0)
    failed.finish(exit_code=1)

    abandoned = make_tracker(WANDB, run_dir=dirs[1], run_name="job1", config={"job": 1})
    abandoned.log({"train/loss": 11.0}, step=0)
    last = make_tracker(WANDB, run_dir=dirs[2], run_name="job2", config={"job": 2})
    last.log({"train/loss": 12.0}, step=0)
    abandoned.finish(exit_code=1)  # late: its run was already closed by the next init
    last.finish(exit_code=0)

    run_dirs = {t.run_dir for t in (failed, abandoned, last)}
    assert len(run_dirs) == 3
    for i, (tracker, exit_code) in enumerate(zip((failed, abandoned, last), (1, 0, 0),
                                                 strict=True)):
        assert tracker.run_dir is not None and tracker.run_dir.parent == dirs[i] / "wandb"
        run = read_offline_run(dirs[i])
        assert [row["train/loss"] for row in run["history"]] == [10.0 + i]
        assert run["config"]["job"] == i
        assert run["exit_code"] == exit_code
    assert last.run_dir is not None
    shutil.copytree(last.run_dir, dirs[2] / "wandb" / "offline-run-copy")  # a re-run, same dir
    with pytest.raises(ValueError, match="2 W&B runs"):
        find_transaction_log(dirs[2])
    assert find_transaction_log(last.run_dir).parent == last.run_dir


def _exercise(tracker: Tracker, image: Path) -> None:
    tracker.log({"train/loss": 1.0}, step=0)
    tracker.log_image("plot", image, step=0)
    tracker.set_summary({"end_reason": "done"})
    tracker.finish(exit_code=1)


@pytest.mark.parametrize(("logger", "is_main"), [
    (LoggerConfig(name="none"), True),
    (LoggerConfig(name="wandb", mode="disabled"), True),
    (LoggerConfig(name="wandb"), False),  # multi-GPU rank != 0
])
def test_null_tracker_logs_nothing_and_creates_no_files(
        tmp_path: Path, logger: LoggerConfig, is_main: bool) -> None:
    run_dir = tmp_path / "run"
    tracker = make_tracker(logger, run_dir=run_dir, run_name="r", config={},
                           is_main_process=is_main)
    assert isinstance(tracker, NullTracker) and tracker.run_dir is None
    _exercise(tracker, tmp_path / "missing.png")
    assert list(tmp_path.iterdir()) == []


def test_unknown_tracker_names_the_supported_ones(tmp_path: Path) -> None:
    logger = LoggerConfig(name="none")
    logger.name = "mlflow"  # bypass validation to reach the registry
    with pytest.raises(ConfigError, match="supported: none, wandb"):
        make_tracker(logger, run_dir=tmp_path, run_name="r", config={})
