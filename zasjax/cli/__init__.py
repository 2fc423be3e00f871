"""The `zasjax` command: gradient-descent dynamics of deep linear networks.

    zasjax sweep ...            a grid of GD runs -> results.csv, config.json, a plot
    zasjax plot DIR ... --out F sweeps side by side: medians, quartile bands, exponents
    zasjax flow ...             gradient flow (diffrax) beside GD
    zasjax reproduce NAME ...   one of the papers' experiments
    zasjax bench ...            the side-by-side benchmark

One module per subcommand, each with `add_arguments(parser)` (the fields of the command's
spec, through `zasjax._options`: `SweepSpec`, `FlowSpec`, `PlotSpec`, `ReproduceSpec`,
`BenchSpec`), `prepare(args)` (the spec, every check; nothing written) and `execute(job)`.
`main` returns the exit status and never exits itself: 0 done (or `--help`, `--version`
printed); 2 a usage error (a bad option, any `ValueError` the spec's checks or `prepare`
raise, or an `InputError` found later), reported as one line with nothing written; 74 a
result could not be written (a full disk, a folder no longer writable: `OutputError`, one
line; what was written is intact); 130 interrupted; 1 an internal error, reported with a
hint to file it.

The command, unlike `import zasjax`, sets up its process: before JAX starts, `main` asks
XLA:CPU for whole-loop kernels (`zasjax.use_cpu_loop_kernels`, in `XLA_FLAGS`, so the
worker processes it starts have them too); `ZASJAX_KEEP_XLA_FLAGS=1` leaves them alone.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import traceback

from .._errors import InputError, OutputError

#: subcommand -> module (imported when the parser is built; each imports JAX lazily).
COMMANDS = {name: f"zasjax.cli.{name}" for name in ("sweep", "plot", "flow", "reproduce", "bench")}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zasjax")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    from .._options import Parser  # argparse, its usage errors on one line

    parser = Parser(prog="zasjax", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"zasjax {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, path in COMMANDS.items():
        module = importlib.import_module(path)
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
        p.set_defaults(module=module)
    return parser


def loop_kernels(env=os.environ) -> bool:
    """XLA:CPU's whole-loop kernels for this process and its children, unless JAX already
    runs here (a caller of `main` whose backend has started keeps its flags as they are)."""
    from .._compilation import LOOP_OPTION, backend_started, use_cpu_loop_kernels

    if backend_started():
        return LOOP_OPTION in env.get("XLA_FLAGS", "")
    return use_cpu_loop_kernels(env)


def main(argv: list[str] | None = None) -> int:
    loop_kernels()  # first: XLA reads its flags when JAX starts its backend
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        job = args.module.prepare(args)
    except SystemExit as e:  # --help, --version: printed, argparse's own exit
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except ValueError as e:  # a bad option, or any check of the input: nothing written
        return _usage(e)
    except KeyboardInterrupt:
        return _interrupted()
    try:
        return int(args.module.execute(job) or 0)
    except InputError as e:  # found later: a lock held, a file that cannot be resumed
        return _usage(e)
    except OutputError as e:  # a full disk, a folder no longer writable: one line
        print(f"zasjax: error: {e}", file=sys.stderr)
        return 74
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:  # noqa: BLE001 - reported, with the traceback, as our bug
        return _internal(e)


def console() -> int:
    """The `zasjax` script and `python -m zasjax`: `main`, then a quick exit."""
    code = main()
    # Python's last garbage collections at exit walk every object JAX and matplotlib made
    # (a quarter of a second on 2 cores); frozen, they go with the process. Every file
    # zasjax writes is closed by now.
    gc.freeze()
    return code


def _interrupted() -> int:
    print("\nzasjax: interrupted", file=sys.stderr)
    return 130


def _usage(e: BaseException) -> int:
    message = " ".join(str(e).splitlines())  # one line, whatever the check wrote
    print(f"zasjax: error: {message}", file=sys.stderr)
    return 2


def _internal(e: BaseException) -> int:
    traceback.print_exception(e, file=sys.stderr)
    print(f"zasjax: internal error: {type(e).__name__}: {e}\nThis is a bug in zasjax, not in "
          "your input: please file it with the command and the traceback above.",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(console())
