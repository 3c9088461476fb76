"""``torch.compile`` where it works, eager where it does not, said once in the log.

Compilation can fail for reasons outside the user's config (no C compiler for CPU inductor, an
unsupported op in a model family, an old GPU): the run should then go on eagerly rather than
stop, and say so in one line. Hand-written because ``torch._dynamo.config.suppress_errors`` is
global state and silent.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


def _no_compiler_reason(device_type: str) -> str | None:
    if device_type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
        return "CPU inductor needs a C compiler (cc/gcc), none on PATH"
    return None


def compiled(fn: Callable[..., Any], name: str, device_type: str = "cpu") -> Callable[..., Any]:
    """``fn`` under ``torch.compile``; if compiling is impossible here or its first call fails,
    ``fn`` itself, with one log line naming ``name`` (the config key that asked for it).

    Args:
        fn: a function or module whose outputs should equal the compiled ones within tolerance.
        name: what asked for compilation, for the log line (e.g. ``"train.compile"``).
        device_type: where ``fn`` runs (``"cpu"`` needs a C compiler for inductor).

    Returns:
        A callable with ``fn``'s signature.
    """
    reason = _no_compiler_reason(device_type)
    if reason is not None:
        log.warning("%s: torch.compile unavailable (%s); running eager", name, reason)
        return fn
    state = {"fn": torch.compile(fn), "compiled": True}

    def call(*args: Any, **kwargs: Any) -> Any:
        if not state["compiled"]:
            return fn(*args, **kwargs)
        try:
            return state["fn"](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            log.warning("%s: torch.compile failed (%s: %s); running eager", name,
                        type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
            state["compiled"] = False
            return fn(*args, **kwargs)

    return call
