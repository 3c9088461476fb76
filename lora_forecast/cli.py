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

It also keeps ``--help`` honest: the config groups it lists come from the YAML files users can
pick (:func:`config_groups_text`, Hydra's own list includes each group's internal ``schema``
node), ``model=schema`` is refused (:func:`schema_choice_error`), and an unknown key gets the
nearest valid one (:func:`suggest_key`, difflib over the composed config's keys).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from lora_forecast.config import SCHEMA_NAME
from lora_forecast.errors import LoraForecastError, omegaconf_key_and_reason
from lora_forecast.paths import config_dir

FULL_ERROR = "HYDRA_FULL_ERROR"
_SAVED_SETTING = "LORA_FORECAST_USER_HYDRA_FULL_ERROR"
_HINT_PREFIXES = ("See https://hydra.cc", "Set the environment variable")
_UNKNOWN_OVERRIDE = re.compile(r"Could not override '([^']+)'")
HIDDEN_GROUPS = ("hydra", "suite")  # Hydra's own (--hydra-help); the benchmark command's


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


def group_options() -> dict[str, list[str]]:
    """Each user-facing config group and its options: the YAML files under the config folder."""
    root = config_dir()
    return {
        group.name: sorted(f.stem for f in group.glob("*.yaml"))
        for group in sorted(root.iterdir())
        if group.is_dir() and group.name not in HIDDEN_GROUPS and any(group.glob("*.yaml"))
    }


def config_groups_text() -> str:
    """``--help``'s group list (an OmegaConf resolver in conf/hydra/default.yaml)."""
    lines = []
    for group, options in group_options().items():
        name = f"+{group}" if group == "experiment" else group  # not in the root defaults
        lines.append(f"  {name}: {', '.join(options)}")
    return "\n".join(lines)


def schema_choice_error(choices: Mapping[str, str | None]) -> str | None:
    """The error for ``group=schema`` (an internal structured-config node), else None."""
    for group, choice in choices.items():
        if choice == SCHEMA_NAME and not group.startswith("hydra"):
            options = group_options().get(group, [])
            return (f"{group}: 'schema' is internal, not an option "
                    f"(available: {', '.join(options)})")
    return None


def _dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{prefix}{key}"
            yield path
            yield from _dotted_keys(value, path + ".")


def composed_keys(overrides: Sequence[str] = ()) -> list[str]:
    """Every dotted key of the config composed with ``overrides`` (those that compose)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    for attempt in (list(overrides), []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(str(config_dir()), version_base="1.3"):
                cfg: DictConfig = compose(config_name="config", overrides=attempt)
            return list(_dotted_keys(OmegaConf.to_container(cfg, resolve=False)))
        except Exception:  # noqa: BLE001 - any failure: try again without the user's overrides
            continue
    return []


def _usable(overrides: Sequence[str], key: str) -> list[str]:
    """The user's overrides that can compose, without the one naming ``key``."""
    return [o for o in overrides if "=" in o and not o.startswith("-")
            and o.split("=", 1)[0].lstrip("+~") != key]


def suggest_key(key: str, keys: Sequence[str]) -> str | None:
    """The valid key nearest to ``key`` (``trian.lr`` -> ``train.lr``), or None."""
    matches = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown_key(exc: HydraException, overrides: Sequence[str]) -> str | None:
    """``KEY: unknown key; did you mean X?`` for Hydra's 'Could not override' of a key that
    the composed config does not have (Hydra's own ``hydra.*`` keys keep Hydra's message)."""
    found = _UNKNOWN_OVERRIDE.search(str(exc))
    if not found or not isinstance(exc.__cause__, ConfigKeyError | ConfigAttributeError):
        return None
    key = found.group(1)
    keys = [] if key.startswith("hydra.") else composed_keys(_usable(overrides, key))
    if not keys or key in keys:
        return None
    nearest = suggest_key(key, keys)
    return f"{key}: unknown key" + (f"; did you mean {nearest}?" if nearest else "")


def one_line_error(exc: BaseException, overrides: Sequence[str] = ()) -> str | None:
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
        unknown = _unknown_key(exc, overrides)
        if unknown:
            return unknown
        head = " ".join(_lines(str(exc)))
        if isinstance(exc.__cause__, OmegaConfBaseException):
            key, reason = omegaconf_key_and_reason(exc.__cause__)
            return f"{key}: {reason} ({head})" if key else f"{reason} ({head})"
        return head
    return None


def run_cli(main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` entry with Hydra's composition errors (a bad override, an unknown
    key, a missing required value) printed as one ``error:`` line and exit 1; bugs keep their
    traceback. Every console command of the package goes through here."""
    deferred = defer_hydra_error_reports()
    try:
        main()
    except Exception as exc:  # raised before the task started, or a bug
        message = one_line_error(exc, sys.argv[1:]) if deferred else None
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


USER_ERRORS: tuple[type[BaseException], ...] = (LoraForecastError, OmegaConfBaseException)


def report_user_error(exc: BaseException, exit_code: int = 1) -> int:
    """The one rule every command follows for a user's mistake: ``error: <one line>`` on stderr
    and a non-zero exit status (returned, for commands whose ``main`` returns one); under
    ``HYDRA_FULL_ERROR=1`` the exception is re-raised with its traceback instead."""
    if os.environ.get(FULL_ERROR) == "1":
        raise exc
    message = one_line_error(exc) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    print(f"error: {message}", file=sys.stderr)
    return exit_code


@contextmanager
def user_errors() -> Iterator[None]:
    """:func:`report_user_error` around a Hydra command's body (exit 1), for our errors and
    OmegaConf's (e.g. a required key such as ``input=`` not given)."""
    try:
        yield
    except USER_ERRORS as exc:
        sys.exit(report_user_error(exc))
