"""Reading what runs left behind: ``results.json`` files, sweep summaries and the FLOPs ledger.

This is the report's only I/O besides writing it; :mod:`lora_forecast.report.tables` turns what
is read here into Markdown without touching files.

A run belongs to a *sweep* when its directory's parent is a Hydra sweep directory, recognised
by a ``multirun.yaml`` or ``optimization_results.yaml`` in it, or when its results name a
sweep (``sweep`` key or ``config.trial.study_name``). Sweep members are grouped by that parent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lora_forecast.errors import LoraForecastError
from lora_forecast.results import RESULTS_FILE

__all__ = [
    "RESULTS_FILE",
    "LedgerRead",
    "LedgerRow",
    "RunRecord",
    "Sweep",
    "find_result_files",
    "flatten",
    "group_sweeps",
    "load_runs",
    "read_ledger",
]

SWEEP_MARKERS = ("multirun.yaml", "optimization_results.yaml")
OPTIMIZATION_RESULTS = "optimization_results.yaml"


@dataclass(frozen=True)
class RunRecord:
    """One run directory and its parsed ``results.json``.

    Attributes:
        path: the run directory.
        results: the parsed file (see the schema in :mod:`lora_forecast.results`).
        sweep_dir: the sweep directory it belongs to, or None for a single run.
    """

    path: Path
    results: dict[str, Any]
    sweep_dir: Path | None = None

    def get(self, dotted: str, default: Any = None) -> Any:
        """A value of the results by dotted key (``"config.train.lr"``), or ``default``."""
        node: Any = self.results
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def config(self) -> dict[str, Any]:
        return self.results.get("config") or {}

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.results.get("metrics")

    @property
    def sweep_params(self) -> dict[str, Any]:
        """Parameters the sweeper set for this trial (``sweep.params``), if it recorded them."""
        return dict(self.get("sweep.params") or {})


@dataclass(frozen=True)
class Sweep:
    """Runs of one sweep directory plus its ``optimization_results.yaml`` (if any)."""

    path: Path
    runs: tuple[RunRecord, ...]
    summary: dict[str, Any] | None = None


@dataclass(frozen=True)
class LedgerRow:
    """The ledger fields the report uses (plain values, whatever the ledger's row type)."""

    study: str
    experiment: str
    run_id: str
    status: str
    predicted_flops: float
    spent_flops: float
    budget: float | None = None


@dataclass
class LedgerRead:
    """Rows read from one ledger URL, or the reason none could be read."""

    url: str
    rows: list[LedgerRow] = field(default_factory=list)
    error: str | None = None
    raw: list[Any] = field(default_factory=list)  # the ledger's own rows, for its formatter


def find_result_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``results.json`` at or below the given run or multirun directories.

    Args:
        paths: run directories, multirun directories, or ``results.json`` files.

    Returns:
        Sorted, de-duplicated absolute paths of ``results.json`` files.

    Raises:
        LoraForecastError: when a path does not exist or nothing is found at all.
    """
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise LoraForecastError(f"no such run or multirun directory: {path}")
        if path.is_file():
            found.add(path.resolve())
        else:
            found.update(p.resolve() for p in path.rglob(RESULTS_FILE))
    if not found:
        raise LoraForecastError(f"no {RESULTS_FILE} under: {', '.join(map(str, paths))}")
    return sorted(found)


def load_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Load every run below ``paths`` (see :func:`find_result_files`): single runs first, then
    sweep members, each in path order.

    Raises:
        LoraForecastError: for a ``results.json`` that is not valid JSON (names the file).
    """
    records = []
    for file in find_result_files(paths):
        try:
            results = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise LoraForecastError(
                f"{file}: not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        record = RunRecord(file.parent, results)
        in_sweep = (
            any((file.parent.parent / marker).is_file() for marker in SWEEP_MARKERS)
            or "sweep" in results
            or bool(record.get("config.trial.study_name"))
        )
        records.append(RunRecord(file.parent, results, file.parent.parent if in_sweep else None))
    return sorted(records, key=lambda r: r.sweep_dir is not None)  # single runs first, stable


def group_sweeps(runs: Sequence[RunRecord]) -> list[Sweep]:
    """Group sweep members by sweep directory and attach ``optimization_results.yaml``."""
    by_dir: dict[Path, list[RunRecord]] = {}
    for run in runs:
        if run.sweep_dir is not None:
            by_dir.setdefault(run.sweep_dir, []).append(run)
    sweeps = []
    for path, members in by_dir.items():
        summary_file = path / OPTIMIZATION_RESULTS
        summary = yaml.safe_load(summary_file.read_text()) if summary_file.is_file() else None
        sweeps.append(Sweep(path, tuple(members), summary if isinstance(summary, dict) else None))
    return sweeps


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become tuples (hashable, comparable).

    Example:
        >>> flatten({"train": {"lr": 1e-5}, "lora": {"target_modules": ["q", "v"]}})
        {'train.lr': 1e-05, 'lora.target_modules': ('q', 'v')}
    """
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list):
        node = tuple(node)
    return {prefix.rstrip("."): node}


def read_ledger(url: str, studies: Sequence[str] | None = None) -> LedgerRead:
    """Read the ledger's rows (of the given studies; all if None) without creating anything.

    Args:
        url: SQLAlchemy URL; a relative SQLite path is taken from the current directory.
        studies: study names to keep, or None for every study.

    Returns:
        A :class:`LedgerRead`; a ledger that cannot be opened gives its one-line reason in
        ``error`` instead of raising, so the rest of the report still gets written.
    """
    import sqlalchemy as sa

    from lora_forecast.budget import Ledger

    try:
        with Ledger(url, create=False) as ledger:
            raw = ledger.rows()
    except (LoraForecastError, sa.exc.SQLAlchemyError) as exc:
        return LedgerRead(url, error=(str(exc).strip().splitlines() or [type(exc).__name__])[0])
    kept = [r for r in raw if studies is None or r.study in studies]
    rows = [
        LedgerRow(
            r.study,
            r.experiment,
            r.run_id,
            r.status,
            float(r.predicted_flops),
            float(r.spent_flops),
            getattr(r, "budget", None),
        )
        for r in kept
    ]
    return LedgerRead(url, rows, raw=kept)
