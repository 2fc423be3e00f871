"""`zasjax bench`: the side-by-side benchmark (`zasjax._bench`)."""

from __future__ import annotations

import argparse
import os

HELP = "side-by-side benchmark"
DESCRIPTION = ("zasjax sweeps against PyTorch (the whitened loss at depth 100, and matrix "
               "completion at n = 100, depth 3 against the peers' PyTorch loop), the "
               "machine's matmul rate, and a depth sweep cold, warm and against one program "
               "per depth.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes for CI (< 2 minutes)")
    p.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    p.add_argument("--sweep-depth", type=int, default=None,
                   help="largest depth of the depth-sweep comparison (default 512, quick 16)")
    p.add_argument("--per-depth-samples", type=int, default=None,
                   help="depths on which the one-program-per-depth baseline is measured and "
                        "extrapolated from (default 24; quick: every depth)")


def prepare(args):
    if args.sweep_depth is not None and args.sweep_depth < 1:
        raise ValueError(f"--sweep-depth must be >= 1, got {args.sweep_depth}")
    if args.per_depth_samples is not None and args.per_depth_samples < 2:
        raise ValueError(f"--per-depth-samples must be >= 2, got {args.per_depth_samples}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise ValueError(f"--json {args.json!r}: folder {folder!r} does not exist")
    return args


def execute(args) -> int:
    from .. import _bench

    _bench.run(args.quick, args.json, args.sweep_depth, args.per_depth_samples)
    return 0
