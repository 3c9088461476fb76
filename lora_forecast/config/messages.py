"""Hydra's and OmegaConf's config errors as one line that names the key, like ours.

Hydra reports a bad override, an unknown key or a missing config option over several lines:
its message, OmegaConf's ``full_key``/``object_type`` block, the config search path and a
hint. Our rule is one line naming the key: :func:`one_line_error` renders the exception
(the command wrapper, :mod:`lora_forecast.command`, prints it), and an unknown key gets the
nearest valid one (:func:`suggest_key`, difflib over the composed config's keys).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from lora_forecast.config.groups import SCHEMA_NAME
from lora_forecast.errors import LoraForecastError, omegaconf_key_and_reason
from lora_forecast.paths import config_dir

_HINT_PREFIXES = ("See https://hydra.cc", "Set the environment variable")
_UNKNOWN_OVERRIDE = re.compile(r"Could not override '([^']+)'")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith(_HINT_PREFIXES)]


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
                cfg = compose(config_name="config", overrides=attempt)
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
