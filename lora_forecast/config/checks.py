"""The one way a config check fails: ``ConfigError("<key>: <what is wrong>")``."""

from __future__ import annotations

from lora_forecast.errors import ConfigError

__all__ = ["require"]


def require(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(f"{key}: {message}")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
