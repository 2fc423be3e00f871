"""`zasjax sweep`: options → `SweepSpec` → `sweep` → results.csv, config.json, a plot.

The options are the fields of `Grid`, `SweepSpec` and `Processes` (`zasjax._options`), so
an option exists exactly when a field does and is checked by the same code. Everything is
checked in `prepare`, before the output folder is touched, so bad input writes nothing;
`execute` runs `sweep`, which locks the folder and compares a resumed sweep's identity.
Run `zasjax sweep -h` for the options.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass

import numpy as np

from .. import _plots, _store
from .._errors import InputError

HELP = "run a grid of GD configurations"
DESCRIPTION = ("Run init × target × dim × depth × seed × lr, write DIR/results.csv, "
               "DIR/config.json and a plot.")

#: Where the command line's defaults differ from the library's (whose dtype follows JAX's
#: default float: the command's is float32 unless --x64, whatever the process's JAX says).
CLI_DEFAULTS = {"progress": True, "dtype": "float32"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `zasjax sweep`: the fields of `Grid`, `SweepSpec` and `Processes`."""
    from .._options import add_options, show
    from .._sweep import Grid, SweepSpec
    from .._sweep._distributed import Processes

    def spec_default(f):
        value = CLI_DEFAULTS.get(f.name, f.default)
        return "" if value is None or f.metadata.get("const") is not None else \
            f"default {show(value)}"

    add_options(p, Grid)
    add_options(p, SweepSpec, spec_default)
    p.add_argument("--out", help="output folder (default runs/<preset or 'sweep'>)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out")
    add_options(p.add_argument_group("processes"), Processes)


def _fig2_quick(spec):
    # Wu-Wang-Ma's Figure 2 at its quick size: the study's own grids (reproduce/fig2.py).
    from ..reproduce import fig2

    cfg = fig2.Config.quick()
    return spec.replace(grids=tuple(fig2.grids(cfg, top=cfg.lr_top)), tune_lr=True,
                        dtype="float64")


def _fig2_quick_dims() -> tuple[int, ...]:
    from ..reproduce import fig2

    return tuple(sorted({fig2.CASES[c][1] for c in fig2.Config.quick().cases}))


#: name -> (spec with the preset's grids, its widths). The grids may compute with JAX (fig2's
#: η caps draw Φ), so they are built after the devices start; the widths, needed before, not.
PRESETS = {"fig2-quick": (_fig2_quick, _fig2_quick_dims)}


@dataclass
class Job:
    """A checked sweep, ready to run (`launch`: (workers, devices each) for `--processes`)."""

    spec: object
    out: str
    resume: bool
    argv: list
    launch: tuple | None = None


def prepare(args) -> Job:
    """Every check that needs no lock and writes nothing (ValueError: a usage error)."""
    from .._options import cli_fields, flag, given
    from .._sweep import Grid, SweepSpec
    from .._sweep._distributed import Processes, device_count, start_devices
    from .._sweep._spec import from_options

    grid_options = given(args, [f.name for f in cli_fields(Grid)])
    options = {**CLI_DEFAULTS, **given(args, [f.name for f in cli_fields(SweepSpec)])}
    processes = Processes(**given(args, [f.name for f in cli_fields(Processes)]))
    preset = options.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        if grid_options:
            flags = ", ".join(sorted(flag(f) for f in cli_fields(Grid) if f.name in grid_options))
            raise ValueError(f"--preset {preset} gives the grids itself; drop {flags}")
        options["dtype"] = "float64"  # a preset's x64 is set before its grids are built
        dims = PRESETS[preset][1]()
        spec = SweepSpec(processes=processes, **options)  # the preset's grids come later
    else:
        spec = from_options(grid_options, options, processes)
        dims = spec.dims
    out = os.path.join("runs", preset or "sweep") if args.out is None else args.out
    _store.check_folder(out)  # an empty --out is refused here
    if os.path.exists(os.path.join(out, "runs.csv")) and not args.resume:
        raise ValueError(f"{out!r} already holds a sweep; pass --resume to continue it, "
                         "or choose another --out")
    argv = list(getattr(args, "argv", sys.argv[1:]))
    if processes.mode == "launch":  # the workers start JAX; this process only waits for them
        per = device_count(spec.devices, dims, processes.processes)
        return Job(spec, out, args.resume, argv, launch=(processes.processes, per))
    # Process-wide settings, the CLI's alone, before any JAX computation: the CPU device
    # count, the distributed runtime, x64 (building a preset's grids computes).
    start_devices(device_count(spec.devices, dims))
    processes.join()

    import jax

    if isinstance(spec.devices, int) and jax.default_backend() != "cpu":
        raise ValueError(f"--devices sets the number of CPU devices; this process runs on "
                         f"{jax.default_backend()}, where every visible device is used "
                         "(choose them with CUDA_VISIBLE_DEVICES)")
    if spec.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    if spec.cache:
        from .._compilation import enable_persistent_cache

        enable_persistent_cache()  # a preset's grids compile small programs too
    if preset is not None:
        spec = PRESETS[preset][0](spec)
    # The devices this process started are JAX's devices now (with several processes, N per
    # process, not the first N of the job's): the sweep takes them all.
    spec = spec.replace(devices=None)
    spec.check_fits(jax.devices())
    return Job(spec, out, args.resume, argv)


def execute(job: Job) -> int:
    """Run the sweep (its folder locked, a resumed sweep's identity checked), write the
    table, the plot and a summary.

    With several processes, process 0's refusals reach the others (they exit 2 quietly), and
    a process whose partner vanished stops with one line (`PEER_LOST`) instead of waiting.
    """
    from .._sweep._distributed import (
        PEER_LOST,
        WriterRefused,
        launch,
        launched,
        peer_failure,
    )

    if job.launch:
        n, per = job.launch
        return launch(job.argv, n, per, job.out)
    import jax

    if jax.process_count() == 1:
        return _run(job)
    try:
        code = _run(job)
    except WriterRefused:
        return 2  # process 0 said why, in one line
    except (jax.errors.JaxRuntimeError, ValueError) as e:
        if isinstance(e, InputError) or not peer_failure(e):
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


def _run(job: Job) -> int:
    import jax

    from .._sweep import best_per_config, sweep

    spec, out = job.spec, job.out
    writer = jax.process_index() == 0
    if writer and spec.progress:
        _plots.prefetch()
    try:
        rows = sweep(spec, out, resume=job.resume,
                     meta={"command": shlex.join(["zasjax", *job.argv])})
    except KeyboardInterrupt:
        if not writer:
            return 130
        sys.stderr.write(f"\nzasjax: interrupted; finished runs are in {out}/runs.csv and runs "
                         f"in flight are checkpointed: continue with the same command and "
                         f"--resume\n")
        return 130
    if writer:
        table = best_per_config(rows) if spec.tune_lr else rows
        # the figure `zasjax plot` draws, read back from the folder's results
        _plots.plot_folders([out], os.path.join(out, "iterations_vs_depth.png"))
        seconds = _store.read_json(os.path.join(out, "config.json"))["seconds"]
        _print_summary(table, out, seconds)
    return 0


def _print_summary(table: list[dict], out: str, elapsed: float) -> None:
    counts = {s: sum(r["status"] == s for r in table) for s in ("converged", "diverged",
                                                                 "max-iters")}
    print(f"{len(table)} configurations in {elapsed:.1f} s: " +
          ", ".join(f"{n} {s}" for s, n in counts.items()))
    dmf = any(r.get("observations") is not None for r in table)
    groups: dict[tuple, list] = {}
    for r in table:
        key = (r["init"], r["target"], r["dim"], r["depth"])
        groups.setdefault(key + ((r["observations"],) if dmf else ()), []).append(r)
    wi = max(len("init"), *(len(r["init"]) for r in table)) + 2
    wt = max(len("target"), *(len(r["target"]) for r in table)) + 2
    print(f"{'init':<{wi}}{'target':<{wt}}{'dim':>4}{'depth':>9}"
          + (f"{'observed':>10}  median error, rank" if dmf else "")
          + "  median iterations (lr)")
    for key, rs in sorted(groups.items()):
        init, target, dim, depth = key[:4]
        its = [r["iterations"] for r in rs if r["status"] == "converged"]
        med = f"{np.median(its):.0f}" if its else "-"
        lrs = sorted({r["lr"] for r in rs})
        lr_text = f"{lrs[0]:.3g}" if len(lrs) == 1 else f"{lrs[0]:.3g}..{lrs[-1]:.3g}"
        extra = ""
        if dmf:
            err = np.median([r["reconstruction_error"] for r in rs])
            rank = np.median([r["effective_rank"] for r in rs])
            extra = f"{key[4]:>10}  {err:.3g}, {rank:.3g}"
        print(f"{init:<{wi}}{target:<{wt}}{dim:>4}{depth:>9}{extra}  {med} ({lr_text})")
    print(f"wrote {out}/results.csv, config.json, iterations_vs_depth.png")
