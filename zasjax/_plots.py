"""Matplotlib figures. matplotlib is imported lazily, with the Agg backend (no display)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def iterations_vs_depth(rows: Sequence[dict], path: str | os.PathLike,
                        title: str = "Iterations to ε vs depth") -> None:
    """Log-log plot of iterations-to-ε against depth, one line per (init, target, dim[, lr]).

    Each point is the median over seeds of the converged runs; depths where no seed
    converged are left out (and say so in the legend count).
    """
    import numpy as np

    plt = _pyplot()
    lrs_per_group: dict[tuple, set] = {}
    for r in rows:
        lrs_per_group.setdefault((r["init"], r["target"], r["dim"]), set()).add(r["lr"])
    lines: dict[tuple, dict[int, list[int]]] = {}
    for r in rows:
        group = (r["init"], r["target"], r["dim"])
        if len(lrs_per_group[group]) > 1 and not r.get("tuned"):
            group = (*group, r["lr"])
        pts = lines.setdefault(group, {})
        if r["status"] == "converged":
            pts.setdefault(r["depth"], []).append(r["iterations"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for group, pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
        depths = sorted(pts)
        label = f"{group[0]}, Φ={group[1]}, d={group[2]}" + (f", η={group[3]:g}"
                                                            if len(group) > 3 else "")
        if not depths:
            ax.plot([], [], label=label + " (none converged)")
            continue
        ax.plot(depths, [max(float(np.median(pts[L])), 0.5) for L in depths], "o-",
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth L")
    ax.set_ylabel("iterations to ε (median over seeds)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
