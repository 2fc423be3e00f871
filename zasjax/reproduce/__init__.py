"""The papers' experiments, one module each, run as `zasjax reproduce NAME [--quick] --out DIR`
or from Python:

    from zasjax import reproduce
    from zasjax.reproduce import fig1

    summary = reproduce.run(fig1.Config.quick(), out="runs/fig1-quick")

Each module declares `DESCRIPTION`, a `Config` (checked on construction, with a `quick()`
form), `run(cfg)` and `figure(outcome, folder)`; `_runner` owns the output folder, the
dtype, timing, the summary's metadata and the files (see its docstring).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._runner import REPRODUCTIONS as REPRODUCTIONS, load as load


def run(cfg, out: str | os.PathLike) -> dict:
    """Run the study of `cfg` (e.g. `fig1.Config.quick()`), writing to `out`; returns the
    summary written to `out/summary.json`."""
    from ._runner import run as _run

    return _run(cfg, out)


def main(name: str, argv: Sequence[str] | None = None) -> dict:
    """The command line of study `name`: `argv` holds its options (`--quick`, `--out`, ...)."""
    from ._runner import main as _main

    return _main(name, argv)
