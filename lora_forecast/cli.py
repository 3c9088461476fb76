"""Hydra's own composition errors as one line, like every other user error of ours.

Hydra reports a bad override, an unknown key or a missing config option over several lines:
its message, OmegaConf's ``full_key``/``object_type`` block, the config search path and a
hint. Our rule is one line naming the key. Hydra has no hook for its error report, so the
entry point asks Hydra to raise instead (``HYDRA_FULL_ERROR=1`` until the task starts) and
renders the exception itself with :func:`one_line_error`.

The user's own ``HYDRA_FULL_ERROR`` is saved in another variable and restored as the first
thing the task does (:func:`restore_user_error_setting`), so everything from the task on (our
``error: ...`` lines, tracebacks of bugs, sweeps, launchers' subprocesses, which inherit both
variables) behaves exactly as Hydra alone would.
"""

from __future__ import annotations

import os

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from lora_forecast.config import SCHEMA_NAME
from lora_forecast.errors import LoraForecastError, omegaconf_key_and_reason

FULL_ERROR = "HYDRA_FULL_ERROR"
_SAVED_SETTING = "LORA_FORECAST_USER_HYDRA_FULL_ERROR"
_HINT_PREFIXES = ("See https://hydra.cc", "Set the environment variable")


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


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith(_HINT_PREFIXES)]


def one_line_error(exc: BaseException) -> str | None:
    """One line for a user's config mistake reported by Hydra or OmegaConf; None for others.

    ``train.lr=abc`` -> ``train.lr: Value 'abc' of type 'str' could not be converted to Float
    (Error merging override train.lr=abc)``; ``model=nope`` -> ``In 'config': Could not find
    'model/nope' (available: qwen2.5-0.5b-instruct, tiny)``.
    """
    if isinstance(exc, LoraForecastError):
        return str(exc)
    if isinstance(exc, MissingConfigException):
        head = " ".join(_lines(str(exc))[:1])
        options = [name for name in exc.options or () if name != SCHEMA_NAME]
        return head + (f" (available: {', '.join(options)})" if options else "")
    if isinstance(exc, OverrideParseException):
        return ": ".join(_lines(exc.message)[:2])
    if isinstance(exc, OmegaConfBaseException):
        key, reason = omegaconf_key_and_reason(exc)
        return f"{key}: {reason}" if key else reason
    if isinstance(exc, HydraException):
        head = " ".join(_lines(str(exc)))
        if isinstance(exc.__cause__, OmegaConfBaseException):
            key, reason = omegaconf_key_and_reason(exc.__cause__)
            return f"{key}: {reason} ({head})" if key else f"{reason} ({head})"
        return head
    return None
