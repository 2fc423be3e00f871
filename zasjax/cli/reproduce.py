"""`zasjax reproduce NAME [--quick] [--out DIR] [options]`: one of the papers' experiments.

Each study's options come from its config (`zasjax.reproduce._runner`); `zasjax reproduce
NAME -h` lists them.
"""

from __future__ import annotations

import argparse

HELP = "one of the papers' experiments"
DESCRIPTION = ("Run one of the papers' experiments; `zasjax reproduce NAME -h` lists its "
               "options.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..reproduce import REPRODUCTIONS

    p.add_argument("name", metavar="NAME", choices=sorted(REPRODUCTIONS),
                   help=", ".join(REPRODUCTIONS))
    p.add_argument("options", nargs=argparse.REMAINDER, help="the study's options")


def prepare(args):
    from ..reproduce._runner import parse

    return parse(args.name, args.options)


def execute(job) -> int:
    from .. import reproduce

    cfg, out = job
    reproduce.run(cfg, out)
    print(f"wrote {out}/summary.json")
    return 0
