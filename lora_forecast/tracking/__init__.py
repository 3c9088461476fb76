"""Experiment tracking: one :class:`Tracker` per job, chosen by ``logger.name``.

Training code logs only through the :class:`Tracker` protocol, so W&B stays an edge dependency:
``wandb`` is imported only when ``logger=wandb`` is selected, tests run with :class:`NullTracker`,
and only the main process (rank 0) of a multi-GPU job ever opens a run.

Example::

    tracker = make_tracker(settings.logger, run_dir=run_dir, run_name="lr3e-4", config=plain)
    try:
        tracker.log({"train/loss": 1.2, "lr": 3e-4}, step=10)
        tracker.set_summary({"val/loss": 0.9, "end_reason": "budget_exhausted"})
    finally:
        tracker.finish(exit_code=0)

Read an offline run back with :func:`lora_forecast.tracking.offline_reader.read_offline_run`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lora_forecast.config import LoggerConfig
from lora_forecast.errors import ConfigError


@runtime_checkable
class Tracker(Protocol):
    """What a training loop may do with a tracker; every backend implements exactly this."""

    @property
    def run_dir(self) -> Path | None:
        """The backend's own run folder (W&B: ``<run_dir>/wandb/offline-run-*``), or None."""
        ...

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar ``metrics`` at optimiser ``step`` (steps must not decrease)."""
        ...

    def log_image(self, key: str, path: Path, step: int | None = None) -> None:
        """Attach the image file at ``path`` under ``key``; ``step=None`` means the latest step."""
        ...

    def set_summary(self, values: dict[str, Any]) -> None:
        """Record final values (metrics, ``end_reason``) that describe the run as a whole."""
        ...

    def finish(self, exit_code: int = 0) -> None:
        """Close the run; a non-zero ``exit_code`` marks it failed. Safe to call twice."""
        ...


class NullTracker:
    """``logger=none`` and non-main ranks: accepts every call, logs nothing, creates no files."""

    @property
    def run_dir(self) -> Path | None:
        return None

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_image(self, key: str, path: Path, step: int | None = None) -> None:
        pass

    def set_summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


# A builder takes (logger config, job run directory, run name, resolved config dict) and returns
# a started Tracker. Register new backends here; ``LoggerConfig`` validates ``name`` against them.
TrackerBuilder = Callable[[LoggerConfig, Path, str, dict[str, Any]], Tracker]


def _build_null(logger_cfg: LoggerConfig, run_dir: Path, run_name: str,
                config: dict[str, Any]) -> Tracker:
    return NullTracker()


def _build_wandb(logger_cfg: LoggerConfig, run_dir: Path, run_name: str,
                 config: dict[str, Any]) -> Tracker:
    # Imported here so that ``logger=none`` runs never pay for (or require) importing wandb.
    from lora_forecast.tracking.wandb_tracker import WandbTracker

    return WandbTracker.start(logger_cfg, run_dir=run_dir, run_name=run_name, config=config)


TRACKERS: dict[str, TrackerBuilder] = {"none": _build_null, "wandb": _build_wandb}


def make_tracker(logger_cfg: LoggerConfig, *, run_dir: Path, run_name: str,
                 config: dict[str, Any], is_main_process: bool = True) -> Tracker:
    """Start the tracker named by ``logger_cfg.name`` for one job.

    Args:
        logger_cfg: the validated ``logger`` group.
        run_dir: the job's Hydra run directory; W&B writes its ``wandb/`` folder inside it.
        run_name: display name of this job's run (e.g. the Hydra job override string).
        config: the resolved config as a plain dict, stored with the run so it can be rebuilt.
        is_main_process: False on ranks != 0, which always get a :class:`NullTracker` so a
            multi-GPU job opens exactly one run.

    Returns:
        A started tracker; the caller must call ``finish`` (the task wrapper does).

    Raises:
        ConfigError: ``logger_cfg.name`` is not a registered tracker.
    """
    # mode=disabled means "no run at all": NullTracker gives that without starting wandb-core.
    if not is_main_process or logger_cfg.mode == "disabled":
        return NullTracker()
    builder = TRACKERS.get(logger_cfg.name)
    if builder is None:
        raise ConfigError(f"logger.name: unknown tracker {logger_cfg.name!r}; "
                          f"supported: {', '.join(sorted(TRACKERS))}")
    return builder(logger_cfg, run_dir, run_name, config)


def finish_run(tracker: Tracker, run_dir: Path, results: dict[str, Any]) -> None:
    """Close a run's tracker with what its ``results.json`` says: test and baseline metrics,
    paired differences, status and FLOPs as the summary, and the run's figures."""
    metrics = results.get("metrics") or {}
    summary = {f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
    summary.update({f"baseline/{name}/{k}": v
                    for name, scores in (results.get("baselines") or {}).items()
                    for k, v in scores.items() if isinstance(v, int | float)})
    summary.update({f"paired/{metric}/{name}": c["mean"]
                    for metric, block in (results.get("paired") or {}).items()
                    for name, c in block.items()})
    summary.update({"status": results["status"], "end_reason": results["end_reason"],
                    "flops/spent": results["flops"]["spent"]})
    for image in ("forecasts.png", "error_per_step.png"):
        if (run_dir / image).is_file():
            tracker.log_image(image.removesuffix(".png"), run_dir / image)
    tracker.set_summary(summary)
    tracker.finish(0 if results["status"] != "failed" else 1)


__all__ = ["TRACKERS", "NullTracker", "Tracker", "TrackerBuilder", "finish_run", "make_tracker"]
