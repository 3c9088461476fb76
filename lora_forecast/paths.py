"""Where the Hydra configs are, in a checkout and in an installed wheel.

The configs live in the top-level ``conf/`` folder of the repository (the project's documented
layout). A wheel ships the same files as ``lora_forecast/conf`` (``setup.py`` maps the folder
into the package), so every entry point asks :func:`config_dir` instead of assuming a checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder holding ``config.yaml``: the wheel's ``lora_forecast/conf``, else the
    checkout's ``conf/`` beside the package.

    Returns:
        An absolute path (Hydra takes it as ``config_path`` / ``initialize_config_dir``).
    """
    for candidate in (_PACKAGE / "conf", _PACKAGE.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no config.yaml in {_PACKAGE / 'conf'} or {_PACKAGE.parent / 'conf'}: "
        "reinstall lora-forecast (the wheel ships its configs)"
    )
