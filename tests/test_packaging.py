"""The installed package finds its configs anywhere, and its console scripts are real commands."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from lora_forecast import paths

REPO = Path(__file__).resolve().parents[1]


def test_config_dir_is_the_checkouts_conf_here() -> None:
    assert paths.config_dir() == REPO / "conf"


def test_config_dir_prefers_the_configs_shipped_in_the_package(tmp_path, monkeypatch) -> None:
    installed = tmp_path / "site-packages" / "lora_forecast"
    (installed / "conf").mkdir(parents=True)
    (installed / "conf" / "config.yaml").write_text("experiment: x\n")
    monkeypatch.setattr(paths, "_PACKAGE", installed)
    assert paths.config_dir() == installed / "conf"


def test_config_dir_names_both_places_when_neither_exists(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paths, "_PACKAGE", tmp_path / "lora_forecast")
    with pytest.raises(FileNotFoundError, match="reinstall lora-forecast"):
        paths.config_dir()


def test_console_scripts_point_at_the_module_entry_functions() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lora-forecast"] == "lora_forecast.__main__:cli"
    for name, target in scripts.items():
        assert name.startswith("lora-forecast"), name
        module, function = target.split(":")
        assert module.endswith("__main__"), f"{name}: `python -m` must run the same code"
        assert callable(getattr(importlib.import_module(module), function)), target


def test_the_wheel_ships_every_config_file_inside_the_package(tmp_path: Path) -> None:
    """Build the wheel (no isolation: offline) and compare its contents with conf/ on disk."""
    source = tmp_path / "src"  # a copy: the build leaves build/ and *.egg-info in its source
    for name in ("pyproject.toml", "setup.py", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    for name in ("conf", "lora_forecast", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("lora_forecast-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"lora_forecast/conf/{p.relative_to(REPO / 'conf').as_posix()}"
                for p in (REPO / "conf").rglob("*.yaml")}
    assert expected and expected <= names, sorted(expected - names)
    assert "hydra_plugins/budgeted_optuna_sweeper/sweeper.py" in names
    assert not any(n.startswith(("conf/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lora-forecast = lora_forecast.__main__:cli" in text
