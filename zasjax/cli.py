"""The `zasjax` command: argument parsing only; the work is done by the package below.

    zasjax sweep ...            a grid of GD runs -> results.csv, config.json, a plot
    zasjax flow ...             gradient flow (diffrax) beside GD
    zasjax reproduce NAME ...   one of the papers' experiments
    zasjax bench ...            the side-by-side benchmark
"""

from __future__ import annotations

import argparse
import importlib
import sys


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit status 2, nothing written."""


def parse_ints(text: str, name: str) -> list[int]:
    """`1,2,8` or `a:b` (a..b-1) or a mix: `1,4:8`."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            if ":" in part:
                a, b = part.split(":")
                out.extend(range(int(a), int(b)))
            else:
                out.append(int(part))
        except ValueError:
            raise UsageError(f"--{name} expects integers or ranges a:b separated by commas, "
                             f"got {text!r}") from None
    if not out:
        raise UsageError(f"--{name} expects at least one value, got {text!r}")
    return out


def parse_floats(text: str, name: str) -> list[float]:
    try:
        out = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--{name} expects numbers separated by commas, got {text!r}") from None
    if not out:
        raise UsageError(f"--{name} expects at least one value, got {text!r}")
    return out


def parse_names(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of GD configurations",
                       description="Run init × target × dim × depth × seed × lr, write "
                                   "DIR/results.csv, DIR/config.json and a plot.")
    p.add_argument("--preset", help="a named study (e.g. fig2-quick); replaces the grid options")
    p.add_argument("--init", default="zas", help="comma list of initialisations")
    p.add_argument("--target", default=None,
                   help="comma list of targets (default neg-identity)")
    p.add_argument("--target-file", help="a .npy matrix used as the target (d × d)")
    p.add_argument("--dim", default="1", help="comma list of widths d")
    p.add_argument("--depths", default="1,2,4,8,16", help="depths: 1,2,8 or a:b")
    p.add_argument("--seeds", default="0", help="seeds: 0,1 or 0:64")
    p.add_argument("--lr", default=None, help="learning rate(s), comma list (default 0.01)")
    p.add_argument("--tune-lr", action="store_true",
                   help="try a log grid of learning rates (or the --lr list) in one batch and "
                        "keep the fastest that converges; the default grid is 2^-14/L..2/L "
                        "(capped at 1), two per octave, at each depth L")
    p.add_argument("--eps", type=float, default=1e-10, help="convergence threshold on R")
    p.add_argument("--max-iters", type=int, default=10_000)
    p.add_argument("--optimizer", default="gd", help="gd, sgd, momentum, nesterov, adam")
    p.add_argument("--opt-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="optimizer hyper-parameter, e.g. --opt-arg momentum=0.95")
    p.add_argument("--init-scale", type=float, help="noise/scale parameter of the init")
    p.add_argument("--x64", action="store_true", help="float64 (needed for eps=1e-10 at d=100)")
    p.add_argument("--out", help="output folder (default runs/<preset or 'sweep'>)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out")
    p.add_argument("--chunk", type=int, default=1000, help="iterations per compiled chunk")
    p.add_argument("--bucket-ratio", type=float, default=None,
                   help="split each width into depth classes ceil(ratio^k), each compiled "
                        "on its own (default: one class per width; 1 = one per depth)")
    p.add_argument("--engine", default="full", choices=("full", "modes"),
                   help="full: every layer; modes: the exact mode reduction of GD from ZAS, "
                        "O(d) a step at any depth (zas init and plain gd only)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host jobs)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args) -> int:
    from . import _sweep_cli

    return _sweep_cli.main(args)


def _flow_parser(sub) -> None:
    p = sub.add_parser("flow", help="gradient flow via diffrax, beside GD", add_help=False)
    p.set_defaults(handler=_run_flow)


def _run_flow(args, rest) -> int:
    from . import _flow_cli

    p = argparse.ArgumentParser(prog="zasjax flow",
                                description="Solve dW/dt = -∇R(W) with diffrax and compare "
                                            "GD at t = ηk.")
    _flow_cli.add_arguments(p)
    _flow_cli.main(p.parse_args(rest))
    return 0


def _reproduce_parser(sub) -> None:
    from .reproduce import REPRODUCTIONS

    p = sub.add_parser("reproduce", help="one of the papers' experiments")
    names = p.add_subparsers(dest="name", metavar="NAME", required=True)
    for name in REPRODUCTIONS:
        # Options are added only for the chosen study, so importing the others stays lazy.
        q = names.add_parser(name, add_help=False)
        q.set_defaults(handler=_run_reproduction)


def _run_reproduction(args, rest) -> int:
    from . import reproduce

    # The study's options are derived from its config by the study runner.
    reproduce.main(args.name, rest)
    return 0


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="side-by-side benchmark", add_help=False)
    p.set_defaults(handler=lambda args, rest: importlib.import_module("zasjax._bench").main(rest))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zasjax")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zasjax", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"zasjax {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _sweep_parser(sub)
    _flow_parser(sub)
    _reproduce_parser(sub)
    _bench_parser(sub)
    return parser


# Subcommands that parse their own trailing options.
_PASSTHROUGH = {"flow", "reproduce", "bench"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if argv and argv[0] in _PASSTHROUGH:
            args, rest = parser.parse_known_args(argv)
            if "-h" in rest and argv[0] == "reproduce" and len(argv) < 3:
                parser.parse_args(argv)
            status = args.handler(args, rest)
        else:
            args = parser.parse_args(argv)
            args.argv = argv
            status = args.handler(args)
    except (UsageError, ValueError) as e:
        print(f"zasjax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nzasjax: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
