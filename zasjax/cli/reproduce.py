"""`zasjax reproduce NAME [--quick] [--out DIR] [options]`: one of the papers' experiments.

One subcommand per study; its options are the fields of `zasjax.ReproduceSpec` and of the
study's config (`zasjax.reproduce._runner`); `zasjax reproduce NAME -h` lists them.
"""

from __future__ import annotations

import argparse

HELP = "one of the papers' experiments"
DESCRIPTION = ("Run one of the papers' experiments; `zasjax reproduce NAME -h` lists its "
               "options.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..reproduce import REPRODUCTIONS, _runner, load

    studies = p.add_subparsers(dest="study", metavar="NAME", required=True,
                               help=", ".join(REPRODUCTIONS))
    for name in REPRODUCTIONS:
        about = getattr(load(name), "DESCRIPTION", None)
        _runner.add_study_arguments(studies.add_parser(
            name, help=about and about.replace("%", "%%"), description=about), name)


def prepare(args):
    from ..reproduce import _runner

    spec = _runner.spec_of(args.study, args)
    _runner.preflight(spec)
    return spec


def execute(spec) -> int:
    from .. import reproduce

    reproduce.run(spec.config, spec.out)
    print(f"wrote {spec.out}/summary.json")
    return 0
