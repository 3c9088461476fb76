"""README's commands marked runnable run as written, at toy size, in a fresh directory.

A fenced block preceded by a ``<!-- runnable -->`` line is runnable (README, Development).
Each command runs through bash in one temporary directory, in README order (the budget report
reads the ledger the smoke run wrote). Toy size: ``pip install`` steps are skipped (the
project is installed here), ``python -m lora_forecast`` commands get the SHRINK overrides
appended (later overrides win), and ``--systems N`` becomes ``--systems 20``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, SHRINK, subprocess_env

pytestmark = pytest.mark.integration  # several processes or a whole command

MARKER = "<!-- runnable -->"
MAIN = re.compile(r"(^|\s)python -m lora_forecast(\s|$)")


def runnable_blocks(text: str) -> list[list[str]]:
    """The commands of each marked block: continuation lines joined, comments dropped."""
    lines, blocks = text.splitlines(), []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert lines[i + 1].strip().startswith("```"), f"README line {i + 2}: no fence after"
        body: list[str] = []
        for code in lines[i + 2:]:
            if code.strip().startswith("```"):
                break
            body.append(code.strip())
        joined = "\n".join(body).replace("\\\n", " ")
        blocks.append([c.split(" #", 1)[0].strip() for c in joined.splitlines()
                       if c.strip() and not c.strip().startswith("#")])
    return blocks


def toy_size(command: str) -> str:
    """The command without its pip steps, shrunk to run in seconds."""
    steps = [s.strip() for s in command.split("&&") if not s.strip().startswith("pip install")]
    shrunk = []
    for step in steps:
        step = re.sub(r"--systems \d+", "--systems 20", step)
        if MAIN.search(step):
            step = " ".join([step, *(f"'{o}'" for o in SHRINK)])
        shrunk.append(step)
    return " && ".join(shrunk)


BLOCKS = runnable_blocks((REPO / "README.md").read_text())


def test_readme_marks_the_quickstart_and_the_dry_run_runnable() -> None:
    commands = [c for block in BLOCKS for c in block]
    assert "pip install -e . && HF_HUB_OFFLINE=1 python -m lora_forecast +experiment=smoke" \
        in commands  # the quickstart's install-and-run command
    assert any("budget.dry_run=true" in c for c in commands)
    assert all("<" not in c for c in commands), "placeholders in a runnable block"


def test_toy_size_keeps_the_command_and_appends_the_shrink() -> None:
    assert toy_size("pip install -e . && python -m lora_forecast.budget report") == \
        "python -m lora_forecast.budget report"
    shrunk = toy_size("python -m lora_forecast +experiment=smoke")
    assert shrunk.startswith("python -m lora_forecast +experiment=smoke 'model=tiny'")
    assert toy_size("python -m lora_forecast.data generate --out d.h5 --systems 1000") == \
        "python -m lora_forecast.data generate --out d.h5 --systems 20"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fresh_clone")


@pytest.mark.parametrize("block", BLOCKS, ids=[b[0][:40] for b in BLOCKS])
def test_readme_command_runs(block: list[str], workdir: Path) -> None:
    for command in block:
        done = subprocess.run(["bash", "-c", toy_size(command)], cwd=workdir,
                              env=subprocess_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
