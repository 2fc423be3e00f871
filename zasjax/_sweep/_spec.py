"""`SweepSpec`: everything a sweep runs and how, declared once and checked on construction.

A sweep option is a field here (or of `Grid`, for an axis of the grid, or of `Processes`,
for how processes meet): the command line (`zasjax sweep`) is derived from these fields,
`sweep(spec, out)` passes the spec down unchanged, and a sweep folder's resume identity is
the canonical JSON of the fields that change a row (`identity`). Fields that change only
how the work is done (chunking, devices, batching, the cache) are recorded in config.json
but never stop a resume.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Literal

import numpy as np

from .._network import MATMULS, check_prefix
from .._options import option
from .._store import json_safe
from .._targets import load_target
from ._distributed import Processes, check_devices
from ._engines import BATCHINGS, ENGINES
from ._grid import AUTO_LRS, FILE_TARGET, Grid
from ._plan import check_fits, check_ratio, device_memory
from ._results import ARRAYS, FORMATS

DTYPES = ("float32", "float64")

#: Fields that change a row of the results: a folder resumes only under the same values.
IDENTITY = ("grids", "tune_lr", "dtype", "preset", "engine")


def _devices(text: str, name: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--{name} expects a number >= 1 or 'auto', got {text!r}")
    return n


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A sweep: its grids and how to run them. Checked on construction (ValueError for any
    value a run cannot use, before anything is traced or written).

    `grids`: one `Grid` or several (run one after another into the same folder).
    `tune_lr`: stop a rate once another rate of the same configuration converged in fewer
    iterations (status `pruned`; see `sweep`), and keep the fastest per configuration in
    results.csv. `dtype`: None follows JAX's default float when the sweep starts.
    """

    grids: tuple[Grid, ...] = option((Grid(),), cli=False)
    preset: str | None = option(None, "a named study (e.g. fig2-quick); replaces the grid "
                                      "options")
    tune_lr: bool = option(
        False, "try a log grid of learning rates (or the --lr list) in one batch and keep "
               "the fastest that converges", const=True)
    dtype: Literal["float32", "float64"] | None = option(
        None, "float64 (needed for eps=1e-10 at d=100)", flag="--x64", const="float64")
    engine: Literal["full", "modes"] = option(
        "full", "full: every layer; modes: the exact mode reduction of GD from ZAS, O(d) a "
                "step at any depth (zas init and plain gd only)")
    chunk: int = option(1000, "iterations per compiled chunk")
    bucket_ratio: float | None = option(
        None, "split each width into depth classes ceil(ratio^k), each compiled on its own "
              "(default: one class per width; 1 = one per depth)")
    devices: int | Literal["auto"] | None = option(
        None, "CPU only: N XLA devices in this process, the configurations split over them; "
              "auto: one per core from width 48 on (where that is faster), else 1 (default: "
              "JAX's devices)", parse=_devices, metavar="N|auto")
    processes: Processes = option(Processes(), cli=False)
    cache: bool = option(True, "JAX's persistent compilation cache "
                               "(also off with ZASJAX_CACHE=0)")
    progress: bool = option(False, "a progress line on stderr")
    max_batch: int | None = option(None, "at most this many configurations per program call "
                                         "(bounds memory; default: as many as fit)")
    results: Literal["auto", "csv", "parquet"] = option(
        "auto", "the results' format: csv (runs.csv, results.csv), parquet (runs.parquet/, "
                "results.parquet/: appended per slice), auto: csv up to a million "
                "configurations")
    save: tuple[str, ...] = option(
        (), "arrays to keep of every configuration, beside its row: end-to-end (the final "
            "end-to-end matrix), learning-times (the iteration at which each mode first "
            "reaches half its final value, to the --chunk); read back with "
            "load_sweep(DIR, arrays=True)",
        metavar="NAME,...")
    plan: bool = option(False, "print what the sweep would do (configurations, programs, "
                               "slices, memory, results' size, an estimated time) and stop",
                        const=True)
    # How the full engine batches (benchmarks and tests choose them; `sweep` documents them).
    matmul: str = option("auto", cli=False)
    prefix: str = option("sequential", cli=False)
    batching: str = option("auto", cli=False)

    def __post_init__(self):
        grids = (self.grids,) if isinstance(self.grids, Grid) else tuple(self.grids)
        object.__setattr__(self, "grids", grids)
        if self.dtype is not None:  # a dtype object or its name: stored by name
            try:
                object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
            except TypeError:
                pass  # reported by `check`
        self.check()

    def check(self) -> None:
        """ValueError for any value a sweep cannot use."""
        if not self.grids or not all(isinstance(g, Grid) for g in self.grids):
            raise ValueError(f"grids must be one or more zasjax Grids, got {self.grids!r}")
        if self.dtype not in (None, *DTYPES):
            raise ValueError(f"dtype must be one of {DTYPES} (or None: JAX's default), got "
                             f"{self.dtype!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of "
                             f"{sorted(ENGINES)}")
        if self.matmul != "auto" and self.matmul not in MATMULS:
            raise ValueError(f"unknown matmul {self.matmul!r}; expected 'auto' or one of "
                             f"{sorted(MATMULS)}")
        for g in self.grids:
            self.engine_for(g).check(g)  # the engine this sweep runs, matmul included
            if self.dtype is not None:
                check_target_fits(g, self.dtype)
        object.__setattr__(self, "save", tuple(self.save))
        for name in self.save:
            if name not in ARRAYS:
                raise ValueError(f"unknown array {name!r} to save; expected some of {ARRAYS}")
        if self.save and self.engine != "full":
            raise ValueError(f"save={list(self.save)} needs engine 'full' (the {self.engine} "
                             "engine keeps no layers)")
        if isinstance(self.chunk, bool) or not (isinstance(self.chunk, int) and self.chunk >= 1):
            raise ValueError(f"chunk must be an integer >= 1, got {self.chunk!r}")
        check_ratio(self.bucket_ratio)
        if self.results not in FORMATS:
            raise ValueError(f"results must be one of {FORMATS}, got {self.results!r}")
        check_devices(self.devices)
        if not isinstance(self.processes, Processes):
            raise ValueError(f"processes must be a Processes, got {self.processes!r}")
        check_prefix(self.prefix)
        if self.batching not in BATCHINGS:
            raise ValueError(f"unknown batching {self.batching!r}; expected one of "
                             f"{BATCHINGS}")
        if self.max_batch is not None and not (isinstance(self.max_batch, int)
                                               and self.max_batch >= 1):
            raise ValueError(f"max_batch must be an integer >= 1, got {self.max_batch!r}")

    def engine_for(self, grid: Grid):
        """The engine that runs `grid` in this sweep."""
        if self.engine == "full":
            return ENGINES["full"](self.matmul, self.prefix, self.batching, grid.objective)
        return ENGINES[self.engine]()

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(sorted({d for g in self.grids for d in g.dims}))

    def replace(self, **changes) -> SweepSpec:
        """This spec with `changes`, checked again."""
        return dataclasses.replace(self, **changes)

    def check_fits(self, devices) -> None:
        """ValueError if one configuration of a grid's deepest class would not fit a device
        of `devices`."""
        itemsize = np.dtype(self.dtype or "float32").itemsize
        for g in self.grids:
            check_fits(g.dims, g.depths, itemsize, g.optimizer, device_memory(devices)[0])

    def to_json(self) -> dict:
        """Every field as JSON values (the grids by their `identity`)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "grids":
                v = [g.identity() for g in v]
            elif dataclasses.is_dataclass(v):
                v = dataclasses.asdict(v)
            out[f.name] = json_safe(v)
        return out

    @classmethod
    def from_json(cls, config: dict, *, data=None, **changes) -> SweepSpec:
        """The spec a sweep folder's config.json recorded (`to_json`: its "spec" entry, or
        the whole file), with `changes` (spec fields) on top: `sweep(from_json(...), NEW)`
        replays the sweep. A grid whose objective read a data file needs its data again
        (`data`: a mapping of field names to arrays)."""
        config = config.get("spec", config)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise ValueError(f"config fields {unknown} are not SweepSpec fields; expected "
                             f"some of {sorted(fields)}")
        values = {k: v for k, v in config.items() if k not in ("grids", "processes")}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        grids = tuple(_grid_from_json(g, data) for g in config.get("grids", ()))
        if "processes" in config:
            values["processes"] = Processes(**config["processes"])
        return cls(**{"grids": grids, **values, **changes})

    def identity(self) -> dict:
        """What a resumed folder must agree on: the fields that change a row."""
        full = self.to_json()
        return {k: full[k] for k in IDENTITY}

    def canonical(self) -> str:
        """The identity as canonical JSON text (sorted keys, no spaces)."""
        return json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))


def _grid_from_json(g: dict, data) -> Grid:
    g = dict(g)
    digest = g.pop("data", None)
    if digest is not None and data is None:
        raise ValueError("this sweep's objective read a data file; give its data again "
                         f"(--data-file; fields {sorted(digest)})")
    lrs = g.get("lrs")
    if isinstance(lrs, list) and lrs and isinstance(lrs[0], list) and len(lrs[0]) == 2 \
            and isinstance(lrs[0][1], list):  # per depth (or per (seed, depth)): pairs
        g["lrs"] = {tuple(k) if isinstance(k, list) else k: v for k, v in lrs}
    if g.get("target_matrix") is not None:
        g["target_matrix"] = np.asarray(g["target_matrix"])
    g["hyper"] = tuple(tuple(h) for h in g.get("hyper", ()))
    grid = Grid(**g, **({"data": data} if digest is not None else {}))
    if digest is not None and grid.identity().get("data") != digest:
        raise ValueError("the data given differ from the data this sweep ran on (their "
                         "sha256 digests differ)")
    return grid


def check_target_fits(grid: Grid, dtype) -> None:
    """ValueError if the user's target matrix does not fit the run's dtype."""
    if grid.target_matrix is None:
        return
    dtype = np.dtype(dtype)
    m = np.asarray(grid.target_matrix, np.float64)
    big = float(np.abs(m).max(initial=0.0))
    limit = float(np.finfo(dtype).max) ** 0.5  # R = ½‖·‖² must stay finite
    if not big < limit:
        raise ValueError(f"target matrix entries reach {big:.3g}, too large for {dtype.name} "
                         f"(the loss overflows above ~{limit:.3g}); rescale it or use --x64")


def from_options(grid_options: dict, options: dict,
                 processes: Processes = Processes()) -> SweepSpec:
    """The spec a command line asks for: the grid's options (fields of `Grid`) and the
    sweep's (fields of `SweepSpec`). Without `--lr`, a tuned sweep tries `depth_lrs(L)` at
    each depth L; a `--target-file` is the target 'file'."""
    grid_options = load_grid_options(grid_options)
    if "lrs" not in grid_options and options.get("tune_lr"):
        grid_options["lrs"] = AUTO_LRS
    return SweepSpec(grids=(Grid(**grid_options),), processes=processes, **options)


def load_grid_options(grid_options: dict) -> dict:
    """Grid options of a command line with the files they name read: `--target-file` (the
    target 'file'), `--data-file` (a .npz of the objective's fields)."""
    grid_options = dict(grid_options)
    if "target_matrix" in grid_options:
        if "targets" in grid_options:
            raise ValueError("give --target or --target-file, not both")
        dims = grid_options.get("dims", (1,))
        shape = (dims[0], dims[0]) if len(dims) == 1 else None  # the file's path, read here
        grid_options["target_matrix"] = load_target(grid_options["target_matrix"], shape)
        grid_options["targets"] = (FILE_TARGET,)
    if "data" in grid_options:
        path = grid_options["data"]
        try:
            with np.load(path, allow_pickle=False) as f:
                grid_options["data"] = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"--data-file {path}: expected a .npz file of arrays ({e})"
                             ) from None
        grid_options.setdefault("targets", (FILE_TARGET,))
    return grid_options


def as_spec(spec: SweepSpec | Grid | Sequence[Grid], **changes) -> SweepSpec:
    """A `SweepSpec` from a spec, a `Grid` or several, with `changes` (spec fields)."""
    if isinstance(spec, SweepSpec):
        return spec.replace(**changes) if changes else spec
    if isinstance(spec, Grid) or (isinstance(spec, Sequence) and spec
                                  and all(isinstance(g, Grid) for g in spec)):
        return SweepSpec(grids=spec, **changes)
    raise ValueError(f"expected a zasjax SweepSpec or Grid, got {type(spec).__name__}")
