"""`zasjax bench`: the side-by-side benchmark (`zasjax._bench`); its options are the fields
of `zasjax.BenchSpec`."""

from __future__ import annotations

import argparse
import dataclasses

HELP = "side-by-side benchmark"
DESCRIPTION = ("zasjax sweeps against PyTorch (the whitened loss at depth 100, matrix "
               "completion at n = 100, depth 3 against the peers' PyTorch loop, and a "
               "diagonal network at d = 1000, depth 2 on linear regression), the machine's "
               "matmul rate, and a depth sweep cold, warm and against one program per depth.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .._bench import BenchSpec
    from .._options import add_options

    add_options(p, BenchSpec)


def prepare(args):
    from .._bench import BenchSpec
    from .._options import given

    return BenchSpec(**given(args, BenchSpec))


def execute(spec) -> int:
    from .. import _bench

    _bench.run(**dataclasses.asdict(spec))
    return 0
