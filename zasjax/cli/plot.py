"""`zasjax plot DIR [DIR ...] --out FILE`: sweeps (or studies) side by side in one figure.

One line per init / target / width / folder (and per any other axis of the sweeps that
varies: optimizer, objective, observations, init scale, the learning rate of an untuned
sweep): the median of `--y` over the seeds at each `--x`, the interquartile band (25–75%)
around it, and the local exponent γ of y ∝ x^γ (least squares of log y on log x over the
upper half of the line's x values) written at its end. Only converged runs are drawn unless
`--all`; the legend counts the rest by status. An axis is logarithmic where all its values
are positive and span more than a decade. A sweep's own `iterations_vs_depth.png` is this
figure of its folder.

The folders are read (`zasjax.load_sweep`) and the lines computed in `prepare`, so a folder
that is not a sweep, or a column that is not numeric, is a one-line error and nothing is
written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from .._options import add_options, cli_fields, given, option

HELP = "draw sweeps (or studies) side by side: medians, quartile bands, exponents"
DESCRIPTION = ("Plot --y against --x for the results of each sweep folder DIR: one line per "
               "init/target/dim/folder, median over seeds with the 25-75% band and the local "
               "exponent; converged runs only unless --all.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlotSpec:
    """One `zasjax plot` figure, checked on construction; its options are these fields."""

    folders: tuple[str, ...] = option((), cli=False)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The folders, then the fields of `PlotSpec`."""
    parser.add_argument("folders", nargs="+", metavar="DIR",
                        help="sweep folders (zasjax sweep --out) or study folders")
    add_options(parser, PlotSpec)


def prepare(args: argparse.Namespace):
    """Read the folders and compute the lines (ValueError: a usage error); writes nothing."""
    from .. import _plots

    spec = PlotSpec(folders=tuple(args.folders),
                    **given(args, [f.name for f in cli_fields(PlotSpec)]))
    folder = os.path.dirname(os.path.abspath(spec.out))
    if not os.path.isdir(folder):
        raise ValueError(f"--out {spec.out!r}: the folder {folder!r} does not exist")
    df = _plots.load_folders(spec.folders)
    lines = _plots.summarise(df, spec.x, spec.y, include_all=spec.include_all)
    return spec, lines


def execute(job) -> int:
    from .. import _plots

    spec, lines = job
    _plots.draw(lines, spec.out, x=spec.x, y=spec.y, include_all=spec.include_all)
    for ln in lines:
        left = sum(ln.left_out.values())
        print(f"{ln.label}: {len(ln.x)} points, γ = {ln.exponent:.3g}"
              + (f", {left} runs not drawn" if left else ""))
    print(f"wrote {spec.out}")
    return 0


__all__ = ["PlotSpec", "add_arguments", "prepare", "execute"]
