"""W&B backend: one run per job, written inside that job's Hydra run directory.

Why these choices:
- ``dir=run_dir`` puts ``wandb/offline-run-*`` next to the job's checkpoints and results, so a
  run directory is self-contained and ``wandb sync <run_dir>/wandb/offline-run-*`` uploads it.
- ``mode=offline`` (the default in ``conf/logger/wandb.yaml``) needs no network and no API key.
- ``reinit="finish_previous"``: a Hydra multirun with the basic launcher runs every job in one
  process; each job must get its own run, and a job that died without ``finish`` must not
  swallow the next job's metrics. wandb closes such a run with exit code 0, so the task
  wrapper must still call ``finish(exit_code=1)`` when a job fails.
- ``silent`` and ``console="off"`` are passed as per-run settings instead of ``WANDB_SILENT`` so
  the process environment is left alone; Hydra already writes each job's log file, so console
  capture would only duplicate it. System stats stay on (GPU utilisation is worth having).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import wandb

from lora_forecast.config import LoggerConfig
from lora_forecast.errors import LoraForecastError


class WandbTracker:
    """A started W&B run behind the :class:`~lora_forecast.tracking.Tracker` protocol."""

    def __init__(self, run: wandb.Run) -> None:
        self._run = run
        self._row_open = False  # a history row is logged but not yet committed
        self._finished = False

    @classmethod
    def start(cls, logger_cfg: LoggerConfig, *, run_dir: Path, run_name: str,
              config: dict[str, Any]) -> WandbTracker:
        """Open this job's run (finishing any run still open in this process).

        Args:
            logger_cfg: project, entity, group (the sweep/study name), mode and tags.
            run_dir: the job's Hydra run directory; created if missing.
            run_name: display name of the run.
            config: the resolved config dict, stored as the run's config.

        Returns:
            The tracker wrapping the new run.

        Raises:
            LoraForecastError: wandb refused to start (e.g. ``mode=online`` without a login).
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(mode=logger_cfg.mode, silent=True, console="off")
        try:
            run = wandb.init(
                project=logger_cfg.project,
                entity=logger_cfg.entity,
                group=logger_cfg.group,
                name=run_name,
                tags=list(logger_cfg.tags) or None,
                config=config,
                dir=str(run_dir),
                settings=settings,
                reinit="finish_previous",
            )
        except wandb.errors.Error as exc:
            raise LoraForecastError(
                f"logger: wandb.init failed in mode={logger_cfg.mode}: {exc} "
                "(logger.mode=offline needs no network or key; upload later with `wandb sync`)"
            ) from exc
        return cls(run)

    @property
    def run_dir(self) -> Path | None:
        """``<run_dir>/wandb/offline-run-<time>-<id>`` (``run-*`` when online)."""
        return Path(self._run.settings.sync_dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log scalars at ``step``; several calls with the same step merge into one row."""
        self._run.log(dict(metrics), step=step)
        self._row_open = True

    def log_image(self, key: str, path: Path, step: int | None = None) -> None:
        """Log the image file at ``path``; W&B copies it into the run's ``files/media``.

        ``step=None`` attaches the image to the row of the latest logged step (``commit=False``
        keeps the next ``log`` at that step valid instead of advancing W&B's step counter).
        """
        image = {key: wandb.Image(str(path))}
        if step is None:
            self._run.log(image, commit=False)
        else:
            self._run.log(image, step=step)
        self._row_open = True

    def set_summary(self, values: dict[str, Any]) -> None:
        """Overwrite summary entries: final metrics and ``end_reason``.

        The pending history row is committed first: W&B copies each row into the summary when
        the row is flushed, so a row still open at ``finish`` would overwrite these values with
        the last *logged* ones (e.g. a final ``val/loss`` with the last periodic one).
        """
        if self._row_open:
            self._run.log({}, commit=True)
            self._row_open = False
        self._run.summary.update(dict(values))

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (``exit_code != 0`` shows as failed) and wait until it is on disk.

        ``run.finish`` only *informs* wandb-core, which closes the ``.wandb`` file later;
        ``wandb.teardown`` waits for that, so once this returns the job's run directory is
        complete (ready to read, copy or ``wandb sync``). The next job starts a fresh service.
        Skipped while another run is open in this process, which teardown would end too.
        """
        if self._finished:
            return
        self._finished = True
        self._run.finish(exit_code=exit_code)
        if wandb.run is None:
            wandb.teardown()
