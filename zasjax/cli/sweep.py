"""`zasjax sweep`: options → grids → `sweep` → results.csv, config.json, a plot.

Everything is checked in `prepare`, before the output folder is touched, so bad input
writes nothing; `execute` takes the folder's lock, compares a resumed sweep's identity and
runs. Run `zasjax sweep -h` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import _plots, _store
from .._errors import InputError
from .._lists import parse_floats, parse_ints, parse_names
from .._sweep import AUTO_LRS, COLUMNS, Grid, best_per_config, sweep
from .._sweep._engines import check_engine
from ._processes import (
    AUTO_MIN_DIM,
    device_count,
    devices_option,
    processes_mode,
    start_devices,
)

HELP = "run a grid of GD configurations"
DESCRIPTION = ("Run init × target × dim × depth × seed × lr, write DIR/results.csv, "
               "DIR/config.json and a plot.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `zasjax sweep`."""
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
    g = p.add_argument_group("devices and processes")
    g.add_argument("--devices", metavar="N|auto",
                   help="CPU only: N XLA devices in this process, the configurations split "
                        f"over them; auto: one per core from width {AUTO_MIN_DIM} on (where "
                        "that is faster), else 1 (default: JAX's, one)")
    g.add_argument("--processes", type=int, metavar="N",
                   help="run the sweep as N processes on this machine (JAX's distributed "
                        "runtime, as on a cluster); process 0 writes")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process job found by JAX (SLURM, Open MPI, cloud TPU): "
                        "jax.distributed.initialize() with no arguments")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="join a multi-process job: process 0's address (with --num-processes "
                        "and --process-id; every process runs the same command)")
    g.add_argument("--num-processes", type=int, metavar="N")
    g.add_argument("--process-id", type=int, metavar="I")
    p.add_argument("--no-progress", action="store_true")


def _fig2_quick() -> list[Grid]:
    # Wu-Wang-Ma's Figure 2 at its quick size: the study's own grids (reproduce/fig2.py).
    from ..reproduce import fig2

    cfg = fig2.Config.quick()
    return fig2.grids(cfg, top=cfg.lr_top)


def _fig2_quick_dims() -> tuple[int, ...]:
    from ..reproduce import fig2

    return tuple(sorted({fig2.CASES[c][1] for c in fig2.Config.quick().cases}))


#: name -> (grids, tune_lr, x64, widths). The grids may compute with JAX (fig2's η caps
#: draw Φ), so they are built after the devices start; the widths, needed before, do not.
PRESETS = {
    "fig2-quick": (_fig2_quick, True, True, _fig2_quick_dims),
}


def _preset(args):
    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[args.preset]


def dims_from_args(args) -> tuple[int, ...]:
    """The widths a sweep will run, without building its grids (no JAX computation)."""
    return _preset(args)[3]() if args.preset else tuple(parse_ints(args.dim, "dim"))


def grids_from_args(args) -> tuple[list[Grid], bool]:
    """The grids and whether to tune the learning rate; ValueError on bad input. Call after
    `prepare` has set and enabled a preset's x64: building a preset's grids computes."""
    if args.preset:
        make, tune, _, _ = _preset(args)
        return make(), tune
    dims = parse_ints(args.dim, "dim")
    targets = parse_names(args.target or "neg-identity", "target")
    target_matrix = None
    if args.target_file:
        from .._targets import load_target

        if args.target:
            raise ValueError("give --target or --target-file, not both")
        if len(dims) != 1:
            raise ValueError("--target-file fixes the shape, so give exactly one --dim")
        target_matrix = load_target(args.target_file, (dims[0], dims[0]))
        targets = ["file"]
    if args.lr is not None:
        lrs = parse_floats(args.lr, "lr")
    else:
        lrs = AUTO_LRS if args.tune_lr else [0.01]
    hyper = {}
    for item in args.opt_arg:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--opt-arg expects NAME=VALUE, got {item!r}")
        try:
            hyper[name] = float(value)
        except ValueError:
            raise ValueError(f"--opt-arg {name} expects a number, got {value!r}") from None
    grid = Grid(inits=tuple(parse_names(args.init, "init")), targets=tuple(targets),
                dims=tuple(dims),
                depths=tuple(parse_ints(args.depths, "depths")),
                seeds=tuple(parse_ints(args.seeds, "seeds")), lrs=lrs,
                optimizer=args.optimizer, hyper=tuple(sorted(hyper.items())), eps=args.eps,
                max_iters=args.max_iters, init_scale=args.init_scale,
                target_matrix=target_matrix)
    return [grid], args.tune_lr


def run_config(args, grids: list[Grid], tune: bool) -> dict:
    """What config.json records: the command, the grids, versions, device and dtype."""
    import jax
    import jaxlib

    from .. import __version__

    return {
        "command": shlex.join(["zasjax", *getattr(args, "argv", sys.argv[1:])]),
        "preset": args.preset, "tune_lr": tune, "grids": [g.identity() for g in grids],
        "engine": args.engine,
        "dtype": "float64" if args.x64 else "float32",
        "versions": {"zasjax": __version__, "jax": jax.__version__,
                     "jaxlib": jaxlib.__version__, "python": platform.python_version()},
        "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
        "device_count": jax.device_count(), "process_count": jax.process_count(),
    }


def _identity(config: dict) -> dict:
    # Everything that changes a row of results.csv: compared when a sweep is resumed.
    return {k: config[k] for k in ("grids", "tune_lr", "dtype", "preset", "engine")}


@dataclass
class Job:
    """A checked sweep, ready to run (`launch`: (workers, devices each) for `--processes`)."""

    args: argparse.Namespace
    grids: list
    tune: bool
    out: str
    config: dict
    launch: tuple | None = None


def prepare(args) -> Job:
    """Every check that needs no lock and writes nothing (ValueError: a usage error)."""
    if args.out is not None and not args.out.strip():
        raise ValueError("--out must name a folder, got an empty string")
    mode = processes_mode(args)
    devices = devices_option(args.devices)
    dims = dims_from_args(args)
    if args.preset:
        args.x64 = args.x64 or _preset(args)[2]
    if args.chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
    if args.bucket_ratio is not None and not args.bucket_ratio >= 1:  # also refuses nan
        raise ValueError(f"--bucket-ratio must be a number >= 1, got {args.bucket_ratio}")
    out = args.out or os.path.join("runs", args.preset or "sweep")
    _store.check_folder(out)
    runs_csv = os.path.join(out, "runs.csv")
    if os.path.exists(runs_csv) and not args.resume:
        raise ValueError(f"{out!r} already holds a sweep; pass --resume to continue it, "
                         "or choose another --out")
    if mode == "launch":  # the workers start JAX; this process only waits for them
        grids, tune = grids_from_args(args)
        for g in grids:
            check_engine(g, args.engine)
        return Job(args, grids, tune, out, {},
                   launch=(args.processes, device_count(devices, dims, args.processes)))
    if mode == "worker":
        env = os.environ
        devices = int(env["ZASJAX_DEVICES"]) if env.get("ZASJAX_DEVICES") else None
    else:
        devices = device_count(devices, dims)
    # Devices, processes and x64 before any JAX computation (building a grid may compute).
    start_devices(devices)

    import jax

    from .._launch import initialize, stop_with_launcher
    from .._sweep._driver import check_target_fits
    from .._sweep._plan import check_fits, memory_budget

    if mode == "worker":
        stop_with_launcher()
        initialize(os.environ["ZASJAX_COORDINATOR"], int(os.environ["ZASJAX_NUM_PROCESSES"]),
                   int(os.environ["ZASJAX_PROCESS_ID"]))
    elif mode == "join":
        initialize(args.coordinator, args.num_processes, args.process_id)
    elif mode == "detect":
        initialize()
    if isinstance(args.devices, str) and args.devices != "auto" and \
            jax.default_backend() != "cpu":
        raise ValueError(f"--devices sets the number of CPU devices; this process runs on "
                         f"{jax.default_backend()}, where every visible device is used "
                         "(choose them with CUDA_VISIBLE_DEVICES)")
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = np.dtype("float64" if args.x64 else "float32")
    from .._compilation import enable_persistent_cache

    enable_persistent_cache()  # a preset's grids compile small programs too
    grids, tune = grids_from_args(args)
    for g in grids:
        check_engine(g, args.engine)
    for g in grids:
        check_target_fits(g, dtype)
        check_fits(g.dims, g.depths, dtype.itemsize, g.optimizer, memory_budget(jax.devices()))
    return Job(args, grids, tune, out, run_config(args, grids, tune))


def execute(job: Job) -> int:
    """Lock the output folder (process 0), check a resumed sweep's identity, run, write.

    With several processes, process 0's refusals reach the others (they exit 2 quietly), and
    a process whose partner vanished stops with one line (`PEER_LOST`) instead of waiting.
    """
    if job.launch:
        from .._launch import launch

        n, per = job.launch
        return launch(job.args.argv, n, per, job.out)
    import jax

    if jax.process_count() == 1:
        return _execute(job)
    from .._launch import PEER_LOST, launched
    from .._sweep._devices import WriterRefused

    try:
        code = _execute(job)
    except WriterRefused:
        return 2  # process 0 said why, in one line
    except (jax.errors.JaxRuntimeError, ValueError) as e:
        if isinstance(e, InputError) or not _peer_failure(e):
            raise
        if not launched():  # run by the launcher, the launcher names the failed worker
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            print(f"zasjax: error: process {jax.process_index()} of {jax.process_count()} "
                  f"stopped: a collective failed, another process of the sweep is most "
                  f"likely gone ({first}); finished runs are in {job.out}/runs.csv; run the "
                  "same command with --resume to finish the sweep", file=sys.stderr)
        code = PEER_LOST
    if code != 0:
        # Skip JAX's exit barrier: it would wait for processes that are gone, then abort.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _peer_failure(e: Exception) -> bool:
    # A collective that failed because another process went away: gloo (and the runtime's
    # coordination service) report it as a runtime error, some gathers as a ValueError.
    import jax

    text = str(e)
    return isinstance(e, jax.errors.JaxRuntimeError) or any(
        w in text for w in ("Gloo", "UNAVAILABLE", "Connection reset", "DEADLINE_EXCEEDED"))


def _execute(job: Job) -> int:
    import jax

    from .._sweep._devices import on_writer

    config_path = os.path.join(job.out, "config.json")
    if jax.process_index() != 0:
        on_writer(lambda: None)  # process 0's lock and identity checks
        return _run(job, config_path, writer=False)
    with contextlib.ExitStack() as stack:
        on_writer(lambda: _lock_and_check(job, config_path, stack))
        return _run(job, config_path, writer=True)


def _lock_and_check(job: Job, config_path: str, stack: contextlib.ExitStack) -> None:
    _store.prepare_folder(job.out)
    stack.enter_context(_store.OutputLock(job.out))
    if job.args.resume and os.path.exists(config_path):
        try:
            before = _store.read_json(config_path)
        except ValueError:
            raise InputError(f"{config_path!r} is not readable JSON; it cannot be resumed"
                             ) from None
        if before.get("identity") != _store.json_safe(_identity(job.config)):
            raise InputError(f"{job.out!r} holds a different sweep than these options "
                             "describe (grid, dtype, engine or learning-rate tuning "
                             "differ); resume it with the options it was started with")


def _run(job: Job, config_path: str, writer: bool) -> int:
    from .._compilation import Timer, enable_persistent_cache

    args, grids, tune, out = job.args, job.grids, job.tune, job.out
    config = {**job.config, "identity": _identity(job.config)}
    if writer:
        _store.write_json(config_path, {**config, "started": time.strftime("%FT%T%z")})
    cache_dir = enable_persistent_cache()
    if writer:
        _plots.prefetch()
    timer = Timer()
    rows = []
    try:
        for i, grid in enumerate(grids):
            rows += sweep(grid, out, resume=args.resume or i > 0, chunk=args.chunk,
                          bucket_ratio=args.bucket_ratio,
                          progress=writer and not args.no_progress,
                          dtype="float64" if args.x64 else "float32", prune=tune,
                          engine=args.engine)
    except KeyboardInterrupt:
        if not writer:
            return 130
        sys.stderr.write(f"\nzasjax: interrupted; finished runs are in {out}/runs.csv and runs "
                         f"in flight are checkpointed: continue with the same command and "
                         f"--resume\n")
        return 130
    timing = {**timer.record(), "cache_dir": cache_dir}
    elapsed = timing["wall_s"]
    table = best_per_config(rows) if tune else rows
    for r in table:
        r["tuned"] = tune
    if writer:
        _store.write_csv(os.path.join(out, "results.csv"), table, COLUMNS)
        _plots.iterations_vs_depth(table, os.path.join(out, "iterations_vs_depth.png"))
        _store.write_json(config_path, {**config, "seconds": round(elapsed, 3),
                                        "timing": timing,
                                        "finished": time.strftime("%FT%T%z")})
        _print_summary(table, out, elapsed)
    return 0


def _print_summary(table: list[dict], out: str, elapsed: float) -> None:
    counts = {s: sum(r["status"] == s for r in table) for s in ("converged", "diverged",
                                                                 "max-iters")}
    print(f"{len(table)} configurations in {elapsed:.1f} s: " +
          ", ".join(f"{n} {s}" for s, n in counts.items()))
    groups: dict[tuple, list] = {}
    for r in table:
        groups.setdefault((r["init"], r["target"], r["dim"], r["depth"]), []).append(r)
    print(f"{'init':<14}{'target':<14}{'dim':>4}{'depth':>9}  median iterations (lr)")
    for (init, target, dim, depth), rs in sorted(groups.items()):
        its = [r["iterations"] for r in rs if r["status"] == "converged"]
        med = f"{np.median(its):.0f}" if its else "-"
        lrs = sorted({r["lr"] for r in rs})
        lr_text = f"{lrs[0]:.3g}" if len(lrs) == 1 else f"{lrs[0]:.3g}..{lrs[-1]:.3g}"
        print(f"{init:<14}{target:<14}{dim:>4}{depth:>9}  {med} ({lr_text})")
    print(f"wrote {out}/results.csv, config.json, iterations_vs_depth.png")
