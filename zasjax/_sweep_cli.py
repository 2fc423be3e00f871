"""`zasjax sweep`: command-line options → grids → `sweep` → results.csv, config.json, plot.

Everything is validated before the output folder is touched, so bad input writes nothing.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time

import numpy as np

from . import _plots, _store
from ._sweep import AUTO_LRS, COLUMNS, Grid, best_per_config, lr_grid, sweep
from ._sweep._engines import check_engine


def _fig2_quick() -> list[Grid]:
    # A small Wu-Wang-Ma Figure 2: ZAS, iterations to 1e-10 vs depth, η tuned per depth.
    depths = (1, 2, 4, 8, 16, 32, 64)
    lrs = tuple(lr_grid(2.0**-12, 0.5, per_octave=2))
    return [
        Grid(inits=("zas",), targets=("neg-identity",), dims=(1,), depths=depths, seeds=(0,),
             lrs=lrs, eps=1e-10, max_iters=20_000),
        Grid(inits=("zas",), targets=("gaussian",), dims=(2,), depths=depths, seeds=(0, 1, 2),
             lrs=lrs, eps=1e-10, max_iters=20_000),
    ]


#: name -> (grids, tune_lr, x64)
PRESETS = {
    "fig2-quick": (_fig2_quick, True, True),
}


def grids_from_args(args) -> tuple[list[Grid], bool]:
    """The grids and whether to tune the learning rate; ValueError on bad input."""
    from .cli import parse_floats, parse_ints, parse_names

    if args.preset:
        if args.preset not in PRESETS:
            raise ValueError(f"unknown preset {args.preset!r}; expected one of {sorted(PRESETS)}")
        make, tune, x64 = PRESETS[args.preset]
        args.x64 = args.x64 or x64
        return make(), tune
    dims = parse_ints(args.dim, "dim")
    targets = parse_names(args.target or "neg-identity")
    target_matrix = None
    if args.target_file:
        from ._targets import load_target

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
    grid = Grid(inits=tuple(parse_names(args.init)), targets=tuple(targets), dims=tuple(dims),
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

    from . import __version__

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


def main(args) -> int:
    if args.out is not None and not args.out.strip():
        raise ValueError("--out must name a folder, got an empty string")
    grids, tune = grids_from_args(args)
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

    import jax

    from ._sweep._driver import check_target_fits
    from ._sweep._plan import check_fits, memory_budget

    if args.distributed:
        jax.distributed.initialize()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = np.dtype("float64" if args.x64 else "float32")
    for g in grids:
        check_engine(g, args.engine)
        check_target_fits(g, dtype)
        check_fits(g.dims, g.depths, dtype.itemsize, g.optimizer, memory_budget(jax.devices()))
    config = run_config(args, grids, tune)
    config_path = os.path.join(out, "config.json")
    writer = jax.process_index() == 0
    if not writer:
        return _run(args, grids, tune, out, config, config_path, writer=False)
    from ._store import OutputLock

    _store.prepare_folder(out)
    with OutputLock(out):
        if args.resume and os.path.exists(config_path):
            try:
                before = _store.read_json(config_path)
            except ValueError:
                raise ValueError(f"{config_path!r} is not readable JSON; it cannot be resumed"
                                 ) from None
            if before.get("identity") != _store._json_safe(_identity(config)):
                raise ValueError(f"{out!r} holds a different sweep than these options describe "
                                 "(grid, dtype or learning-rate tuning differ); resume it with "
                                 "the options it was started with")
        return _run(args, grids, tune, out, config, config_path, writer=True)


def _run(args, grids, tune, out, config, config_path, writer) -> int:
    from ._compilation import Timer, enable_persistent_cache

    config = {**config, "identity": _identity(config)}
    if writer:
        _store.write_json(config_path, {**config, "started": time.strftime("%FT%T%z")})
    cache_dir = enable_persistent_cache()
    timer = Timer()
    rows = []
    try:
        for i, grid in enumerate(grids):
            rows += sweep(grid, out, resume=args.resume or i > 0, chunk=args.chunk,
                          bucket_ratio=args.bucket_ratio, progress=not args.no_progress,
                          dtype="float64" if args.x64 else "float32", prune=tune,
                          engine=args.engine)
    except KeyboardInterrupt:
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
    print(f"{'init':<14}{'target':<14}{'dim':>4}{'depth':>7}  median iterations (lr)")
    for (init, target, dim, depth), rs in sorted(groups.items()):
        its = [r["iterations"] for r in rs if r["status"] == "converged"]
        med = f"{np.median(its):.0f}" if its else "-"
        lrs = sorted({r["lr"] for r in rs})
        lr_text = f"{lrs[0]:.3g}" if len(lrs) == 1 else f"{lrs[0]:.3g}..{lrs[-1]:.3g}"
        print(f"{init:<14}{target:<14}{dim:>4}{depth:>7}  {med} ({lr_text})")
    print(f"wrote {out}/results.csv, config.json, iterations_vs_depth.png")
