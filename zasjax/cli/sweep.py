"""`zasjax sweep`: options → `SweepSpec` → `sweep` → results.csv, config.json, a plot.

The options are the fields of `Grid`, `SweepSpec`, `SweepCommand` (the folder, a replay) and
`Processes` (`zasjax._options`), so an option exists exactly when a field does and is checked
by the same code. Everything is checked in `prepare`, before the output folder is touched, so
bad input writes nothing; `execute` runs `sweep`, which locks the folder and compares a resumed
sweep's identity. Run `zasjax sweep -h` for the options.
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
from .._options import option

HELP = "run a grid of GD configurations"
DESCRIPTION = ("Run init × target × dim × depth × seed × lr, write DIR/results.csv, "
               "DIR/config.json and a plot.")

#: Where the command line's defaults differ from the library's (whose dtype follows JAX's
#: default float: the command's is float32 unless --x64, whatever the process's JAX says).
CLI_DEFAULTS = {"progress": True, "dtype": "float32"}


@dataclass(frozen=True)
class SweepCommand:
    """The command's options beside the spec's: where the sweep goes (`out`, `resume`: the
    arguments of `zasjax.sweep`) and the recorded sweep it replays (`config`)."""

    out: str | None = option(None, "output folder (default runs/<preset or 'sweep'>)",
                             metavar="OUT")
    resume: bool = option(False, "continue the sweep in --out", const=True)
    config: str | None = option(None, "replay the sweep a folder's config.json records "
                                      "(options given beside it override it)",
                                metavar="DIR/config.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `zasjax sweep`: the fields of `Grid`, `SweepSpec`, `SweepCommand` and
    `Processes`."""
    from .._options import add_options, show
    from .._sweep import Grid, SweepSpec
    from .._sweep._distributed import Processes

    def spec_default(f):
        value = CLI_DEFAULTS.get(f.name, f.default)
        return "" if value is None or f.metadata.get("const") is not None else \
            f"default {show(value)}"

    add_options(p, Grid)
    add_options(p, SweepSpec, spec_default)
    add_options(p, SweepCommand)
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


def _replayed(path: str, grid_options: dict, options: dict, processes):
    """The spec `path` (a sweep's config.json) records, with the options given beside it on
    top; how it ran (devices, processes) is this command's."""
    import dataclasses

    from .._store import read_json
    from .._sweep import SweepSpec
    from .._sweep._spec import load_grid_options

    try:
        config = read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--config {path}: not a readable config.json ({e})") from None
    grid_options = load_grid_options(grid_options)
    data = grid_options.pop("data", None)
    spec = SweepSpec.from_json(config, data=data, devices=None, processes=processes,
                               **{"progress": True, **options})
    if grid_options:
        spec = spec.replace(grids=tuple(dataclasses.replace(g, **grid_options)
                                        for g in spec.grids))
    return spec


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

    grid_options = given(args, Grid)
    options = {**CLI_DEFAULTS, **given(args, SweepSpec)}
    processes = Processes(**given(args, Processes))
    command = SweepCommand(**given(args, SweepCommand))
    preset = options.get("preset")
    if command.config:
        spec = _replayed(command.config, grid_options, given(args, SweepSpec), processes)
        dims, preset = spec.dims, None
    elif preset is not None:
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
    out = os.path.join("runs", preset or "sweep") if command.out is None else command.out
    _store.check_folder(out)  # an empty --out is refused here
    held = any(os.path.exists(os.path.join(out, f)) for f in ("runs.csv", "runs.parquet"))
    if held and not command.resume and not spec.plan:
        raise ValueError(f"{out!r} already holds a sweep; pass --resume to continue it, "
                         "or choose another --out")
    if spec.plan and processes.mode == "launch":
        raise ValueError("--plan runs in one process; drop --processes")
    argv = list(getattr(args, "argv", sys.argv[1:]))
    if processes.mode == "launch":  # the workers start JAX; this process only waits for them
        per = device_count(spec.devices, dims, processes.processes)
        return Job(spec, out, command.resume, argv, launch=(processes.processes, per))
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
    return Job(spec, out, command.resume, argv)


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
    from .._sweep._results import parquet_summaries, summarise

    spec, out = job.spec, job.out
    if spec.plan:
        from .._sweep import plan_sweep

        print(plan_sweep(spec, out))
        return 0
    writer = jax.process_index() == 0
    if writer and spec.progress:
        _plots.prefetch()
    try:
        rows = sweep(spec, out, resume=job.resume,
                     meta={"command": shlex.join(["zasjax", *job.argv])})
    except KeyboardInterrupt:
        if not writer:
            return 130
        sys.stderr.write(f"\nzasjax: interrupted; finished runs are in {_runs_file(out)} "
                         "and runs in flight are checkpointed: continue with the same command "
                         "and --resume\n")
        return 130
    if writer:
        figure = os.path.join(out, "iterations_vs_depth.png")
        if rows is None:  # Parquet: summarised a block at a time, never loaded whole
            summaries = parquet_summaries(out)
            _plots.draw(summary_lines(summaries), figure)
        else:
            summaries = summarise(best_per_config(rows) if spec.tune_lr else rows)
            # the figure `zasjax plot` draws, read back from the folder's results
            _plots.plot_folders([out], figure)
        seconds = _store.read_json(os.path.join(out, "config.json"))["seconds"]
        _print_summary(summaries, out, seconds)
    return 0


def _runs_file(out: str) -> str:
    parquet = os.path.join(out, "runs.parquet")
    return parquet + "/" if os.path.isdir(parquet) else os.path.join(out, "runs.csv")


def summary_lines(summaries: list[dict]) -> list:
    """The figure's lines (`_plots.Line`) from per-depth summaries: one per init, target,
    width (and observation count), the converged iterations' quartiles at each depth."""
    lines: dict[tuple, list[dict]] = {}
    for s in summaries:
        lines.setdefault((s["init"], s["target"], s["dim"], s["observations"]), []).append(s)
    out = []
    for (init, target, dim, n), points in sorted(lines.items(), key=str):
        points.sort(key=lambda s: s["depth"])
        drawn = [s for s in points if s["converged"]]
        x = np.asarray([s["depth"] for s in drawn], float)
        med = np.asarray([s["median"] for s in drawn])
        left: dict[str, int] = {}
        for s in points:
            for status in ("diverged", "max-iters", "pruned"):
                if s[status]:
                    left[status] = left.get(status, 0) + s[status]
        key = dict(init=init, target=target, dim=dim,
                   **({"observations": n} if n is not None else {}))
        out.append(_plots.Line(key, _plots.label(key), x, med,
                               np.asarray([s["q25"] for s in drawn]),
                               np.asarray([s["q75"] for s in drawn]),
                               np.asarray([s["converged"] for s in drawn]),
                               _plots.local_exponent(x, med), left))
    return out


def _print_summary(summaries: list[dict], out: str, elapsed: float, most: int = 60) -> None:
    total = sum(s["rows"] for s in summaries)
    counts = {k: sum(s[k] for s in summaries) for k in ("converged", "diverged", "max-iters")}
    print(f"{total:,} configurations in {elapsed:.1f} s: " +
          ", ".join(f"{n:,} {k}" for k, n in counts.items()))
    dmf = any(s["observations"] is not None for s in summaries)
    wi = max(len("init"), *(len(s["init"]) for s in summaries)) + 2
    wt = max(len("target"), *(len(s["target"]) for s in summaries)) + 2
    print(f"{'init':<{wi}}{'target':<{wt}}{'dim':>4}{'depth':>9}"
          + (f"{'observed':>10}  median error, rank" if dmf else "")
          + "  median iterations (lr)")
    order = sorted(summaries, key=lambda s: (s["init"], s["target"], s["dim"], s["depth"],
                                             s["observations"] or 0))
    for i, s in enumerate(order):
        if i == most // 2 and len(order) > most:
            print(f"... {len(order) - most:,} more (all in {out})")
        if most // 2 <= i < len(order) - most // 2 and len(order) > most:
            continue
        med = f"{s['median']:.0f}" if s["converged"] else "-"
        lr = f"{s['lr_min']:.3g}" if s["lr_min"] == s["lr_max"] else \
            f"{s['lr_min']:.3g}..{s['lr_max']:.3g}"
        extra = ""
        if dmf:  # an objective without these measures shows "-"
            shown = [f"{s[k]:.3g}" if s.get(k) is not None else "-"
                     for k in ("reconstruction_error", "effective_rank")]
            extra = f"{s['observations'] or '-':>10}  {', '.join(shown)}"
        print(f"{s['init']:<{wi}}{s['target']:<{wt}}{s['dim']:>4}{s['depth']:>9}{extra}  "
              f"{med} ({lr})")
