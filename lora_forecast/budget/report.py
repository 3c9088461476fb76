"""The study's FLOPs table, as text, CSV or Markdown: pure functions from ledger rows to a string.

One row per run (experiment, short run id, status, predicted, spent, % of budget) and a total
row, like the reference study's summary table. ``% of budget`` is of *spent* FLOPs; rejected
runs are listed (they spent nothing) but their predictions are left out of the total.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence

from lora_forecast.budget.ledger import OPEN_STATUSES, RunRow, StudySpend

SHORT_ID = 8
HEADER = ("experiment", "run", "status", "predicted FLOPs", "spent FLOPs", "% of budget")


def spend_of(rows: Sequence[RunRow], budget: float | None = None) -> StudySpend:
    """The ledger's arithmetic over rows already read (for footers; admission uses SQL)."""
    committed = sum(r.spent_flops for r in rows if r.status not in OPEN_STATUSES)
    reserved = sum(max(r.predicted_flops, r.spent_flops) for r in rows
                   if r.status in OPEN_STATUSES)
    return StudySpend(committed, reserved, budget)


def _pct(flops: float, budget: float) -> float:
    return 100.0 * flops / budget if budget > 0 else float("nan")


def _records(rows: Sequence[RunRow], budget: float) -> list[tuple[str, str, str, float, float,
                                                                  float]]:
    """Table body plus the total row, as typed values (each format renders them)."""
    body = [(r.experiment, r.run_id, r.status, r.predicted_flops, r.spent_flops,
             _pct(r.spent_flops, budget)) for r in rows]
    predicted = sum(r.predicted_flops for r in rows if r.status != "rejected")
    spent = sum(r.spent_flops for r in rows)
    body.append(("total", "", f"{len(rows)} runs", predicted, spent, _pct(spent, budget)))
    return body


def _text(rows: Sequence[RunRow], budget: float) -> str:
    cells = [HEADER] + [(e, i[:SHORT_ID], s, f"{p:.3e}", f"{f:.3e}", f"{q:.2f}")
                        for e, i, s, p, f, q in _records(rows, budget)]
    widths = [max(len(row[c]) for row in cells) for c in range(len(HEADER))]
    left = (True, True, True, False, False, False)

    def line(row: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if lj else v.rjust(w)
                         for v, w, lj in zip(row, widths, left, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(cells[0]), rule, *(line(r) for r in cells[1:-1]), rule, line(cells[-1])]
    spend = spend_of(rows)
    out.append(f"committed {spend.committed:.3e} + reserved {spend.reserved_open:.3e} = "
               f"{spend.total:.3e} of budget {budget:.3e} "
               f"({_pct(spend.total, budget):.2f}%); remaining {budget - spend.total:.3e}")
    return "\n".join(out)


def _csv(rows: Sequence[RunRow], budget: float) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("experiment", "run_id", "status", "predicted_flops", "spent_flops",
                     "pct_of_budget"))
    for e, i, s, p, f, q in _records(rows, budget):
        writer.writerow((e, i, s, f"{p:.6e}", f"{f:.6e}", f"{q:.4f}"))
    return buffer.getvalue().rstrip("\n")


def _markdown(rows: Sequence[RunRow], budget: float) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|---|---|---|---:|---:|---:|"]
    records = _records(rows, budget)
    for e, i, s, p, f, q in records[:-1]:
        out.append(f"| {e} | `{i[:SHORT_ID]}` | {s} | {p:.3e} | {f:.3e} | {q:.2f} |")
    e, _, s, p, f, q = records[-1]
    out.append(f"| **{e}** | | {s} | **{p:.3e}** | **{f:.3e}** | **{q:.2f}** |")
    return "\n".join(out)


FORMATS: dict[str, Callable[[Sequence[RunRow], float], str]] = {
    "text": _text,
    "csv": _csv,
    "markdown": _markdown,
}


def format_table(rows: Sequence[RunRow], budget: float, fmt: str = "text") -> str:
    """Render a study's runs as a FLOPs table.

    Args:
        rows: ledger rows, in the order to show (``Ledger.rows`` gives oldest first).
        budget: the study's max FLOPs; ``% of budget`` divides by it.
        fmt: ``text`` (aligned columns and a spend footer), ``csv`` (full run ids, ``%.6e``
            numbers) or ``markdown`` (a GitHub table with a bold total row).
    """
    try:
        render = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"format: must be one of {tuple(FORMATS)}, got {fmt!r}") from None
    return render(rows, budget)


def studies_of(rows: Sequence[RunRow]) -> list[str]:
    """The studies in ``rows``, in the order of their first run."""
    return list(dict.fromkeys(r.study for r in rows))


def format_studies(rows: Sequence[RunRow]) -> str:
    """One line per study: its runs, spend and budget (the latest row's max FLOPs).

    Args:
        rows: every ledger row, oldest first (``Ledger.rows()``).

    Returns:
        An aligned text table; the budget shown is the one recorded with the study's newest run.
    """
    cells = [("study", "runs", "spent FLOPs", "reserved FLOPs", "budget", "% of budget")]
    for study in studies_of(rows):
        mine = [r for r in rows if r.study == study]
        budget = max(mine, key=lambda r: r.created_at).budget
        spend = spend_of(mine)
        cells.append((study, str(len(mine)), f"{spend.committed:.3e}",
                      f"{spend.reserved_open:.3e}", f"{budget:.3e}",
                      f"{_pct(spend.total, budget):.2f}"))
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    return "\n".join("  ".join(v.ljust(w) if c == 0 else v.rjust(w)
                               for c, (v, w) in enumerate(zip(row, widths, strict=True)))
                     for row in cells)
