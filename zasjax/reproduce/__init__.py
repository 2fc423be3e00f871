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

import importlib
import os
from collections.abc import Sequence
from types import ModuleType

# name -> module; imported lazily so `zasjax --help` stays fast.
REPRODUCTIONS: dict[str, str] = {
    name: f"zasjax.reproduce.{name}"
    for name in ("fig1", "fig2", "fig3", "shamir", "arora", "zou", "fig4", "dmf", "razin")
}


def load(name: str) -> ModuleType:
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; expected one of {sorted(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name])


def run(cfg, out: str | os.PathLike) -> dict:
    """Run the study of `cfg` (e.g. `fig1.Config.quick()`), writing to `out`; returns the
    summary written to `out/summary.json`."""
    from ._runner import run as _run

    return _run(cfg, out)


def main(name: str, argv: Sequence[str] | None = None) -> dict:
    """The command line of study `name`: `argv` holds its options (`--quick`, `--out`, ...)."""
    from ._runner import main as _main

    return _main(name, argv)
