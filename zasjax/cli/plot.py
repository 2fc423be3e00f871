"""`zasjax plot DIR [DIR ...] --out FILE`: sweeps (or studies) side by side in one figure.

One line per init / target / width / folder (and per any other axis of the sweeps that
varies: optimizer, objective, observations, init scale, the learning rate of an untuned
sweep): the median of `--y` over the seeds at each `--x`, the interquartile band (25–75%)
around it, and the local exponent γ of y ∝ x^γ (least squares of log y on log x over the
upper half of the line's x values) written at its end. Only converged runs are drawn unless
`--all`; the legend counts the rest by status. An axis is logarithmic where all its values
are positive and span more than a decade. A sweep's own `iterations_vs_depth.png` is this
figure of its folder.

The options are the fields of `zasjax.PlotSpec`. The folders are read (`zasjax.load_sweep`)
and the lines computed in `prepare`, so a folder that is not a sweep, or a column that is
not numeric, is a one-line error and nothing is written.
"""

from __future__ import annotations

import argparse
import os

from .._options import add_options, given
from .._plots import PlotSpec

HELP = "draw sweeps (or studies) side by side: medians, quartile bands, exponents"
DESCRIPTION = ("Plot --y against --x for the results of each sweep folder DIR: one line per "
               "init/target/dim/folder, median over seeds with the 25-75% band and the local "
               "exponent; converged runs only unless --all.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fields of `PlotSpec`: the folders, then the options."""
    add_options(parser, PlotSpec)


def prepare(args: argparse.Namespace):
    """Read the folders and compute the lines (ValueError: a usage error); writes nothing."""
    from .. import _plots

    spec = PlotSpec(**given(args, PlotSpec))
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


__all__ = ["add_arguments", "prepare", "execute"]
