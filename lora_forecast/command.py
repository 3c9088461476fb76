"""The one wrapper every command runs in: a user's mistake is one line, a bug keeps its trace.

The rule (:func:`reported_errors`, :func:`report_user_error`): our errors and OmegaConf's print
``error: <one line naming the file or key>`` and exit non-zero (1, the error's ``exit_code``,
or 2 for the argparse commands as for argparse's own usage errors); ``HYDRA_FULL_ERROR=1``
shows their traceback. Hydra commands are decorated with :func:`hydra_command`, argparse ones
with :func:`command`. Hydra raises its own composition errors (bad override, unknown key) only
under ``HYDRA_FULL_ERROR=1`` and has no hook for its multi-line report, so the entry sets that
variable until the job starts, renders what Hydra raised with
:func:`~lora_forecast.config.messages.one_line_error`, and restores the user's setting first
thing in the job: this round trip lives only here.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lora_forecast.config.messages import one_line_error
from lora_forecast.errors import LoraForecastError
from lora_forecast.job import log_to_file
from lora_forecast.paths import config_dir

FULL_ERROR = "HYDRA_FULL_ERROR"
_SAVED_SETTING = "LORA_FORECAST_USER_HYDRA_FULL_ERROR"
USER_ERRORS: tuple[type[BaseException], ...] = (LoraForecastError, OmegaConfBaseException)
T = TypeVar("T")


def defer_hydra_error_reports() -> bool:
    """Make Hydra raise its errors to our entry point; False if the user asked for tracebacks."""
    if os.environ.get(FULL_ERROR) == "1":
        return False
    os.environ[_SAVED_SETTING] = os.environ.get(FULL_ERROR, "")
    os.environ[FULL_ERROR] = "1"
    return True


def restore_user_error_setting() -> None:
    """Put back the user's ``HYDRA_FULL_ERROR`` (a no-op when it was never replaced)."""
    saved = os.environ.pop(_SAVED_SETTING, None)
    if saved is None:
        return
    if saved:
        os.environ[FULL_ERROR] = saved
    else:
        os.environ.pop(FULL_ERROR, None)


def report_user_error(exc: BaseException, exit_code: int = 1) -> int:
    """Print ``error: <one line>`` on stderr and return ``exit_code``; under
    ``HYDRA_FULL_ERROR=1`` re-raise ``exc`` with its traceback instead."""
    if os.environ.get(FULL_ERROR) == "1":
        raise exc
    message = one_line_error(exc) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    print(f"error: {message}", file=sys.stderr)
    return exit_code


@contextmanager
def reported_errors(*, reraise: bool = False,
                    on_error: Callable[[], Any] | None = None) -> Iterator[None]:
    """The rule around a Hydra job's body: a user error goes to the job's log file, then (unless
    ``reraise``: inside a multirun the sweeper records it as a failed trial) ``on_error`` runs
    (e.g. removing a run folder nothing was written to) and the process exits with one line;
    a bug's traceback goes to the log file and is re-raised."""
    try:
        yield
    except USER_ERRORS as exc:
        log_to_file(f"error: {exc}", logging.ERROR)
        if reraise:
            raise
        if on_error is not None:
            on_error()
        sys.exit(report_user_error(exc, getattr(exc, "exit_code", 1)))
    except Exception as exc:  # a bug: logged once, however many wrappers it passes through
        if not getattr(exc, "_in_job_log", False):
            log_to_file(traceback.format_exc(), logging.ERROR)
            exc._in_job_log = True  # type: ignore[attr-defined]
        raise


def command(*errors: type[BaseException],
            exit_code: int = 2) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate an argparse command's ``main(argv) -> exit status``: our errors, OmegaConf's
    and ``errors`` (the command's own, e.g. ``ValueError``) return ``exit_code`` after the
    one line."""

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(*args: Any, **kwargs: Any) -> int:
            try:
                return main(*args, **kwargs)
            except (*USER_ERRORS, *errors) as exc:
                return report_user_error(exc, exit_code)

        return wrapped

    return decorate


def close_process_group() -> None:
    """Destroy the data-parallel process group, if this process joined one, before it exits
    (what accelerate's ``end_training`` does; at the end of the command, so every job of a
    multirun keeps it). Left to the interpreter's teardown, gloo's threads can abort the rank
    that finishes first ("terminate called without an active exception", seen once in CI
    when rank 1 exited while rank 0 was still forecasting)."""
    torch = sys.modules.get("torch")  # never imported: no process group to close
    if torch is not None and torch.distributed.is_available() and \
            torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[[], None]]:
    """Decorate a Hydra command's body ``body(cfg)``; the result is its console entry.

    The entry composes ``conf/<config_name>.yaml`` with the command line (Hydra's errors as
    one line), then runs ``body`` under :func:`reported_errors` with third-party noise
    filtered (:mod:`lora_forecast.quiet`). ``entry.hydra_main`` is the ``@hydra.main``
    function, whose return value (the body's) a sweeper reads.
    """
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    def decorate(body: Callable[[DictConfig], T]) -> Callable[[], None]:
        @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
        @functools.wraps(body)
        def hydra_main(cfg: DictConfig) -> T:
            restore_user_error_setting()  # from here on, errors are reported as the user asked
            logging.getLogger().setLevel(logging.INFO)
            from lora_forecast.quiet import quiet_third_party  # heavy: after Hydra parsed argv

            quiet_third_party()  # library warnings we cannot fix: filtered or logged once
            with reported_errors(reraise=HydraConfig.get().mode == RunMode.MULTIRUN):
                return body(cfg)

        @functools.wraps(body)
        def entry() -> None:
            deferred = defer_hydra_error_reports()
            try:
                hydra_main()
            except Exception as exc:  # raised before the body started, or a bug
                message = one_line_error(exc, sys.argv[1:]) if deferred else None
                if message is None:
                    raise
                print(f"error: {message}", file=sys.stderr)
                sys.exit(1)
            finally:
                close_process_group()

        entry.hydra_main = hydra_main  # type: ignore[attr-defined]
        return entry

    return decorate
