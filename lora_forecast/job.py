"""The edges of one Hydra job that the task touches: its log file, its command, its run folder.

Hydra creates the run folder (``.hydra/`` and ``<job>.log``) before our code runs. A dry run or
a run stopped by a config, data or model error before anything was reserved produced nothing
worth keeping, so :func:`discard_unused_run_dir` removes that folder again; a run that started
keeps its folder, and its error goes into the log with :func:`log_to_file` (the console already
shows it as one ``error:`` line, so it is not printed twice).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lora_forecast.errors import ConfigError

HYDRA_ONLY = {".hydra"}  # plus the job's *.log files


def _file_handlers() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def job_log_file() -> str | None:
    """The run's log file (Hydra's job logging), or None outside a Hydra job."""
    handlers = _file_handlers()
    return handlers[0].baseFilename if handlers else None


def log_to_file(text: str, level: int = logging.INFO, name: str = "lora_forecast") -> None:
    """Write ``text`` to the run's log file only (the console shows it already)."""
    record = logging.LogRecord(name, level, __file__, 0, text, None, None)
    for handler in _file_handlers():
        if record.levelno >= handler.level:
            handler.handle(record)


def rerun_command() -> str:
    """``python -m lora_forecast`` with this job's command-line overrides, shell-quoted."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return " ".join(["python -m lora_forecast", *(shlex.quote(o) for o in overrides)])


def _hydra_only(run_dir: Path) -> bool:
    """Hydra made this folder for this job (``.hydra/``) and nothing else was written to it."""
    entries = list(run_dir.iterdir())
    return (run_dir / ".hydra").is_dir() and all(
        p.name in HYDRA_ONLY or (p.is_file() and p.suffix == ".log") for p in entries)


def discard_unused_run_dir(run_dir: Path, output_dir: Path) -> bool:
    """Remove a run folder that holds only what Hydra wrote, and empty parents up to
    ``output_dir``; the working directory and folders with anything else are kept.

    Args:
        run_dir: the job's run folder.
        output_dir: the project's ``output_dir``; parents are removed below it only.

    Returns:
        True if the folder was removed.
    """
    run_dir, output_dir = run_dir.resolve(), output_dir.resolve()
    cwd = Path.cwd().resolve()
    if not run_dir.is_dir() or run_dir == cwd or run_dir in cwd.parents:
        return False
    if not _hydra_only(run_dir):
        return False
    for handler in _file_handlers():  # the log is about to go: stop writing to it
        if Path(handler.baseFilename).parent == run_dir:
            logging.getLogger().removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.parents:
        if parent == output_dir or output_dir not in parent.parents:
            break
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break
    return True


def new_output_folder(out: str | Path) -> Path:
    """``out`` as a Path, checked before any work: a command writes a new folder (or fills an
    empty one), never over earlier results.

    Raises:
        ConfigError: ``out: <path>: exists and is not an empty folder``.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out: {out}: exists and is not an empty folder")
    return out


@contextmanager
def atomic_directory(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to fill; it becomes ``out`` only if the block ends
    without an error, so a failed command never leaves a half-written folder. ``out`` must not
    exist or be an empty folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
