"""The papers' experiments, one module each, run as `zasjax reproduce NAME [--quick] --out DIR`.

Each module declares `DESCRIPTION: str`, `add_arguments(parser)` for its own options
(`--quick` and `--out` are added by the CLI) and `main(args) -> dict`, which writes
`args.out/summary.json`, a tidy CSV and PNG figure(s), and returns the summary.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module; imported lazily so `zasjax --help` stays fast.
REPRODUCTIONS: dict[str, str] = {
    name: f"zasjax.reproduce.{name}"
    for name in ("fig1", "fig2", "fig3", "shamir", "arora", "zou", "fig4")
}


def load(name: str) -> ModuleType:
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; expected one of {sorted(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name])
