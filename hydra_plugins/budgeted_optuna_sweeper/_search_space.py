"""Hydra's override grammar -> Optuna distributions, and sampled values -> job overrides.

=====================================  ==============================================
``key=choice(a, b, c)`` or ``a,b,c``   CategoricalDistribution([a, b, c])
``key=range(128, 769, 128)``           IntDistribution(128, 768, step=128) (floats: step)
``key=shuffle(range(...))``            CategoricalDistribution of the range's values
``key=interval(a, b)``                 FloatDistribution(a, b)
``key=int(interval(a, b))``            IntDistribution(a, b)
``key=tag(log, interval(a, b))``       FloatDistribution(a, b, log=True) (int(...): Int)
``key=value`` / ``+group=option``      fixed: passed unchanged to every trial
=====================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from lora_forecast.errors import ConfigError

PRIMITIVES = (str, int, float, bool, type(None))


def format_value(value: Any) -> str:
    """A value as Hydra override text that parses back to the same value.

    >>> format_value("b c"), format_value(5e-05), format_value([1, "x"]), format_value(None)
    ("'b c'", '5e-05', "[1,'x']", 'null')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@dataclass
class Param:
    """One searched key: its distribution and how a sampled value is written as an override.
    ``texts`` maps a categorical choice to its override text (lists are stored as that text)."""

    name: str
    distribution: BaseDistribution
    texts: dict[Any, str] = field(default_factory=dict)

    def override(self, value: Any) -> str:
        return f"{self.name}={self.texts.get(value, format_value(value))}"

    def grid_values(self) -> list[Any]:
        """The finite list of values a grid sweep visits (ValueError if continuous)."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution) and not d.log:
            return list(range(d.low, d.high + 1, d.step))
        if isinstance(d, FloatDistribution) and d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            return [d.low + i * d.step for i in range(n + 1)]
        raise ConfigError(f"{self.name}: a grid needs discrete values (choice(...) or "
                          f"range(...)), got {d}")


@dataclass
class SearchSpace:
    params: dict[str, Param]
    fixed: list[str]  # overrides passed unchanged to every trial, in the given order

    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: p.distribution for name, p in self.params.items()}

    def grid(self) -> dict[str, list[Any]]:
        return {name: p.grid_values() for name, p in self.params.items()}

    def overrides(self, values: dict[str, Any]) -> list[str]:
        """Every override of one trial: the fixed ones, then the sampled parameters."""
        return [*self.fixed, *(self.params[k].override(v) for k, v in values.items())]

    def run_overrides(self, values: dict[str, Any]) -> list[str]:
        """The overrides that rerun one trial as a single run (the search's own left out)."""
        return [line for line in self.overrides(values)
                if line.split("=", 1)[0].lstrip("+~") != "hparams_search"]

    def keys(self) -> set[str]:
        return set(self.params) | {line.split("=", 1)[0].lstrip("+~") for line in self.fixed}


def _choice(name: str, items: Iterable[Any]) -> Param:
    choices, texts = [], {}
    for item in items:
        stored = item if isinstance(item, PRIMITIVES) else format_value(item)
        choices.append(stored)
        texts[stored] = format_value(item)
    return Param(name, CategoricalDistribution(choices), texts)


def _range(name: str, sweep: RangeSweep, override: Override) -> Param:
    values = list(override.sweep_iterator())
    if sweep.shuffle or len(values) < 2:
        return _choice(name, values)
    if all(isinstance(v, int) for v in values):
        return Param(name, IntDistribution(values[0], values[-1], step=int(sweep.step)))
    return Param(name, FloatDistribution(values[0], values[-1], step=float(sweep.step)))


def _interval(name: str, sweep: IntervalSweep) -> Param:
    log = "log" in sweep.tags
    if isinstance(sweep.start, int) and isinstance(sweep.end, int):
        return Param(name, IntDistribution(sweep.start, sweep.end, log=log))
    return Param(name, FloatDistribution(float(sweep.start), float(sweep.end), log=log))


def to_param(override: Override) -> Param:
    """The distribution of one sweep override (see the module docstring)."""
    name = override.get_key_element()
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return _choice(name, value.list)
    if isinstance(value, RangeSweep):
        return _range(name, value, override)
    if isinstance(value, IntervalSweep):
        return _interval(name, value)
    raise ConfigError(f"{override.input_line}: sweep type {type(value).__name__} is not "
                      "supported (use choice, range or interval)")


def params_to_overrides(params: dict[str, Any] | None) -> list[str]:
    """``hydra.sweeper.params`` as override lines (``key=expression``)."""
    return [f"{key}={format_value(v) if not isinstance(v, str) else v}"
            for key, v in (params or {}).items()]


def parse_search_space(lines: Sequence[str]) -> SearchSpace:
    """Parse override lines (config params first, command line after: later lines win)."""
    parsed = OverridesParser.create().parse_overrides(list(lines))
    by_key: dict[str, Override] = {}
    for override in parsed:
        by_key.pop(override.get_key_element(), None)  # keep the last, in its new position
        by_key[override.get_key_element()] = override
    params, fixed = {}, []
    for key, override in by_key.items():
        if override.is_sweep_override():
            params[key] = to_param(override)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return SearchSpace(params, fixed)
