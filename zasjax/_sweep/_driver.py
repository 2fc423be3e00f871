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
from .._executables import stored
from .._run import PRUNED, RUNNING, STATUS_NAMES
from . import _inflight
from ._distributed import is_writer, make_mesh, on_writer, put, to_host
from ._engines import FullEngine, ModesEngine
from ._grid import COLUMNS, MEASURES, Grid, config_key
from ._plan import Slice, memory_budget
from ._programs import objective
from ._spec import SweepSpec, as_spec
from ._tuning import best_per_config, fastest, tuning_group


class _Progress:
    def __init__(self, total: int, done: int, enabled: bool):
        self.total, self.done, self.enabled = total, done, enabled
        self.start = self.shown = time.perf_counter()
        self.cfg_steps = 0

    def note(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r{text}" + " " * 20)
            sys.stderr.flush()

    def update(self, newly_done: int, cfg_steps: int, label: str) -> None:
        self.done += newly_done
        self.cfg_steps += cfg_steps
        now = time.perf_counter()
        if self.enabled and (now - self.shown > 0.5 or self.done == self.total):
            self.shown = now
            rate = self.cfg_steps / max(now - self.start, 1e-9)
            sys.stderr.write(f"\r{label}: {self.done}/{self.total} configs done, "
                             f"{rate:,.0f} config-iterations/s   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@dataclass
class _Context:
    """What every slice of one sweep shares."""

    grid: Grid
    engine: FullEngine | ModesEngine
    dtype: np.dtype
    mesh: object
    chunk: int
    prune: bool
    run_id: str
    bar: _Progress
    runs_csv: str | None              # None: this process does not write
    inflight: str | None
    checkpoints: bool                 # the same on every process: they gather states together
    saved: dict = field(default_factory=dict)   # process 0's checkpoints (empty elsewhere)
    has_saved: bool = False           # whether process 0 has any (known to every process)
    finished: dict = field(default_factory=dict)
    compiled: set = field(default_factory=set)


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
    with contextlib.ExitStack() as stack:
        cache_dir = stack.enter_context(persistent_cache()) if spec.cache else None
        timer = Timer()
        config = {**(meta or {}), **_record(spec), "identity": spec.identity()}
        writer = out is not None and is_writer()
        if out is not None:
            on_writer(lambda: _open_folder(spec, out, resume, stack) if writer else None)
        if writer:
            _store.write_json(os.path.join(out, "config.json"),
                              {**config, "started": time.strftime("%FT%T%z")})
            if spec.progress:
                _plots.prefetch()
        rows = []
        for i, grid in enumerate(spec.grids):
            rows += _sweep_grid(spec, grid, mesh, out, resume or i > 0)
        if writer:
            table = best_per_config(rows) if spec.tune_lr else rows
            _store.write_csv(os.path.join(out, "results.csv"),
                             [{**r, "tuned": spec.tune_lr} for r in table], COLUMNS)
            _store.write_json(os.path.join(out, "config.json"), {
                **config, "seconds": timer.record()["wall_s"],
                "timing": {**timer.record(), "cache_dir": cache_dir},
                "finished": time.strftime("%FT%T%z")})
    return rows


def _record(spec: SweepSpec) -> dict:
    """What config.json says of a sweep: its spec, and where and with what it ran."""
    import jaxlib

    from .. import __version__

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


def _sweep_grid(spec: SweepSpec, grid: Grid, mesh, out: str | None, resume: bool) -> list[dict]:
    """One grid of the spec, into `out` (its rows appended to runs.csv as they finish)."""
    if spec.engine == "full":
        eng = FullEngine(spec.matmul, spec.prefix, spec.batching, grid.objective)
    else:
        eng = ModesEngine()
    dtype = jnp.dtype(spec.dtype)
    n_dev = mesh.devices.size
    budget = memory_budget(list(mesh.devices.flat))
    configs = grid.configs()
    runs_csv = os.path.join(out, "runs.csv") if out else None
    inflight = os.path.join(out, "inflight") if out else None
    run_id = run_identity(grid, dtype, eng)

    write = out is not None and is_writer()

    saved: dict = {}  # checkpoints stay with process 0, which restores them

    def read_folder():
        # Process 0 alone reads the folder; every process gets the rows, the plan and
        # whether checkpoints exist, so all run the same slices in the same order.
        finished: dict[tuple, dict] = {}
        if out and resume:
            if os.path.exists(runs_csv):
                for r in read_runs(runs_csv):
                    finished[config_key(r)] = r
            if os.path.isdir(inflight):
                saved.update(_inflight.load_all(inflight, run_id))
        pending = [c for c in configs if config_key(c) not in finished]
        slices = eng.plan(pending, spec.bucket_ratio, n_dev, budget, dtype, grid,
                          spec.max_batch)
        return finished, bool(saved), slices

    finished, has_saved, slices = on_writer(read_folder)
    ctx = _Context(grid, eng, dtype, mesh, spec.chunk, spec.tune_lr, run_id,
                   _Progress(len(configs), sum(config_key(c) in finished for c in configs),
                             spec.progress and is_writer()),
                   runs_csv if write else None, inflight if write else None,
                   out is not None, saved=saved, finished=finished, has_saved=has_saved)
    for i, sl in enumerate(slices):
        _run_slice(ctx, sl, f"{sl.tag}-{i}-{os.getpid()}")
    ctx.bar.close()
    if write and os.path.isdir(inflight):
        _inflight.remove_run(inflight, run_id)
    return [as_row(finished[config_key(c)]) for c in configs]


def read_runs(path: str) -> list[dict]:
    """Rows of `runs.csv`; ValueError naming the file if it is not a sweep's runs.csv."""
    try:
        rows = _store.read_csv(path)
        return [as_row(r) for r in rows]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{path!r} is not a readable runs.csv ({type(e).__name__}: {e}); "
                         "move it away to start afresh") from None


def as_row(r: dict) -> dict:
    """Normalise a row read back from CSV to the types of a fresh one (an empty cell, or a
    column a sweep of an earlier version did not write, is None)."""
    def value(name, kind):
        v = r.get(name)
        return None if v in (None, "") else kind(v)

    return dict(init=r["init"], target=r["target"], dim=int(r["dim"]), depth=int(r["depth"]),
                seed=int(r["seed"]), lr=float(r["lr"]), optimizer=r["optimizer"],
                iterations=value("iterations", int), final_loss=float(r["final_loss"]),
                status=str(r["status"]), steps=int(r["steps"]),
                objective=r.get("objective") or "whitened",
                observations=value("observations", int), init_scale=value("init_scale", float),
                **{m: value(m, float) for m in MEASURES})


def _result_row(row: dict, host: dict, i: int) -> dict:
    iters = int(host["iterations"][i])
    measured = {m: float(host[m][i]) if m in host and np.isfinite(host[m][i]) else None
                for m in MEASURES}
    return {**row, "iterations": iters if iters >= 0 else None,
            "final_loss": float(host["loss"][i]), "status": STATUS_NAMES[int(host["status"][i])],
            "steps": int(host["step"][i]), **measured}


def _stop(state, stop: np.ndarray, n_padded: int, mesh):
    flags = np.zeros(n_padded, bool)
    flags[: len(stop)] = stop
    return state._replace(status=_mark_pruned(put(flags, mesh, 0), state.status))


@jax.jit
def _pruned(stop, status):
    return jnp.where(stop, PRUNED, status)


_mark_pruned = stored(_pruned)  # loaded, not traced, by a warm run (`_executables`)


def _save_running(ctx: _Context, checkpoint, rows, padded, state, dim) -> None:
    # Every process gathers (collectives); process 0 alone (checkpoint set) writes.
    running = np.zeros(len(padded), bool)
    running[: len(rows)] = to_host(state.status)[: len(rows)] == RUNNING
    if not running.any():
        return
    host = ctx.engine.to_host(state, dim)
    if checkpoint:
        try:
            _inflight.save(checkpoint, padded, host, running, ctx.run_id)
        except KeyboardInterrupt:  # finish this save, so the chunk is not lost
            _inflight.save(checkpoint, padded, host, running, ctx.run_id)
            raise


def _run_slice(ctx: _Context, sl: Slice, name: str) -> None:
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
    reported = np.zeros(len(rows), bool)
    cfg_steps = 0
    while True:
        status = to_host(state.status)[: len(rows)]
        done = status != RUNNING
        new = done & ~reported
        if new.any():
            fields = {k: to_host(getattr(state, k)) for k in ("status", "iterations", "loss",
                                                               "step")}
            if prepared.measure is not None:  # of the end-to-end matrices, at the end
                fields.update({k: to_host(v) for k, v in prepared.measure(state).items()})
            new_rows = [_result_row(rows[i], fields, i) for i in np.flatnonzero(new)]
            for r in new_rows:
                ctx.finished[config_key(r)] = r
            if ctx.runs_csv:
                _store.append_csv(ctx.runs_csv, new_rows, COLUMNS)
            reported |= new
        ctx.bar.update(int(new.sum()), cfg_steps, label)
        cfg_steps = 0
        if done.all():
            break
        if ctx.prune:
            best = fastest(ctx.finished)
            steps = to_host(state.step)[: len(rows)]
            stop = ~done & np.asarray([steps[i] > best.get(tuning_group(r), np.inf)
                                       for i, r in enumerate(rows)])
            if stop.any():  # they cannot beat a rate that already converged: report them
                state = _stop(state, stop, len(padded), ctx.mesh)
                continue
        state = prepared.advance(state)
        cfg_steps = ctx.chunk * int((~done).sum())
        if ctx.checkpoints:
            _save_running(ctx, checkpoint, rows, padded, state, sl.dim)
    if checkpoint and os.path.exists(checkpoint):
        os.unlink(checkpoint)


def build_inputs(grid: Grid, rows: list[dict], capacity: int, dtype,
                 matmul: str = "dot") -> dict[str, np.ndarray]:
    """Initial weights, masks, targets, objectives and learning rates of `rows` as a sweep
    draws them, padded to `capacity`, on the host (batch first): for tests and benchmarks.
    `objective` is the batch of objectives (`Completion`, `Sensing`, `Whitened`)."""
    dtype = jnp.dtype(dtype)
    mesh = make_mesh(jax.devices()[:1])
    if grid.objective != "whitened":
        matmul = "dot"
    engine = FullEngine(matmul, "sequential", "vmap", grid.objective)
    sl = Slice(rows[0]["dim"], capacity, len(rows), max(r["depth"] for r in rows), tuple(rows))
    state, data, mask, lr = engine.initial(grid, sl, rows, dtype, mesh, 1)
    axis = engine._axis(sl.dim)
    data = {k: to_host(x, axis if x.ndim > 2 else 0) for k, x in data.items()}
    return dict(W=to_host(state.W, axis), phi=data["phi"], mask=to_host(mask, axis),
                lr=to_host(lr), objective=objective(grid.objective, data))


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
