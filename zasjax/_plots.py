"""Generic matplotlib helpers and the command-line figures (`sweep`, `plot`, `flow`).

`PlotSpec` is one `zasjax plot` figure (folders, axes, file), checked on construction.

Each study draws its own figure in its module (`reproduce/*.py`) with these helpers.
matplotlib is imported lazily; figures are drawn by the Agg canvas directly, without
pyplot's global state (nothing to close, nothing shown, safe in any thread).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._options import option


def prefetch() -> None:
    """Import matplotlib in a background thread, so that a figure drawn after a sweep does
    not wait for it: the sweep spends its time in XLA, which lets other threads run."""
    threading.Thread(target=_import_matplotlib, name="zasjax-matplotlib", daemon=True).start()


def _import_matplotlib() -> None:
    import matplotlib.figure  # noqa: F401
    import pandas  # noqa: F401  (the figure reads the results back as a DataFrame)


def subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    """`(figure, axes)` as `pyplot.subplots` makes them, on a figure of its own."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, path) -> None:
    """Lay out and write `fig` (120 dpi)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)


#: A sweep's identity columns besides depth and seed: one line per value of each that varies.
AXES = ("init", "target", "dim", "optimizer", "objective", "observations", "init_scale")
#: How a line's group values read in its label (any other column: `name=value`).
_LABELS = {"init": "{}", "target": "Φ={}", "dim": "d={}", "lr": "η={:g}", "folder": "{}"}


class Line(NamedTuple):
    """One line of a summary figure: a group of rows, summarised at each x over the rest
    (the seeds). Arrays are aligned and sorted by x; only x values with a point appear."""

    key: dict            # the group: column -> value
    label: str
    x: np.ndarray
    median: np.ndarray
    q25: np.ndarray      # the interquartile band (numpy's linear percentiles)
    q75: np.ndarray
    count: np.ndarray    # points summarised at each x
    exponent: float      # `local_exponent(x, median)`
    left_out: dict       # status -> rows of the group not drawn (see `summarise`)


def local_exponent(x, y) -> float:
    """γ of y ∝ x^γ at the large-x end: the least-squares slope of log y against log x
    over the upper half of the points (the last ⌈n/2⌉, at least 2) with x, y > 0; NaN
    with fewer than 2 such points."""
    from ._fits import fit_power_law

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    x, y = x[ok], y[ok]
    keep = max(2, -(-len(x) // 2))
    return fit_power_law(x[-keep:], y[-keep:]) if len(x) >= 2 else float("nan")


def summarise(df, x: str = "depth", y: str = "iterations", by: Sequence[str] | None = None,
              *, include_all: bool = False) -> list[Line]:
    """The lines a summary figure draws from `df` (rows as `load_sweep` returns them).

    One line per distinct value of the `by` columns (default `plot_groups(df, x)`); at each
    x, the median and the 25th/75th percentiles of y over the line's other rows (the
    seeds). Only converged rows are drawn unless `include_all`; rows left out, or whose y is
    missing or not finite, are counted per status in `left_out`. ValueError if `x` or `y`
    is not a numeric column of `df`.
    """
    for name, what in ((x, "x"), (y, "y")):
        if name not in df.columns:
            raise ValueError(f"{what} column {name!r} is not in the results; expected one of "
                             f"{list(df.columns)}")
        if not _numeric(df[name]):
            raise ValueError(f"{what} column {name!r} is not numeric (dtype {df[name].dtype}); "
                             "expected a column of numbers")
    by = list(plot_groups(df, x) if by is None else by)
    lines = []
    groups = df.groupby(by, dropna=False, sort=True, observed=True) if by else [((), df)]
    for key, rows in groups:
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        xs = _floats(rows[x])
        ys = _floats(rows[y])
        status = rows["status"].astype(str).to_numpy() if "status" in rows else \
            np.full(len(rows), "converged")
        drawn = np.isfinite(xs) & np.isfinite(ys) & (include_all | (status == "converged"))
        left, counts = np.unique(status[~drawn], return_counts=True)
        points = sorted(set(xs[drawn]))
        at = [ys[drawn][xs[drawn] == v] for v in points]
        med = np.array([np.median(a) for a in at])
        lines.append(Line(
            key, label(key), np.array(points, float), med,
            np.array([np.percentile(a, 25) for a in at]),
            np.array([np.percentile(a, 75) for a in at]),
            np.array([len(a) for a in at]), local_exponent(points, med),
            dict(zip(left.tolist(), counts.tolist()))))
    return lines


def plot_groups(df, x: str = "depth") -> list[str]:
    """The columns that tell lines apart: init, target and dim always, the sweep's other
    axes (`AXES`, and `lr` where it is one, see `lr_axis`) and `folder` where they vary."""
    cols = ["init", "target", "dim"]
    for c in (*AXES[3:], "lr_axis", "folder"):
        if c in df.columns and df[c].nunique(dropna=False) > 1:
            cols.append(c)
    return [c for c in cols if c in df.columns and c != x]


def label(key: dict) -> str:
    """A line's legend text from its group values (`lr_axis` reads as η; missing: left out)."""
    import pandas as pd

    return ", ".join(_LABELS.get("lr" if c == "lr_axis" else c, c + "={}").format(v)
                     for c, v in key.items() if not pd.isna(v))


def lr_axis(df):
    """`df` with `lr_axis`: the learning rate where it is an axis of the sweep (several
    rates per configuration, not tuned), missing where each row is its configuration's
    tuned rate (`tuned` column, or `config.json`'s `tune_lr`)."""
    import pandas as pd

    tuned = bool(df.attrs.get("config", {}).get("tune_lr"))
    if "tuned" in df.columns:
        tuned = tuned or bool(df["tuned"].fillna(False).any())
    out = df.copy()
    out["lr_axis"] = pd.Series(np.nan, index=df.index) if tuned else df["lr"]
    return out


def load_folders(folders: Sequence[str | os.PathLike], runs: bool = False):
    """The results of several sweep (or study) folders in one frame, with a `folder`
    column (the path as given) and `lr_axis` (see `lr_axis`)."""
    import pandas as pd

    from ._load import load_sweep

    frames = []
    for f in folders:
        df = lr_axis(load_sweep(f, runs=runs))
        df.insert(0, "folder", os.path.normpath(os.fspath(f)))
        frames.append(df)
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def draw(lines: Sequence[Line], path: str | os.PathLike, *, x: str = "depth",
         y: str = "iterations", include_all: bool = False, title: str | None = None) -> None:
    """Draw `lines` (from `summarise`) into `path`: medians with their interquartile band,
    each line's local exponent at its end, the rows not drawn counted in the legend. An
    axis is logarithmic where every value on it is positive and they span more than a
    decade."""
    fig, ax = subplots(figsize=(6.6, 4.6))
    xs = np.concatenate([ln.x for ln in lines] + [np.zeros(0)])
    ys = np.concatenate([np.r_[ln.q25, ln.median, ln.q75] for ln in lines] + [np.zeros(0)])
    for ln in lines:
        text = ln.label
        if ln.left_out:
            text += " (not drawn: " + ", ".join(f"{n} {s}" for s, n in ln.left_out.items()) + ")"
        if not len(ln.x):
            ax.plot([], [], "o-", label=text)
            continue
        (handle,) = ax.plot(ln.x, ln.median, "o-", ms=4, label=text)
        ax.fill_between(ln.x, ln.q25, ln.q75, color=handle.get_color(), alpha=0.2, lw=0)
        if np.isfinite(ln.exponent):
            ax.annotate(f"γ={ln.exponent:.2f}", (ln.x[-1], ln.median[-1]), fontsize=8,
                        color=handle.get_color(), xytext=(4, 0), textcoords="offset points",
                        va="center")
    if not len(xs):
        ax.text(0.5, 0.5, "no configuration converged" if not include_all else "no data",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log" if _log_fits(xs) else "linear")
    ax.set_yscale("log" if _log_fits(ys) else "linear")
    what = "all runs" if include_all else "converged runs"
    _finish(fig, ax, path, x, f"{y} (median, 25–75% band; {what})",
            title or f"{y} vs {x}  (γ: local exponent, upper half of {x})")


def plot_folders(folders: Sequence[str | os.PathLike], path: str | os.PathLike, *,
                 x: str = "depth", y: str = "iterations", include_all: bool = False) -> list:
    """`zasjax plot`: load `folders`, `summarise` and `draw` into `path`; returns the lines.
    A sweep's own `iterations_vs_depth.png` is this, on its folder."""
    lines = summarise(load_folders(folders), x, y, include_all=include_all)
    draw(lines, path, x=x, y=y, include_all=include_all)
    return lines


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlotSpec:
    """One `zasjax plot` figure: `y` against `x` for the results of `folders`, drawn into the
    file `out` (`plot_folders`). Checked on construction (`ValueError`); the command's
    options are these fields."""

    folders: tuple[str, ...] = option((), "sweep folders (zasjax sweep --out) or study "
                                          "folders", positional=True, metavar="DIR")
    out: str | None = option(None, "the figure's file (.png, .pdf, .svg, ...; required)",
                             metavar="FILE")
    x: str = option("depth", "column on the x axis")
    y: str = option("iterations", "column on the y axis (median over seeds)")
    include_all: bool = option(False, "draw every run, not only the converged ones",
                               flag="--all", const=True)

    def __post_init__(self):
        object.__setattr__(self, "folders", tuple(os.fspath(f) for f in self.folders))
        if not self.folders:
            raise ValueError("give at least one sweep folder DIR")
        normal = [os.path.normpath(f) for f in self.folders]
        twice = sorted({f for f in normal if normal.count(f) > 1})
        if twice:
            raise ValueError(f"folder(s) {twice} listed twice; give each folder once")
        if not self.out:
            raise ValueError("--out FILE is required: the figure's file, e.g. depth.png")
        if self.x == self.y:
            raise ValueError(f"--x and --y are both {self.x!r}; expected two columns")
        _check_format(self.out)


def _check_format(path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    kinds = FigureCanvasAgg.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in kinds:
        raise ValueError(f"--out {path!r}: expected a file name ending in one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}")


def _log_fits(values: np.ndarray) -> bool:
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 10


def _numeric(column) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _floats(column) -> np.ndarray:
    return column.astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def flow_vs_gd(path: str | os.PathLike, ts, loss_flow, bound, gd_curves: dict,
               title: str = "Gradient flow vs gradient descent") -> None:
    """R(t) of the gradient flow against the Theorem 4.1 bound e^{−2t}R(0), with gradient
    descent on top (log-y).

    `ts`, `loss_flow`, `bound`: equal-length sequences; `gd_curves` maps a label (e.g.
    "η=0.1") to `(t, losses)` with t = η·k. Non-positive or non-finite values are not drawn.
    """
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
