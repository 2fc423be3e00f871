"""The host loop of a sweep: plan slices, run each a chunk at a time, write what finishes.

After every chunk, finished rows are appended to `runs.csv` and the configurations still
running are checkpointed (see `_inflight`), both atomically; `resume=True` recomputes nothing
that finished and continues the rest from their checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .. import _plots, _store
from .._compilation import Timer, persistent_cache
from .._errors import InputError
from .._run import PRUNED, RUNNING, STATUS_NAMES
from .._schema import KEY, as_row, column, columns, config_key
from . import _histories, _inflight
from ._distributed import is_writer, make_mesh, on_writer, put, to_host
from ._engines import FullEngine, ModesEngine
from ._grid import Grid
from ._plan import Slice, memory_budget, parts
from ._results import (
    CsvSink,
    ParquetSink,
    choose_format,
    existing_format,
    read_runs,  # noqa: F401 (its home before `_results`)
    rows_bytes,
    save_arrays,
    writing,
)
from ._spec import SweepSpec, as_spec
from ._tuning import best_per_config, tuning_group


class _Progress:
    """A progress line on stderr: configurations done of the grid, their rate, and the time
    left of the slice at hand (at most: if none of it converges early) and of the sweep."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.total, self.done, self.enabled = total, done, enabled
        self.start = self.shown = time.perf_counter()
        self.first = done
        self.cfg_steps = 0

    def note(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r{text}" + " " * 20)
            sys.stderr.flush()

    def update(self, newly_done: int, cfg_steps: int, label: str,
               slice_left: float | None = None) -> None:
        self.done += newly_done
        self.cfg_steps += cfg_steps
        now = time.perf_counter()
        if self.enabled and (now - self.shown > 0.5 or self.done == self.total):
            self.shown = now
            elapsed = max(now - self.start, 1e-9)
            rate = (self.done - self.first) / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else None
            sys.stderr.write(f"\r{label}: {self.done:,}/{self.total:,} configs done, "
                             f"{rate:,.1f}/s ({self.cfg_steps / elapsed:,.0f} "
                             f"config-iterations/s), slice ETA <= {_duration(slice_left)}, "
                             f"sweep ETA {_duration(eta)}   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


@dataclass
class _Context:
    """What every slice of one grid shares."""

    grid: Grid
    engine: FullEngine | ModesEngine
    dtype: np.dtype
    mesh: object
    chunk: int
    prune: bool
    run_id: str
    bar: _Progress
    sink: CsvSink | ParquetSink | None   # None: this process does not write
    inflight: str | None
    checkpoints: bool                 # the same on every process: they gather states together
    saved: dict = field(default_factory=dict)   # process 0's checkpoints (empty elsewhere)
    has_saved: bool = False           # whether process 0 has any (known to every process)
    keep_all: bool = True             # CSV: every row stays in `table`; Parquet: in flight
    table: dict = field(default_factory=dict)   # position -> row
    best: dict = field(default_factory=dict)    # fewest iterations per tuning group, lately
    compiled: set = field(default_factory=set)
    columns: tuple = ()               # the rows' columns (`sweep_columns`)
    arrays: str | None = None         # the folder of saved arrays (`save`), if any
    save: tuple = ()                  # the arrays to save per configuration
    histories: dict = field(default_factory=dict)  # restored learning-time records


def run_identity(grid: Grid, dtype, engine) -> str:
    """A digest of everything that changes a result: checkpoints carry it."""
    text = json.dumps([grid.identity(), str(dtype), repr(engine)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweep(spec: SweepSpec | Grid, out: str | None = None, *, resume: bool = False,
          meta: dict | None = None, **changes) -> list[dict]:
    """Run every configuration of `spec` (a `SweepSpec`, or a `Grid` with the spec's
    fields as keywords: `sweep(grid, chunk=100)`); one row dict per configuration
    (`COLUMNS`), every grid's in order.

    With `out`, the folder is locked while the sweep writes; `config.json` records the spec
    (its `identity` is what a resume must agree on), the versions, devices and timing
    (`meta` adds keys, e.g. the command line); finished rows are appended to `runs.csv`
    after every chunk and the configurations in flight are checkpointed in `inflight/`;
    `results.csv` is the table at the end (with `tune_lr`, the fastest rate per
    configuration). `resume=True` continues such a folder, recomputing nothing that
    finished. Diverging configurations are rows with status `diverged`, never exceptions.

    Depths share compiled programs: a configuration runs in the capacity class
    ceil(ratio^k) ≥ its depth (`bucket_ratio`; default one class per width, 1 = one per
    depth), padded with identity layers that never train. `cache=True` uses JAX's persistent
    compilation cache in zasjax's folder for the sweep and puts every JAX setting back
    afterwards (a cache the user configured is used as it is; see `zasjax._compilation`).

    `tune_lr=True`: a configuration still running after more iterations than another
    learning rate of the same (init, target, dim, depth, seed) needed to converge cannot be
    the fastest, so it stops with status `pruned`. The best rate per configuration
    (`best_per_config`) is unchanged; the sweep ends much sooner.

    `batching` says how the configurations of one device share a program when the batch is
    not last (`matmul="dot"`): `"vmap"` (batched products), `"loop"` (one configuration
    after another, `lax.map`) or `"auto"` (loop on CPU from width `LOOP_MIN_DIM`, else vmap).

    `engine="modes"` runs GD from ZAS as its exact mode reduction (`zasjax._modes`): O(d) a
    step at any depth, the same rows as the full engine; it refuses any configuration it
    cannot represent exactly (another init, an optax optimiser).
    """
    spec = as_spec(spec, **changes)
    default = jnp.dtype(jax.dtypes.canonicalize_dtype(float)).name
    if spec.dtype == "float64" and default != "float64":
        raise ValueError("dtype float64 needs JAX's 64-bit mode: set jax_enable_x64 first "
                         "(jax.config.update; the command's --x64 does)")
    spec = spec.replace(dtype=spec.dtype or default)
    devices = jax.devices() if spec.devices in (None, "auto") else jax.devices()[:spec.devices]
    if isinstance(spec.devices, int) and len(devices) < spec.devices:
        raise ValueError(f"devices={spec.devices}, but JAX has {len(jax.devices())}")
    mesh = make_mesh(devices)
    spec.check_fits(list(mesh.devices.flat))
    fmt = results_format(spec, out, resume)
    with contextlib.ExitStack() as stack:
        cache_dir = stack.enter_context(persistent_cache()) if spec.cache else None
        timer = Timer()
        config = {**(meta or {}), **_record(spec), "identity": spec.identity(),
                  "results": fmt}
        writer = out is not None and is_writer()
        if out is not None:
            on_writer(lambda: _open_folder(spec, out, resume, stack) if writer else None)
        if writer:
            with writing(os.path.join(out, "config.json"), 1 << 16):
                _store.write_json(os.path.join(out, "config.json"),
                                  {**config, "started": time.strftime("%FT%T%z")})
            if spec.progress:
                _plots.prefetch()
        rows = []
        for i, grid in enumerate(spec.grids):
            rows += _sweep_grid(spec, grid, mesh, out, resume or i > 0, fmt, i)
        if writer:
            with writing(os.path.join(out, "results.csv"), rows_bytes(len(rows), fmt) // 2):
                if fmt == "csv":
                    table = best_per_config(rows) if spec.tune_lr else rows
                    _store.write_csv(os.path.join(out, "results.csv"),
                                     [{**r, "tuned": spec.tune_lr} for r in table],
                                     sweep_columns(spec))
                _store.write_json(os.path.join(out, "config.json"), {
                    **config, "seconds": timer.record()["wall_s"],
                    "timing": {**timer.record(), "cache_dir": cache_dir},
                    "finished": time.strftime("%FT%T%z")})
    return rows if fmt == "csv" else None


def sweep_columns(spec: SweepSpec) -> tuple[str, ...]:
    """The columns of a sweep's rows: the declared ones and its objectives' measures."""
    return columns(m for g in spec.grids for m in g.objective_class.measures)


def results_format(spec: SweepSpec, out: str | None, resume: bool) -> str:
    """csv or parquet: what the folder holds already, else what `spec.results` asks, else
    by the grid's size (`CSV_MAX_ROWS`). ValueError for a combination that cannot be."""
    size = sum(g.index.size for g in spec.grids)
    fmt = choose_format(size, spec.results)
    held = existing_format(out) if out and resume else None
    if held and spec.results not in ("auto", held):
        raise InputError(f"{out!r} holds {held} results; resume it with results={held!r}")
    fmt = held or fmt
    if fmt == "parquet":
        if out is None:
            raise ValueError(f"a sweep of {size:,} configurations writes its rows to a folder "
                             "(Parquet; more than the million kept in memory): give out=")
        if len(spec.grids) > 1:
            raise ValueError("Parquet results take one grid per folder; this spec has "
                             f"{len(spec.grids)}")
    return fmt


def _record(spec: SweepSpec) -> dict:
    """What config.json says of a sweep: its spec, and where and with what it ran."""
    import jaxlib

    from .._version import __version__

    full = spec.to_json()
    return {"preset": spec.preset, "tune_lr": spec.tune_lr, "grids": full["grids"],
            "engine": spec.engine, "dtype": spec.dtype, "spec": full,
            "versions": {"zasjax": __version__, "jax": jax.__version__,
                         "jaxlib": jaxlib.__version__, "python": platform.python_version()},
            "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
            "device_count": jax.device_count(), "process_count": jax.process_count()}


def _open_folder(spec: SweepSpec, out: str, resume: bool, stack: contextlib.ExitStack) -> None:
    # Process 0: lock the folder for the whole sweep, and refuse another sweep's folder.
    _store.prepare_folder(out)
    stack.enter_context(_store.OutputLock(out))
    config_path = os.path.join(out, "config.json")
    if os.path.exists(os.path.join(out, "runs.csv")) and not resume:
        raise InputError(f"{out!r} already holds a sweep (runs.csv); pass resume=True "
                         "(--resume) to continue it, or choose another output folder")
    if resume and os.path.exists(config_path):
        try:
            before = _store.read_json(config_path)
        except ValueError:
            raise InputError(f"{config_path!r} is not readable JSON; it cannot be resumed"
                             ) from None
        if before.get("identity") != spec.identity():
            raise InputError(f"{out!r} holds a different sweep than these options describe "
                             "(grid, dtype, engine or learning-rate tuning differ); resume it "
                             "with the options it was started with")


def _sweep_grid(spec: SweepSpec, grid: Grid, mesh, out: str | None, resume: bool,
                fmt: str, number: int = 0) -> list[dict]:
    """One grid of the spec, into `out`, a slice at a time: the host holds the rows of the
    slice at hand (and, for CSV results, every row, which the sweep returns)."""
    eng = spec.engine_for(grid)
    dtype = jnp.dtype(spec.dtype)
    index = grid.index
    inflight = os.path.join(out, "inflight") if out else None
    run_id = run_identity(grid, dtype, eng)
    write = out is not None and is_writer()
    saved: dict = {}  # checkpoints stay with process 0, which restores them

    def read_folder():
        # Process 0 alone reads the folder; every process gets what it needs to run the same
        # slices in the same order: the rows already done, the memory budget, and whether
        # checkpoints exist.
        cols = sweep_columns(spec)
        if fmt == "parquet":
            sink = ParquetSink(out, index, resume, spec.tune_lr, cols) if write else None
        else:
            sink = CsvSink(out if write else None, index, resume, cols)
        if out and resume and os.path.isdir(inflight):
            saved.update(_inflight.load_all(inflight, run_id))
        done = sink.done() if sink else 0
        return sink, sink.resumed() if sink else {}, done, bool(saved), \
            memory_budget(list(mesh.devices.flat))

    sink, table, done, has_saved, budget = on_writer(read_folder)
    if not is_writer():
        sink = None
    plan = eng.plan(grid, spec.bucket_ratio, mesh.devices.size, budget, dtype, spec.max_batch)
    if fmt == "parquet" and spec.tune_lr:
        check_groups_fit(index, plan)
    ctx = _Context(grid, eng, dtype, mesh, spec.chunk, spec.tune_lr, run_id,
                   _Progress(index.size, done, spec.progress and is_writer()),
                   sink, inflight if write else None, out is not None, saved=saved,
                   has_saved=has_saved, keep_all=fmt == "csv", table=table,
                   columns=sweep_columns(spec), save=spec.save,
                   arrays=os.path.join(out, "arrays", f"grid-{number}") if write and spec.save
                   else None,
                   histories=_histories.split_saved(saved) if "learning-times" in spec.save
                   else {})
    n = 0
    for cls in plan:
        for part in parts(index, cls):
            _run_part(ctx, part, f"{cls.dim}-{cls.capacity}-{n}-{os.getpid()}")
            n += 1
    ctx.bar.close()
    if write and os.path.isdir(inflight):
        _inflight.remove_run(inflight, run_id)
    if fmt == "parquet":
        return []
    return [as_row(ctx.table[p], ctx.columns) for p in range(index.size)]


def check_groups_fit(index, plan) -> None:
    """ValueError if some configuration's learning rates outnumber its class's batch (its
    best rate could then not be chosen within one slice, as Parquet results are)."""
    for cls in plan:
        for L in cls.depths:
            if index.largest_group(L) > cls.batch:
                raise ValueError(
                    f"depth {index.grid.depths[L]} tunes {index.largest_group(L)} learning "
                    f"rates, more than the {cls.batch} configurations a slice of width "
                    f"{cls.dim} holds; raise max_batch or use results='csv'")


def _run_part(ctx: _Context, part, name: str) -> None:
    """One planned slice: the positions no results file holds yet, less those done, run."""
    needed = on_writer(lambda: [r for a, n in part.pieces for r in ctx.sink.uncovered(a, n)]
                       if ctx.sink else [(a, n) for a, n in part.pieces])
    positions = [p for a, n in needed for p in range(a, a + n)]
    pending = [p for p in positions if p not in ctx.table]
    if ctx.prune:  # what the slice's groups (and a group split from the last one) know
        best = {k: v for k, v in ctx.best.items()}
        _note_fastest(best, (ctx.table[p] for p in positions if p in ctx.table))
        ctx.best = best
    if pending:
        rows = ctx.grid.index.rows(pending)
        sl = Slice(part.dim, part.capacity, part.batch, max(r["depth"] for r in rows),
                   tuple(rows))
        _run_slice(ctx, sl, name, pending)
    if not ctx.keep_all:  # Parquet: results of the slice written, its rows forgotten
        if ctx.sink:
            ctx.sink.slice_done(needed, ctx.table, best_per_config if ctx.prune else list)
        for p in positions:
            ctx.table.pop(p, None)


def _note_fastest(best: dict, rows) -> None:
    for r in rows:
        if r["status"] == "converged":
            g, n = tuning_group(r), int(r["iterations"])
            best[g] = min(best.get(g, n), n)


def _result_row(row: dict, host: dict, i: int, measures) -> dict:
    iters = int(host["iterations"][i])
    measured = {m: float(host[m][i]) if m in host and np.isfinite(host[m][i]) else None
                for m in measures}
    return {**row, "iterations": iters if iters >= 0 else None,
            "final_loss": float(host["loss"][i]), "status": STATUS_NAMES[int(host["status"][i])],
            "steps": int(host["step"][i]), **measured}


def _stop(state, stop: np.ndarray, n_padded: int, mesh):
    flags = np.zeros(n_padded, bool)
    flags[: len(stop)] = stop
    return state._replace(status=_mark_pruned(put(flags, mesh, 0), state.status))


@jax.jit
def _mark_pruned(stop, status):
    return jnp.where(stop, PRUNED, status)



def _save_running(ctx: _Context, checkpoint, rows, padded, state, dim,
                  history=None) -> None:
    # Every process gathers (collectives); process 0 alone (checkpoint set) writes.
    running = np.zeros(len(padded), bool)
    running[: len(rows)] = to_host(state.status)[: len(rows)] == RUNNING
    if not running.any():
        return
    host = ctx.engine.to_host(state, dim)
    if history is not None:
        host.update(history.arrays(len(padded)))
    if checkpoint:
        try:
            _inflight.save(checkpoint, padded, host, running, ctx.run_id)
        except KeyboardInterrupt:  # finish this save, so the chunk is not lost
            _inflight.save(checkpoint, padded, host, running, ctx.run_id)
            raise


def _run_slice(ctx: _Context, sl: Slice, name: str, positions: list[int]) -> None:
    """Run `sl` (its rows at grid `positions`) to the end, a chunk at a time: rows written as
    they finish, the rest checkpointed after every chunk."""
    rows = list(sl.rows)
    padded = rows + [rows[-1]] * (sl.batch - len(rows))  # duplicates fill the batch
    key = (sl.dim, sl.capacity, sl.batch)
    if key not in ctx.compiled:
        ctx.bar.note(f"compiling (or loading) the {ctx.engine.name} programs of width {sl.dim}"
                     + (f", depths <= {sl.capacity}" if sl.capacity else "")
                     + f", {sl.batch} configurations")
        ctx.compiled.add(key)
    label = f"d={sl.dim} L<={sl.active} ({sl.batch} configs)"
    prepared = ctx.engine.start(ctx.grid, sl, padded, ctx.dtype, ctx.mesh, ctx.chunk)
    state = prepared.state
    if ctx.has_saved:
        host = {k: np.array(v) for k, v in ctx.engine.to_host(state, sl.dim).items()}
        restored = on_writer(lambda: _inflight.restore(host, padded, ctx.saved,
                                                       ctx.engine.restore_row) and host)
        if restored:  # process 0's restored states, on every process
            state = ctx.engine.from_host(restored, state, sl.dim, ctx.mesh)
    checkpoint = os.path.join(ctx.inflight, name + ".npz") if ctx.inflight else None
    groups = [tuning_group(r) for r in rows] if ctx.prune else None
    measures = [c for c in ctx.columns if column(c).role == "measure"]
    reported = np.zeros(len(rows), bool)
    history = None
    if "learning-times" in ctx.save:  # every process records (the modes are gathered)
        history = _histories.Histories(rows, ctx.histories, to_host(state.step)[: len(rows)])
        history.record(np.ones(len(rows), bool), to_host(state.step)[: len(rows)],
                       to_host(prepared.modes(state))[: len(rows)])
    cfg_steps, chunk_s, left = 0, None, None
    while True:
        status = to_host(state.status)[: len(rows)]
        done = status != RUNNING
        new = done & ~reported
        if new.any():
            fields = {k: to_host(getattr(state, k)) for k in ("status", "iterations", "loss",
                                                               "step")}
            if prepared.measure is not None:  # of the end-to-end matrices, at the end
                fields.update({k: to_host(v) for k, v in prepared.measure(state).items()})
            idx = np.flatnonzero(new)
            new_rows = [_result_row(rows[i], fields, i, measures) for i in idx]
            new_positions = [positions[i] for i in idx]
            if "end-to-end" in ctx.save:  # before the rows: a row has its array
                matrices = to_host(prepared.end_to_end(state))  # every process gathers
                if ctx.arrays:
                    save_arrays(os.path.join(ctx.arrays, "end-to-end"), new_rows,
                                new_positions, matrices[idx])
            if history is not None and ctx.arrays:
                save_arrays(os.path.join(ctx.arrays, "learning-times"), new_rows,
                            new_positions, np.stack([history.times(i) for i in idx]))
            ctx.table.update(zip(new_positions, new_rows))
            if ctx.sink is not None:
                ctx.sink.append(new_rows, new_positions)
            if ctx.prune:
                _note_fastest(ctx.best, new_rows)
            reported |= new
        steps = to_host(state.step)[: len(rows)]
        if chunk_s is not None and not done.all():
            left = chunk_s * -(-(ctx.grid.max_iters - int(steps[~done].min())) // ctx.chunk)
        ctx.bar.update(int(new.sum()), cfg_steps, label, left)
        cfg_steps = 0
        if done.all():
            break
        if ctx.prune:
            stop = ~done & (steps > np.asarray([ctx.best.get(g, np.inf) for g in groups]))
            if stop.any():  # they cannot beat a rate that already converged: report them
                state = _stop(state, stop, len(padded), ctx.mesh)
                continue
        t0 = time.perf_counter()
        state = prepared.advance(state)
        cfg_steps = ctx.chunk * int((~done).sum())
        if history is not None:  # the chunk's end, for the rows that ran it
            history.record(~done, to_host(state.step)[: len(rows)],
                           to_host(prepared.modes(state))[: len(rows)])
        if ctx.checkpoints:
            need = 2 * sl.batch * (sl.capacity + 1) * sl.dim**2 * ctx.dtype.itemsize
            with writing(checkpoint or "", need):
                _save_running(ctx, checkpoint, rows, padded, state, sl.dim, history)
        chunk_s = time.perf_counter() - t0
    if checkpoint and os.path.exists(checkpoint):
        os.unlink(checkpoint)


def build_inputs(grid: Grid, rows: list[dict], capacity: int, dtype,
                 matmul: str = "dot") -> dict[str, np.ndarray]:
    """Initial weights, masks, targets, objectives and learning rates of `rows` as a sweep
    draws them, padded to `capacity`, on the host (batch first): for tests and benchmarks.
    `objective` is the batch of objectives (`Completion`, `Sensing`, `Whitened`)."""
    dtype = jnp.dtype(dtype)
    mesh = make_mesh(jax.devices()[:1])
    if "unrolled" not in grid.objective_class.layouts:
        matmul = "dot"
    engine = FullEngine(matmul, "sequential", "vmap", grid.objective)
    sl = Slice(rows[0]["dim"], capacity, len(rows), max(r["depth"] for r in rows), tuple(rows))
    state, objective, mask, lr = engine.initial(grid, sl, rows, dtype, mesh, 1)
    axis = engine._axis(sl.dim)
    if engine.shared(grid, sl.dim, 1, mesh):  # held once: one copy per row here
        objective = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (len(rows), *x.shape)),
                                 objective)
    else:
        objective = jax.tree.map(lambda x: to_host(x, axis if x.ndim > 2 else 0), objective)
    return dict(W=to_host(state.W, axis), phi=getattr(objective, "phi", None),
                mask=to_host(mask, axis), lr=to_host(lr), objective=objective)


def sweep_problem(grid: Grid, dtype=None, **config) -> tuple[jax.Array, object]:
    """`(W0, objective)` of one configuration of `grid`, exactly as a sweep draws them:
    `W0: (depth, d, d)`, the objective module; `zj.run(W0, objective, lr=...)` then reruns
    the configuration alone. `config`: values of the key columns (depth, seed, init, target,
    dim, observations, init_scale) that pick the configuration; a column the grid has one
    value of may be left out. ValueError unless exactly one configuration (up to its
    learning rate) matches."""
    unknown = sorted(set(config) - set(KEY))
    if unknown:
        raise ValueError(f"{unknown} are not columns of a configuration; expected some of "
                         f"{list(KEY)}")
    rows = grid.index.rows(range(grid.index.size)) if grid.index.size <= 1_000_000 else None
    if rows is None:
        raise ValueError("sweep_problem looks configurations up in grids of up to a million")
    match = {config_key({**r, "lr": 1.0}): r for r in rows
             if all(r[k] == v for k, v in config.items())}
    if len(match) != 1:
        raise ValueError(f"{len(match)} configurations of the grid match {config}; give "
                         "values that pick one (depth, seed, ...)")
    row = next(iter(match.values()))
    dtype = jnp.dtype(dtype or jax.dtypes.canonicalize_dtype(float))
    host = build_inputs(grid, [row], row["depth"], dtype)
    objective = jax.tree.map(lambda x: jnp.asarray(x[0]), host["objective"])
    return jnp.asarray(host["W"][0]), objective


def slice_program(grid: Grid, rows: list[dict], capacity: int, *, dtype, chunk: int,
                  matmul: str, prefix: str = "sequential", batching: str = "auto", devices=None):
    """The compiled programs of one slice, as a sweep runs them: `(state, advance)`, where
    `advance(state)` is one chunk of `chunk` iterations. The benchmark's entry point."""
    mesh = make_mesh(devices)
    if len(rows) % mesh.devices.size:
        raise ValueError(f"{len(rows)} configurations do not split over {mesh.devices.size} "
                         "devices")
    sl = Slice(rows[0]["dim"], capacity, len(rows), max(r["depth"] for r in rows), tuple(rows))
    prepared = FullEngine(matmul, prefix, batching, grid.objective).start(
        grid, sl, rows, jnp.dtype(dtype), mesh, chunk)
    return prepared.state, prepared.advance
