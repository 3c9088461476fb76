"""``python -m lora_forecast.budget`` (report, reconcile), table formats, the Hydra callback."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from lora_forecast.budget.callback import BudgetCallback, read_run_id, write_run_id
from lora_forecast.budget.ledger import Ledger
from lora_forecast.budget.report import format_table

BUDGET = 1e17


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_forecast.budget", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=60)


@pytest.fixture
def study(tmp_path: Path) -> str:
    """A ledger with a finished baseline, a search trial still open and a rejected final run."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url) as ledger:
        for experiment, predicted, spent, status in [("default", 3e16, 2.5e16, "completed"),
                                                     ("search", 4e16, 1e16, "running"),
                                                     ("final", 5e16, 0.0, None)]:
            outcome = ledger.reserve(study="lv", experiment=experiment, config_digest="d",
                                     accounting="exact", predicted=predicted, budget=BUDGET,
                                     run_id=f"{experiment}0123456789")
            if status:
                ledger.start(outcome.run_id)
                ledger.meter(outcome.run_id, spent)
            if status == "completed":
                ledger.finish(outcome.run_id, status, spent)
    return url


def test_text_report_lists_runs_and_totals(study: str, tmp_path: Path) -> None:
    result = _cli("report", "--ledger", study, "--study", "lv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("study 'lv' in sqlite:///")
    assert lines[1].split()[:3] == ["experiment", "run", "status"]
    default = next(line for line in lines if line.startswith("default"))
    assert default.split() == ["default", "default0", "completed", "3.000e+16", "2.500e+16",
                               "25.00"]
    assert next(line for line in lines if line.startswith("final")).split()[2] == "rejected"
    total = next(line for line in lines if line.startswith("total"))
    assert total.split() == ["total", "3", "runs", "7.000e+16", "3.500e+16", "35.00"]
    assert lines[-1].startswith("committed 2.500e+16 + reserved 4.000e+16 = 6.500e+16")


def test_csv_report_is_machine_readable(study: str, tmp_path: Path) -> None:
    result = _cli("report", "--ledger", study, "--study", "lv", "--budget", "2e17",
                  "--format", "csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["experiment"] for r in records] == ["default", "search", "final", "total"]
    assert records[0]["run_id"] == "default0123456789"
    assert float(records[1]["spent_flops"]) == 1e16
    assert float(records[-1]["pct_of_budget"]) == pytest.approx(17.5)  # 3.5e16 of 2e17


def test_markdown_report_is_a_table_with_a_bold_total(study: str, tmp_path: Path) -> None:
    result = _cli("report", "--ledger", study, "--study", "lv", "--format", "markdown",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| experiment | run | status | predicted FLOPs | spent FLOPs | % of budget |"
    assert lines[1] == "|---|---|---|---:|---:|---:|"
    assert lines[2] == "| default | `default0` | completed | 3.000e+16 | 2.500e+16 | 25.00 |"
    assert lines[-1] == "| **total** | | 3 runs | **7.000e+16** | **3.500e+16** | **35.00** |"


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = _cli("report", "--ledger", f"sqlite:///{tmp_path / 'nope.sqlite'}", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: ledger not found: {tmp_path / 'nope.sqlite'}"
    assert not (tmp_path / "nope.sqlite").exists()  # report never creates a ledger
    half = _cli("reconcile", "--ledger", f"sqlite:///{tmp_path / 'x'}", "--all-hosts",
                cwd=tmp_path)
    assert half.returncode == 2 and half.stderr.count("\n") == 1


def test_reconcile_cli_marks_dead_runs_failed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url, pid=child.pid) as dead:
        run = dead.reserve(study="lv", experiment="e", config_digest="d", accounting="exact",
                           predicted=1e16, budget=BUDGET)
    result = _cli("reconcile", "--ledger", url, "--study", "lv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"marked failed: {run.run_id}",
                                          "reconciled 1 stale run(s) in study 'lv'"]
    with Ledger(url) as ledger:
        assert ledger.get(run.run_id).status == "failed"


def test_format_table_rejects_unknown_formats() -> None:
    assert format_table([], BUDGET, "csv").splitlines()[-1].startswith("total,,0 runs,")
    with pytest.raises(ValueError, match="format: must be one of"):
        format_table([], BUDGET, "html")


@pytest.mark.parametrize(("job_status", "expected"), [(JobStatus.FAILED, "failed"),
                                                      (JobStatus.COMPLETED, "completed")])
def test_callback_closes_a_job_left_open(tmp_path: Path, job_status: JobStatus,
                                         expected: str) -> None:
    url = "sqlite:///outputs/ledger.sqlite"  # relative: anchored at hydra.runtime.cwd
    with Ledger(url, base_dir=tmp_path) as ledger:
        run = ledger.reserve(study="lv", experiment="e", config_digest="d",
                             accounting="exact", predicted=3e16, budget=BUDGET)
        ledger.start(run.run_id)
        ledger.meter(run.run_id, 1e16)
    run_dir = tmp_path / "outputs" / "run"
    write_run_id(run_dir, run.run_id)
    assert read_run_id(run_dir) == run.run_id
    config = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir),
                                                     "cwd": str(tmp_path)}}})
    callback = BudgetCallback(ledger_url=url, study="lv", max_flops=BUDGET)
    callback.on_job_end(config, JobReturn(status=job_status, working_dir=str(run_dir)))
    with Ledger(url, base_dir=tmp_path) as ledger:
        row = ledger.get(run.run_id)
        assert (row.status, row.spent_flops) == (expected, 1e16)
        ledger.finish(row.run_id, "completed", 1e16)  # settled runs are left alone
        callback.on_job_end(config, JobReturn(status=JobStatus.FAILED))
        assert ledger.get(run.run_id).status == "completed"


def test_callback_prints_the_study_table_after_a_multirun(study: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    config = OmegaConf.create({"hydra": {"runtime": {"cwd": str(tmp_path)}}})
    BudgetCallback(ledger_url=study, study="lv", max_flops=BUDGET).on_multirun_end(config)
    out = capsys.readouterr().out
    assert out.startswith("FLOPs budget of study 'lv'")
    assert "default0" in out and "total" in out


HYDRA_APP = '''
import hydra
from hydra.core.hydra_config import HydraConfig
from lora_forecast.budget import Ledger, admit
from lora_forecast.budget.callback import write_run_id


@hydra.main(version_base="1.3", config_path=".", config_name="app")
def main(cfg):
    with Ledger(cfg.budget.ledger_url) as ledger:
        run = admit(ledger, study=cfg.budget.study, experiment=f"x{cfg.x}", config_digest="d",
                    accounting="exact", predicted=2e16, budget=cfg.budget.max_flops)
        write_run_id(HydraConfig.get().runtime.output_dir, run.run_id)
        ledger.start(run.run_id)
        ledger.meter(run.run_id, 5e15)
    if cfg.x == 2:
        raise RuntimeError("boom")  # crashes after metering, never settles


if __name__ == "__main__":
    main()
'''

HYDRA_CONF = '''
x: 1
budget: {ledger_url: "sqlite:///ledger.sqlite", study: lv, max_flops: 1.0e17}
hydra:
  callbacks:
    budget:
      _target_: lora_forecast.budget.callback.BudgetCallback
      ledger_url: ${budget.ledger_url}
      study: ${budget.study}
      max_flops: ${budget.max_flops}
'''


def test_callback_in_a_real_hydra_multirun(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(HYDRA_APP)
    (tmp_path / "app.yaml").write_text(HYDRA_CONF)
    env = subprocess_env()

    def multirun(xs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "app.py", "--multirun", f"x={xs}",
                               "hydra.sweep.dir=multirun"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    crashed = multirun("1,2")  # the basic sweeper re-raises x=2's error after both jobs
    assert crashed.returncode == 1 and "boom" in crashed.stderr
    with Ledger("sqlite:///ledger.sqlite", base_dir=tmp_path) as ledger:
        statuses = {r.experiment: (r.status, r.spent_flops) for r in ledger.rows("lv")}
    assert statuses == {"x1": ("completed", 5e15), "x2": ("failed", 5e15)}

    ok = multirun("3")
    assert ok.returncode == 0, ok.stderr
    table = ok.stdout[ok.stdout.index("FLOPs budget of study 'lv'"):]
    assert [line.split()[0] for line in table.splitlines()[3:6]] == ["x1", "x2", "x3"]


# ---- which study: listing, the only one, --study ----------------------------------------------


def _add(url: str, study: str, experiment: str, spent: float, budget: float = BUDGET) -> None:
    with Ledger(url) as ledger:
        run = ledger.reserve(study=study, experiment=experiment, config_digest="d",
                             accounting="exact", predicted=2 * spent, budget=budget)
        ledger.start(run.run_id)
        ledger.finish(run.run_id, "completed", spent)


def test_report_without_study_reports_the_only_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    _add(url, "smoke", "smoke", 4e8)
    done = _cli("report", "--ledger", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("study 'smoke' in sqlite:///")
    row = next(line for line in done.stdout.splitlines() if line.startswith("smoke"))
    assert row.split()[2:5] == ["completed", "8.000e+08", "4.000e+08"]


def test_report_without_study_lists_several_and_study_picks_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    _add(url, "smoke", "smoke", 4e8)
    _add(url, "lv", "default", 2e16, budget=1e17)
    _add(url, "lv", "final", 3e16, budget=1e17)
    listing = _cli("report", "--ledger", url, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("2 studies in sqlite:///") and "--study NAME" in lines[0]
    assert lines[1].split() == ["study", "runs", "spent", "FLOPs", "reserved", "FLOPs", "budget",
                                "%", "of", "budget"]
    assert lines[2].split() == ["smoke", "1", "4.000e+08", "0.000e+00", "1.000e+17", "0.00"]
    assert lines[3].split() == ["lv", "2", "5.000e+16", "0.000e+00", "1.000e+17", "50.00"]
    picked = _cli("report", "--ledger", url, "--study", "lv", cwd=tmp_path)
    assert picked.returncode == 0 and picked.stdout.startswith("study 'lv' in")
    assert [line.split()[0] for line in picked.stdout.splitlines()[3:5]] == ["default", "final"]


def test_report_of_an_unknown_study_names_the_studies_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    _add(url, "smoke", "smoke", 4e8)
    done = _cli("report", "--ledger", url, "--study", "default", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: --study: no study 'default' in {url} "
                                   "(studies: smoke)")
