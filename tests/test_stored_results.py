"""Refactors change no number: a small run's metrics, baselines, losses and FLOPs against a
copy stored before the forecast path was reorganised (issue #22).

``tests/data/smoke_results.json`` was written by the pre-move code (commit da59d09) from the
same config (the tests' ``SHRINK``, 3 samples, persistence and linear AR); on this machine the
current code reproduces it bit for bit. FLOPs must match exactly (they are arithmetic on
token counts); floats are compared at 1e-9 relative so another CPU's kernels do not flake.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from lora_forecast.task import run_task

STORED = Path(__file__).parent / "data" / "smoke_results.json"


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    """The stored copy's fields of a results.json (scalars only; per-series lists aside)."""
    def scalars(block: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in block.items() if not isinstance(v, dict | list)}
    return {
        "metrics": scalars(results["metrics"]),
        "baselines": {name: scalars(m) for name, m in results["baselines"].items()},
        "flops": {k: results["flops"][k] for k in ("predicted", "spent", "spent_by_kind",
                                                   "breakdown")},
        "train_losses": [h.get("train/loss") for h in results["train"]["history"]],
        "val_losses": [h["val/loss"] for h in results["train"]["history"] if "val/loss" in h],
    }


def _close(got: Any, want: Any, path: str, exact: bool) -> list[str]:
    if isinstance(want, dict):
        if set(got) != set(want):
            return [f"{path}: keys {sorted(set(got) ^ set(want))} differ"]
        return [d for k in want for d in _close(got[k], want[k], f"{path}.{k}",
                                                 exact or k == "flops")]
    if isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, stored {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in _close(g, w, f"{path}[{i}]", exact)]
    if isinstance(want, float) and not exact:
        same = math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15) or (
            math.isnan(got) and math.isnan(want))
    else:
        same = got == want
    return [] if same else [f"{path}: {got!r}, stored {want!r}"]


def test_the_stored_smoke_numbers_are_reproduced(compose_cfg, run_dir: Path) -> None:
    cfg = compose_cfg("eval.num_samples=3", "eval.baselines=[persistence,linear_ar]")
    run_task(cfg, run_dir)
    got = _numbers(json.loads((run_dir / "results.json").read_text()))
    assert _close(got, json.loads(STORED.read_text()), "results", exact=False) == []


@pytest.mark.parametrize(("got", "want", "diffs"), [
    ({"a": 1.0}, {"a": 1.0 + 1e-12}, 0),
    ({"a": 1.0}, {"a": 1.001}, 1),
    ({"flops": {"spent": 1.0}}, {"flops": {"spent": 1.0 + 1e-12}}, 1),  # FLOPs: exactly
    ({"a": [1.0, 2.0]}, {"a": [1.0]}, 1),
])
def test_the_comparison_can_fail(got, want, diffs) -> None:
    assert len(_close(got, want, "", exact=False)) == diffs
