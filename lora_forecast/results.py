"""results.json: the one file every run leaves behind, whatever happened to it.

Written atomically (temp + rename) so a reader never sees half a file. The config digest is a
SHA-256 of the resolved config (without Hydra's own node), so equal digests mean equal runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the resolved config, keys sorted, Hydra's node and the trial binding excluded."""
    clean = {k: v for k, v in config.items() if k not in ("hydra", "trial")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()


def json_ready(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``path`` via a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(json_ready(payload), indent=2, allow_nan=False))
    os.replace(tmp, path)
    return path


def write_results(run_dir: Path, payload: dict[str, Any]) -> Path:
    return write_json_atomic(run_dir / RESULTS_FILE, payload)


def read_results(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
