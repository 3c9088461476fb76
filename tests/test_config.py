"""Config composition and semantic validation: bad values fail before any model or data loads."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from lora_forecast.config import Settings, to_settings
from lora_forecast.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_defaults_compose_to_reference_settings(compose_cfg) -> None:
    settings = to_settings(compose_cfg(shrink=False))
    assert isinstance(settings, Settings)
    assert settings.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (settings.lora.rank, settings.train.lr, settings.data.context_tokens) == (4, 1e-5, 512)
    assert settings.train.batch_size == 4
    assert settings.lora.scaling_alpha == 4.0
    assert settings.budget.max_flops == 1e17


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-5}}`` -> ``{"train.lr": 1e-5}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_yaml_defaults_equal_the_dataclass_defaults() -> None:
    """One source of defaults (README, Development): the composed default config (no override,
    interpolations resolved) equals ``Settings()`` field by field, in every group, so code that
    builds the dataclasses directly gets what a user of ``python -m lora_forecast`` gets."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        composed = _flat(asdict(to_settings(compose(config_name="config"))))
    defaults = _flat(asdict(Settings()))
    assert composed.keys() == defaults.keys()
    differ = {key: {"yaml": composed[key], "dataclass": defaults[key]}
              for key in defaults if composed[key] != defaults[key]}
    assert differ == {}


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(compose_cfg, experiment: str) -> None:
    settings = to_settings(compose_cfg(f"+experiment={experiment}", shrink=False))
    assert settings.experiment == experiment


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("lora.rank=0", "lora.rank"),
        ("train.lr=-1", "train.lr"),
        ("train.lr=0", "train.lr"),
        ("data.context_tokens=2", "data.context_tokens"),
        ("data.decimals=7", "data.decimals"),
        ("data.alpha=-2", "data.alpha"),
        ("data.alpha=big", "data.alpha"),
        ("data.signed=yes", "data.signed"),
        ("data.signed=1", "data.signed"),
        ("data.split.train=0.9", "data.split"),
        ("eval.horizon_steps=0", "eval.horizon_steps"),
        ("eval.context_steps=0", "eval.context_steps"),
        ("train.schedule=exp", "train.schedule"),
        ("budget.max_flops=0", "budget.max_flops"),
        ("train.monitor=val/mse", "train.monitor"),
        ("train.monitor=val/mase", "train.monitor"),
        ("train.monitor=val/wql", "train.monitor"),
    ],
)
def test_semantic_errors_name_the_key(compose_cfg, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        to_settings(compose_cfg(override))
    message = str(info.value)
    assert message.startswith(key), message
    assert "\n" not in message


def test_alpha_auto_is_accepted(compose_cfg) -> None:
    assert to_settings(compose_cfg("data.alpha=auto")).data.alpha == "auto"


def test_type_errors_fail_at_composition(compose_cfg) -> None:
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg("lora.rank=four")


def test_unknown_key_fails_at_composition(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg("train.learning_rate=1e-3")


def test_monitors_are_the_validation_loss_and_the_scorings_point_monitors() -> None:
    from lora_forecast.config import MONITORS
    from lora_forecast.evaluation.scoring import POINT_MONITORS

    assert ("val/loss", *(f"val/{m}" for m in POINT_MONITORS)) == MONITORS


def test_config_vocabularies_are_the_registries_keys() -> None:
    """The config package validates without importing torch, so it names the registries' keys;
    these must be exactly the keys the registries dispatch on (accountings are read from the
    FLOPs registry itself: it is pure Python)."""
    from lora_forecast import config
    from lora_forecast.llmtime import NUMBER_FORMATS
    from lora_forecast.models.numeric_head import HEAD_LOGITS, HEAD_LOSSES
    from lora_forecast.tracking import TRACKERS
    from lora_forecast.training.schedule import SCHEDULER_NAMES

    assert set(config.HEADS) == set(HEAD_LOSSES) == set(HEAD_LOGITS)
    assert set(config.LOGGERS) == set(TRACKERS)
    assert set(config.SCHEDULES) == set(SCHEDULER_NAMES)
    assert config.NUMBER_FORMATS == NUMBER_FORMATS
