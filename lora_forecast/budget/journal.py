"""A run's cumulative FLOPs on disk after every metered piece of work: what a crash cannot erase.

The ledger hears of spend on each flush (periodically and at every evaluation), and a
checkpoint stores the meter as it was at that step. After a ``kill -9`` the steps (and
validations) between the last checkpoint and the kill were really computed, then thrown away,
and a resumed run computes them again. The budget is about compute spent, so they are charged
twice: the main process's meter rewrites ``flops_journal.json`` in the run directory after
each :meth:`~lora_forecast.budget.meter.FlopsMeter.add` (one small atomic file write), and a
resumed run starts from the journal, not from its checkpoint's older figure. It reserves its
whole-run prediction plus :attr:`CarriedSpend.redone`, the work its checkpoint does not keep.

Only the work in flight at the kill (the step, validation or forecast not yet metered) escapes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_FILE = "flops_journal.json"


def write_journal(path: Path, run_id: str, spent: Mapping[str, float]) -> None:
    """Replace the journal atomically (a reader sees the old or the new figure, never half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "spent": dict(spent)}))
    os.replace(tmp, path)


def read_journal(path: Path, run_id: str) -> dict[str, float] | None:
    """The spend by kind journaled for ``run_id`` (None: no journal, or another run's)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("run_id") != run_id:
        return None
    return {str(kind): float(value) for kind, value in data.get("spent", {}).items()}


@dataclass(frozen=True)
class CarriedSpend:
    """What a resumed run has already spent, and how much of it its checkpoint keeps.

    Attributes:
        spent: by kind, all the work this run did before (its journal).
        reused: total FLOPs of that work the checkpoint it resumes from keeps (0 when it
            starts over or loads another run's weights).
    """

    spent: dict[str, float] = field(default_factory=dict)
    reused: float = 0.0

    @property
    def redone(self) -> float:
        """Work done after the checkpoint and lost with the process: done again, charged again."""
        return max(0.0, sum(self.spent.values()) - self.reused)


def carried_spend(journal: Path, run_id: str, checkpoint_state: Mapping[str, Any] | None
                  ) -> CarriedSpend:
    """The spend a resumed run carries.

    Args:
        journal: the run directory's :data:`JOURNAL_FILE`.
        run_id: the ledger row being continued.
        checkpoint_state: ``state.json`` of the checkpoint the run will resume from (its
            ``meter`` entry names the run that wrote it), or None when it starts afresh.

    Returns:
        A :class:`CarriedSpend` (empty when nothing was journaled for this run).
    """
    spent = read_journal(journal, run_id)
    meter = (checkpoint_state or {}).get("meter") or {}
    reused = sum(meter.get("spent", {}).values()) if meter.get("run_id") == run_id else 0.0
    if spent is None:  # journal lost: the checkpoint's figure is all that is known
        return CarriedSpend(dict(meter.get("spent", {})) if reused else {}, reused)
    return CarriedSpend(spent, reused)
