"""Generic matplotlib helpers and the command-line figures (`sweep`, `flow`).

Each study draws its own figure in its module (`reproduce/*.py`) with these helpers.
matplotlib is imported lazily; figures are drawn by the Agg canvas directly, without
pyplot's global state (nothing to close, nothing shown, safe in any thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence


def prefetch() -> None:
    """Import matplotlib in a background thread, so that a figure drawn after a sweep does
    not wait for it: the sweep spends its time in XLA, which lets other threads run."""
    threading.Thread(target=_import_matplotlib, name="zasjax-matplotlib", daemon=True).start()


def _import_matplotlib() -> None:
    import matplotlib.figure  # noqa: F401


def subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    """`(figure, axes)` as `pyplot.subplots` makes them, on a figure of its own."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, path) -> None:
    """Lay out and write `fig` (120 dpi)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def iterations_vs_depth(rows: Sequence[dict], path: str | os.PathLike,
                        title: str = "Iterations to ε vs depth") -> None:
    """Log-log plot of iterations-to-ε against depth, one line per (init, target, dim[, lr]).

    Each point is the median over seeds of the converged runs; depths where no seed
    converged are left out (and say so in the legend count).
    """
    import numpy as np

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
    fig, ax = subplots(figsize=(6, 4.5))
    for group, pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
        depths = sorted(pts)
        label = f"{group[0]}, Φ={group[1]}, d={group[2]}" + (f", η={group[3]:g}"
                                                            if len(group) > 3 else "")
        if not depths:
            ax.plot([], [], label=label + " (none converged)")
            continue
        ax.plot(depths, [max(float(np.median(pts[L])), 0.5) for L in depths], "o-",
                label=label)
    if any(lines.values()):  # log axes need at least one point
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no configuration converged", ha="center", va="center",
                transform=ax.transAxes)
    _finish(fig, ax, path, "depth L", "iterations to ε (median over seeds)", title)


def flow_vs_gd(path: str | os.PathLike, ts, loss_flow, bound, gd_curves: dict,
               title: str = "Gradient flow vs gradient descent") -> None:
    """R(t) of the gradient flow against the Theorem 4.1 bound e^{−2t}R(0), with gradient
    descent on top (log-y).

    `ts`, `loss_flow`, `bound`: equal-length sequences; `gd_curves` maps a label (e.g.
    "η=0.1") to `(t, losses)` with t = η·k. Non-positive or non-finite values are not drawn.
    """
    import numpy as np

    def positive(y):
        y = np.asarray(y, float)
        return np.where(np.isfinite(y) & (y > 0), y, np.nan)

    fig, ax = subplots(figsize=(6.4, 4.4))
    ax.plot(ts, positive(bound), "k--", lw=1.2, label="e^{−2t} R(0) (Thm 4.1)")
    ax.plot(ts, positive(loss_flow), "k-", lw=2.2, label="gradient flow")
    for label, (t, losses) in gd_curves.items():
        ax.plot(t, positive(losses), lw=1.0, alpha=0.85, label=f"GD, {label}")
    ax.set_yscale("log")
    _finish(fig, ax, path, "t  (= η · step for GD)", "R = ½‖W_{L:1} − Φ‖²_F", title)


def scaling_lines(series: Sequence[dict], path: str | os.PathLike, *, title: str,
                  xlabel: str = "depth L", ylabel: str = "iterations to ε",
                  logx: bool = True, logy: bool = True) -> None:
    """One line per entry of `series` (dicts with `label`, `x`, `y`; the label carries the
    fitted exponent or rate). Points with a non-finite or (on a log axis) non-positive y are
    not drawn, so a depth where no run converged leaves a gap rather than a fake value.
    """
    import numpy as np

    fig, ax = subplots(figsize=(6.4, 4.5))
    for s in series:
        x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
        ok = np.isfinite(y) & ((y > 0) if logy else True)
        ax.plot(x[ok], y[ok], "o-", ms=4, label=s["label"])
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    _finish(fig, ax, path, xlabel, ylabel, title)


def _finish(fig, ax, path, xlabel: str, ylabel: str, title: str) -> None:
    # The common end of the figures here: labels, a light grid, the legend, the file.
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
