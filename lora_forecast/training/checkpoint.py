"""Atomic training checkpoints: write to a temp folder, then rename; skip broken ones on resume.

A checkpoint folder ``step_0000100/`` holds the trainable tensors (LoRA A/B, lm_head bias), the
optimiser and scheduler states, RNG states and ``state.json`` (step, data position, early
stopping, loss history, FLOPs meter). ``meta.json`` is written last and lists every file with
its size, so a folder without a matching ``meta.json`` is partial and is never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

PREFIX = "step_"
TENSOR_FILES = ("trainable.pt", "optimizer.pt", "scheduler.pt", "rng.pt")


@dataclass
class Checkpoint:
    """Everything needed to continue training exactly where it stopped."""

    path: Path
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    state: dict[str, Any]


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch RNG states (CUDA too when present)."""
    np_state = np.random.get_state()
    rng: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in rng["python"]))
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(
    directory: Path,
    step: int,
    *,
    trainable: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``directory/step_XXXXXXX`` atomically and keep only the newest ``keep`` ones."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:07d}"
    for stale in directory.glob(".tmp-*"):  # left by a writer killed mid-checkpoint
        shutil.rmtree(stale, ignore_errors=True)
    tmp = directory / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    payloads = {
        "trainable.pt": trainable,
        "optimizer.pt": optimizer,
        "scheduler.pt": scheduler,
        "rng.pt": capture_rng(),
    }
    for name, payload in payloads.items():
        torch.save(payload, tmp / name)
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
    (tmp / "meta.json").write_text(json.dumps({"step": step, "files": sizes}))
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(directory)
    _prune(directory, keep)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(directory: Path, keep: int) -> None:
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint folders under ``directory``, oldest first (temp folders excluded)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: p.name)


def _check_complete(path: Path) -> None:
    """Raise ValueError naming the folder unless meta.json lists every file at its size."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"{path}: no meta.json (partial checkpoint)")
    meta = json.loads(meta_path.read_text())
    for name, size in meta["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            raise ValueError(f"{path}: {name} is missing or truncated")


def read_state(path: Path) -> dict[str, Any]:
    """``state.json`` of a complete checkpoint folder, without loading any tensor (what the
    task needs before admission: the step and the meter a resumed run continues from)."""
    _check_complete(path)
    return json.loads((path / "state.json").read_text())


def latest_state(directory: Path) -> dict[str, Any] | None:
    """``state.json`` of the newest complete checkpoint under ``directory`` (None: none)."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return read_state(path)
        except (ValueError, OSError):
            continue
    return None


def load_checkpoint(path: Path) -> Checkpoint:
    """Load one checkpoint folder; raises ValueError naming the folder when it is incomplete."""
    _check_complete(path)
    loaded = {name: torch.load(path / name, weights_only=False) for name in TENSOR_FILES}
    return Checkpoint(
        path=path,
        trainable=loaded["trainable.pt"],
        optimizer=loaded["optimizer.pt"],
        scheduler=loaded["scheduler.pt"],
        rng=loaded["rng.pt"],
        state=json.loads((path / "state.json").read_text()),
    )


def latest_valid_checkpoint(directory: Path) -> Checkpoint | None:
    """The newest checkpoint that loads; broken ones are skipped with a warning naming them."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return load_checkpoint(path)
        except Exception as exc:  # a corrupt file can fail in many ways; never crash resume
            log.warning("skipping unusable checkpoint %s: %s", path, exc)
    return None
