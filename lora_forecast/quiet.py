"""The one place where third-party noise we cannot fix at its source is silenced or re-routed.

Our own deprecated calls are fixed where they are made (e.g. the KV cache is passed under
transformers' current name, :data:`lora_forecast.models.logits.CACHE_ARG`). What is left
comes from inside libraries, and is handled here, once, by the entry point (every run and every
sweep trial, in-process or in a launcher's worker, goes through it; the forecast and export
commands call it too, as they wrap models with PEFT the same way). Each entry says why.
"""

from __future__ import annotations

import logging
import warnings

import huggingface_hub.utils.logging as hub_logging
import transformers.utils.logging as transformers_logging

# (message regex, category, why it is not ours to fix)
IGNORED_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning,
     "peft's PeftModel.__init__ reads transformers' deprecated is_gradient_checkpointing "
     "property on every wrap (peft <= 0.21); we never call it"),
)


def quiet_third_party() -> None:
    """Install the warning filters above and route library loggers through the root logger.

    huggingface_hub attaches its own stderr handler to its logger AND lets records propagate
    to the root logger (Hydra's console and run-log handlers), so each Hub retry printed twice;
    transformers writes through its own ``[transformers]`` handler, outside the run's log. Both
    libraries' records now reach the root logger only: once on the console, and in the run log.
    Idempotent.
    """
    for message, category, _why in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    hub_root = logging.getLogger(hub_logging.__name__.split(".")[0])
    for handler in list(hub_root.handlers):
        hub_root.removeHandler(handler)
    hub_logging.enable_propagation()
    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
