"""``--help`` that helps, typos that get the nearest key, and run folders that are not litter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHRINK, subprocess_env

from lora_forecast.config.groups import group_options, schema_choice_error
from lora_forecast.config.messages import suggest_key
from lora_forecast.job import discard_unused_run_dir
from lora_forecast.paths import config_dir


def _main(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_forecast", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_help_has_the_app_name_usage_examples_and_only_real_options(tmp_path: Path) -> None:
    done = _main("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("lora-forecast: ")
    assert "Usage: lora-forecast [+experiment=NAME]" in text and "Examples:" in text
    assert "powered by Hydra" not in text and "schema" not in text
    groups = text[text.index("Config groups"):].splitlines()
    for folder in sorted(config_dir().iterdir()):  # oracle: the YAML files on disk
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if folder.name in ("hydra", "suite") or not options:  # suite: the benchmark's
            assert f"  {folder.name}: " not in text
            continue
        name = "+experiment" if folder.name == "experiment" else folder.name
        assert f"  {name}: {', '.join(options)}" in groups, (name, groups)
    assert not list((tmp_path / "outputs").glob("runs/*"))


@pytest.mark.parametrize(("typo", "expected"), [
    ("trian.lr=1e-4", "error: trian.lr: unknown key; did you mean train.lr?"),
    ("modle=tiny", "error: modle: unknown key; did you mean model?"),
    ("model.hidden_sise=8", "error: model.hidden_sise: unknown key; did you mean "
                            "model.hidden_size?"),
])
def test_a_typo_gets_the_nearest_valid_key(tmp_path: Path, typo: str, expected: str) -> None:
    done = _main("model=tiny", typo, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "outputs").exists()  # composition failed: no run folder


def test_suggest_key_finds_close_keys_only() -> None:
    keys = ["train", "train.lr", "train.max_steps", "lora.rank"]
    assert suggest_key("trian.lr", keys) == "train.lr"
    assert suggest_key("lora.rnak", keys) == "lora.rank"
    assert suggest_key("completely.different", keys) is None


def test_schema_is_no_option(tmp_path: Path) -> None:
    assert "schema" not in group_options()["model"]
    assert schema_choice_error({"model": "tiny", "hydra/sweeper": "basic"}) is None
    done = _main("model=schema", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: model: 'schema' is internal, not an option (available: "
        f"{', '.join(group_options()['model'])})"]
    assert not list((tmp_path / "outputs").glob("runs/*"))


@pytest.mark.integration  # separate processes or a whole command
def test_dry_runs_and_config_errors_leave_no_run_folder(tmp_path: Path) -> None:
    dry = _main(*SHRINK, "budget.dry_run=true", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "predicted_flops=" in dry.stdout
    bad = _main(*SHRINK, "lora.rank=0", cwd=tmp_path)
    assert bad.returncode == 1 and "lora.rank" in bad.stderr
    assert not (tmp_path / "outputs" / "runs").exists()


@pytest.mark.integration  # separate processes or a whole command
def test_a_run_stopped_after_admission_keeps_its_folder_with_the_error_in_its_log(
    tmp_path: Path,
) -> None:
    done = _main(*SHRINK, "budget.max_flops=1000", "hydra.run.dir=outputs/runs/r", cwd=tmp_path)
    assert done.returncode == 1
    run_dir = tmp_path / "outputs" / "runs" / "r"
    assert (run_dir / "results.json").is_file()
    (log,) = run_dir.glob("*.log")
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: budget:") and error in log.read_text()
    assert "(status rejected" in log.read_text()


def test_discard_keeps_folders_with_anything_of_ours(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs"
    kept = outputs / "runs" / "a" / "t1"
    (kept / ".hydra").mkdir(parents=True)
    (kept / "results.json").write_text("{}")
    assert not discard_unused_run_dir(kept, outputs) and kept.is_dir()
    gone = outputs / "runs" / "b" / "t2"
    (gone / ".hydra").mkdir(parents=True)
    (gone / "main.log").write_text("")
    assert discard_unused_run_dir(gone, outputs)
    assert not (outputs / "runs" / "b").exists() and outputs.is_dir() and kept.is_dir()
    made_by_caller = tmp_path / "empty"  # no .hydra: not Hydra's, not ours to remove
    made_by_caller.mkdir()
    assert not discard_unused_run_dir(made_by_caller, outputs) and made_by_caller.is_dir()
    assert not discard_unused_run_dir(tmp_path, outputs)  # never the working directory
