"""What a newcomer meets on a fresh clone: no data file, no Hub, no ledger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env


def _main(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_forecast", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_bare_command_reaches_the_model_message_before_the_data_file(tmp_path: Path) -> None:
    done = _main(cwd=tmp_path)  # no data/ folder here, no Hub (HF_HUB_OFFLINE=1)
    assert done.returncode == 1
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: model.name_or_path: cannot load")
    assert "model=tiny" in line
    assert not (tmp_path / "outputs" / "runs").exists()  # stopped before admission: no folder


def test_dry_run_without_the_data_file_says_exactly_what_to_pass(tmp_path: Path) -> None:
    done = _main("+experiment=default", "budget.dry_run=true", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: data/lotka_volterra_data.h5: file not found; pass data.path=/path/to/file.h5, "
        "or use data=synthetic (generated, no file needed), or write it with "
        "`python -m lora_forecast.data generate --out data/lotka_volterra_data.h5`"]
    assert not (tmp_path / "outputs" / "runs").exists()


def test_dry_run_of_synthetic_data_predicts_without_any_file(tmp_path: Path) -> None:
    done = _main("+experiment=default", "data=synthetic", "budget.dry_run=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-2].startswith("predicted_flops=")
    assert not list(tmp_path.rglob("*.h5")) and not list(tmp_path.rglob("*.sqlite"))
    assert not (tmp_path / "outputs" / "runs").exists()
