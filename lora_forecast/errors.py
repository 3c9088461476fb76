"""User-facing errors: each renders as one line that names the file or key and what is wrong.

The entry point prints ``error: <message>`` and exits non-zero for these; anything else is a
bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback for these too.
"""


class LoraForecastError(Exception):
    """Base class for errors caused by the user's input or environment, not by a bug."""


class ConfigError(LoraForecastError, ValueError):
    """A config key holds a value that cannot work (``train.lr: must be > 0, got -1``)."""


class DataFormatError(LoraForecastError, ValueError):
    """A trajectories file is missing or malformed (names the file and the HDF5 key)."""


class ModelLoadError(LoraForecastError, RuntimeError):
    """A model could not be loaded (e.g. the Hub is unreachable)."""


class BudgetExceededError(LoraForecastError):
    """A run was rejected because it would push the study past its FLOPs budget."""


def omegaconf_key_and_reason(exc: Exception) -> tuple[str | None, str]:
    """(full key or None, first line of the message) of an OmegaConf error.

    OmegaConf appends ``full_key:``/``object_type=`` lines to its messages; the key becomes the
    front of our one line instead.
    """
    message = str(getattr(exc, "msg", None) or exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return getattr(exc, "full_key", None) or None, lines[0] if lines else type(exc).__name__
