"""Packaging that pyproject.toml cannot say: the top-level conf/ ships as lora_forecast.conf.

The configs stay in the repository's ``conf/`` folder (the documented layout); the wheel carries
them inside the package so an installed ``lora-forecast`` works from any directory
(``lora_forecast.paths.config_dir`` finds either). ``package_dir`` maps the folder and each of
its sub-folders becomes a data-only package; everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

CONF = Path(__file__).resolve().parent / "conf"
CONF_PACKAGES = ["lora_forecast.conf"] + sorted(
    "lora_forecast.conf." + ".".join(d.relative_to(CONF).parts)
    for d in CONF.rglob("*")
    if d.is_dir() and "__pycache__" not in d.parts
)

setup(
    packages=find_namespace_packages(
        include=["lora_forecast", "lora_forecast.*", "hydra_plugins", "hydra_plugins.*"],
        exclude=["*.__pycache__", "lora_forecast.conf", "lora_forecast.conf.*"],
    ) + CONF_PACKAGES,
    package_dir={"lora_forecast.conf": "conf"},
)
