"""The leaderboard's skill-per-FLOP plot: relative WQL against total FLOPs, Pareto front drawn."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

__all__ = ["pareto_front", "plot_pareto"]


def pareto_front(summary: pd.DataFrame) -> list[str]:
    """Competitors no other beats on both total FLOPs and relative WQL (lower is better on
    both), cheapest first.

    Example:
        >>> s = pd.DataFrame({"flops_total": [0.0, 5.0, 9.0, 2.0],
        ...                   "wql_rel_gmean": [1.0, 0.5, 0.7, 1.2]}, index=list("abcd"))
        >>> pareto_front(s)
        ['a', 'b']
    """
    rows = summary[["flops_total", "wql_rel_gmean"]].dropna()
    rows = rows.sort_values(["flops_total", "wql_rel_gmean"])
    front, best = [], math.inf
    for name, row in rows.iterrows():
        if row.wql_rel_gmean < best:
            front.append(str(name))
            best = row.wql_rel_gmean
    return front


def plot_pareto(path: Path, summary: pd.DataFrame, classical: set[str], suite: str) -> None:
    """Scatter every competitor with its 95% interval against its total FLOPs (classical models
    at the left edge: their CPU fits are not counted), step through the Pareto front of the
    LLMs and draw the best classical model's level: what a FLOP of fine-tuning must beat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flops = summary["flops_total"].astype(float)
    positive = flops[flops > 0]
    floor = positive.min() / 10 if len(positive) else 1.0
    x = flops.where(flops > 0, floor)
    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    for name, row in summary.iterrows():
        y = row.wql_rel_gmean
        if math.isnan(y):
            continue
        err = [[y - row.wql_rel_ci_low], [row.wql_rel_ci_high - y]]
        marker = "s" if name in classical else "o"
        ax.errorbar(x[name], y, yerr=err, fmt=marker, capsize=3, label=str(name))
    llms = summary.loc[[n for n in summary.index if n not in classical]]
    front = pareto_front(llms.assign(flops_total=x[llms.index]))
    if front:
        ax.step(x[front], summary.loc[front, "wql_rel_gmean"], where="post", color="grey",
                linestyle="--", linewidth=1, label="Pareto front of the LLMs")
    best = summary.loc[[n for n in summary.index if n in classical], "wql_rel_gmean"].dropna()
    if len(best):
        ax.axhline(best.min(), color="tab:blue", linestyle=":", linewidth=1,
                   label=f"best classical ({best.idxmin()})")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"total FLOPs (fine-tuning + forecasting; classical drawn at {floor:.0e})")
    ax.set_ylabel("WQL relative to seasonal naive (geo. mean)")
    ax.set_title(f"suite {suite}: skill per FLOP")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
