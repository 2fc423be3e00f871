"""The host loop of a sweep: plan slices, run each a chunk at a time, write what finishes.

After every chunk, finished rows are appended to `runs.csv` and the configurations still
running are checkpointed (see `_inflight`), both atomically; `resume=True` recomputes nothing
that finished and continues the rest from their checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .. import _store
from .._compilation import enable_persistent_cache
from .._inits import depth_coef
from .._network import MATMULS
from .._run import PRUNED, RUNNING, STATUS_NAMES, Settings
from . import _inflight
from ._devices import make_mesh, put, to_host
from ._grid import COLUMNS, Grid, config_key
from ._plan import DEFAULT_RATIO, Slice, check_fits, check_ratio, memory_budget, plan
from ._programs import Spec, advance_chunk, batch_axis, start
from ._tuning import fastest, tuning_group

#: Below this width the unrolled multiply-add formulation with the batch as the last axis
#: beats batched dot products (measured by `zasjax bench`).
UNROLLED_MAX_DIM = 8

#: From this width on, XLA:CPU runs one configuration's D × D products faster than a batch
#: of them (batched dots of D ≥ 64 lose 20-45% against plain ones on the 2-core machine), so
#: on CPU the configurations of a device are looped over inside the compiled program.
LOOP_MIN_DIM = 48
BATCHINGS = ("auto", "vmap", "loop")
PREFIXES = ("sequential", "associative")


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
    dtype: np.dtype
    mesh: object
    matmul: str
    prefix: str
    batching: str
    chunk: int
    prune: bool
    run_id: str
    bar: _Progress
    runs_csv: str | None              # None: this process does not write
    inflight: str | None
    saved: dict = field(default_factory=dict)
    finished: dict = field(default_factory=dict)
    compiled: set = field(default_factory=set)


def run_identity(grid: Grid, dtype, matmul: str, prefix: str) -> str:
    """A digest of everything that changes a result: checkpoints carry it."""
    text = json.dumps([grid.identity(), str(dtype), matmul, prefix], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweep(grid: Grid, out: str | None = None, *, resume: bool = False, chunk: int = 1000,
          bucket_ratio: float = DEFAULT_RATIO, devices=None, max_batch: int | None = None,
          matmul: str = "auto", prefix: str = "sequential", batching: str = "auto",
          dtype=None, progress: bool = False, prune: bool = False,
          cache: bool = True) -> list[dict]:
    """Run every configuration of `grid`; return one row dict per configuration (`COLUMNS`).

    With `out`, finished rows are appended to `out/runs.csv` after every chunk and the
    configurations in flight are checkpointed in `out/inflight/`; `resume=True` continues
    from there, recomputing nothing that finished. Diverging configurations are rows with
    status `diverged`, never exceptions.

    Depths share compiled programs: a configuration runs in the capacity class
    ceil(ratio^k) ≥ its depth (`bucket_ratio`, default 2; 1 = one class per depth), padded
    with identity layers that never train. `cache=True` turns on JAX's persistent
    compilation cache (see `zasjax._compilation`) unless the user configured one.

    `prune=True` is for learning-rate tuning: a configuration still running after more
    iterations than another learning rate of the same (init, target, dim, depth, seed)
    needed to converge cannot be the fastest, so it stops with status `pruned`. The best
    rate per configuration (`best_per_config`) is unchanged; the sweep ends much sooner.

    `batching` says how the configurations of one device share a program when the batch is
    not last (`matmul="dot"`): `"vmap"` (batched products), `"loop"` (one configuration
    after another, `lax.map`) or `"auto"` (loop on CPU from width `LOOP_MIN_DIM`, else vmap).
    """
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a zasjax Grid, got {type(grid).__name__}")
    grid.check()
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; expected one of {BATCHINGS}")
    if matmul != "auto" and matmul not in MATMULS:
        raise ValueError(f"unknown matmul {matmul!r}; expected 'auto' or one of "
                         f"{sorted(MATMULS)}")
    if prefix not in PREFIXES:
        raise ValueError(f"unknown prefix {prefix!r}; expected one of {PREFIXES}")
    ratio = check_ratio(bucket_ratio)
    dtype = jnp.dtype(dtype or jnp.zeros(()).dtype)
    check_target_fits(grid, dtype)
    if cache:
        enable_persistent_cache()
    mesh = make_mesh(devices)
    n_dev = mesh.devices.size
    budget = memory_budget(list(mesh.devices.flat))
    check_fits(grid.dims, grid.depths, dtype.itemsize, grid.optimizer, budget)
    configs = grid.configs()
    runs_csv = os.path.join(out, "runs.csv") if out else None
    inflight = os.path.join(out, "inflight") if out else None
    run_id = run_identity(grid, dtype, matmul, prefix)

    finished: dict[tuple, dict] = {}
    saved: dict = {}
    if out and resume:
        for r in read_runs(runs_csv):
            finished[config_key(r)] = r
        saved = _inflight.load_all(inflight, run_id) if os.path.isdir(inflight) else {}
    elif out and os.path.exists(runs_csv):
        raise ValueError(f"{out!r} already holds a sweep (runs.csv); pass resume=True "
                         "(--resume) to continue it, or choose another output folder")
    pending = [c for c in configs if config_key(c) not in finished]
    write = out is not None and jax.process_index() == 0
    ctx = _Context(grid, dtype, mesh, matmul, prefix, batching, chunk, prune, run_id,
                   _Progress(len(configs), len(configs) - len(pending), progress),
                   runs_csv if write else None, inflight if write else None, saved, finished)
    for i, sl in enumerate(plan(pending, ratio, n_dev, budget, dtype.itemsize, grid.optimizer,
                                max_batch)):
        _run_slice(ctx, sl, f"{sl.tag}-{i}-{os.getpid()}")
    ctx.bar.close()
    if write and os.path.isdir(inflight):
        _inflight.remove_run(inflight, run_id)
    return [as_row(finished[config_key(c)]) for c in configs]


def check_target_fits(grid: Grid, dtype) -> None:
    """ValueError if the user's target matrix does not fit the run's dtype."""
    if grid.target_matrix is None:
        return
    m = np.asarray(grid.target_matrix, np.float64)
    big = float(np.abs(m).max(initial=0.0))
    limit = float(np.finfo(dtype).max) ** 0.5  # R = ½‖·‖² must stay finite
    if not big < limit:
        raise ValueError(f"target matrix entries reach {big:.3g}, too large for {dtype.name} "
                         f"(the loss overflows above ~{limit:.3g}); rescale it or use --x64")


def read_runs(path: str) -> list[dict]:
    """Rows of `runs.csv`; ValueError naming the file if it is not a sweep's runs.csv."""
    try:
        rows = _store.read_csv(path)
        return [as_row(r) for r in rows]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r} is not a readable runs.csv ({type(e).__name__}: {e}); "
                         "move it away to start afresh") from None


def as_row(r: dict) -> dict:
    """Normalise a row read back from CSV to the types of a fresh one."""
    iters = r.get("iterations")
    return dict(init=r["init"], target=r["target"], dim=int(r["dim"]), depth=int(r["depth"]),
                seed=int(r["seed"]), lr=float(r["lr"]), optimizer=r["optimizer"],
                iterations=None if iters in (None, "") else int(iters),
                final_loss=float(r["final_loss"]), status=str(r["status"]),
                steps=int(r["steps"]))


def _result_row(row: dict, host: dict, i: int) -> dict:
    iters = int(host["iterations"][i])
    return {**row, "iterations": iters if iters >= 0 else None,
            "final_loss": float(host["loss"][i]), "status": STATUS_NAMES[int(host["status"][i])],
            "steps": int(host["step"][i])}


def _layout(ctx: _Context, dim: int) -> tuple[Settings, int, object]:
    mm = ("unrolled" if dim <= UNROLLED_MAX_DIM else "dot") if ctx.matmul == "auto" \
        else ctx.matmul
    axis = batch_axis(mm)
    settings = Settings(ctx.grid.optimizer, tuple(ctx.grid.hyper), mm, ctx.prefix, ctx.chunk)
    loop = axis == 0 and (ctx.batching == "loop" or ctx.batching == "auto" and
                          dim >= LOOP_MIN_DIM and ctx.mesh.devices.flat[0].platform == "cpu")
    return settings, axis, ctx.mesh if loop else None


def _inputs(ctx: _Context, rows: list[dict]) -> dict[str, np.ndarray]:
    g = ctx.grid
    return dict(
        seeds=np.asarray([r["seed"] for r in rows], np.uint32),
        depths=np.asarray([r["depth"] for r in rows], np.int32),
        coefs=np.asarray([depth_coef(r["init"], r["dim"], r["depth"], g.init_scale)
                          for r in rows], np.float64),
        init_index=np.asarray([g.inits.index(r["init"]) for r in rows], np.int32),
        target_index=np.asarray([g.targets.index(r["target"]) for r in rows], np.int32),
        lr=np.asarray([r["lr"] for r in rows], np.float64))


def _replicated(x: np.ndarray, mesh) -> jax.Array:
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, PartitionSpec()),
                                        lambda idx: x[idx])


def _stop(state, stop: np.ndarray, n_padded: int, mesh):
    flags = np.zeros(n_padded, bool)
    flags[: len(stop)] = stop
    return state._replace(status=jnp.where(put(flags, mesh, 0), PRUNED, state.status))


def _start(ctx: _Context, spec: Spec, rows: list[dict]):
    g, mesh = ctx.grid, ctx.mesh
    host = _inputs(ctx, rows)
    host["lr"] = host["lr"].astype(ctx.dtype)
    host["coefs"] = host["coefs"].astype(ctx.dtype)
    matrix = np.zeros((spec.dim, spec.dim), ctx.dtype) if g.target_matrix is None else \
        np.asarray(g.target_matrix, ctx.dtype)
    return start(*(put(host[k], mesh, 0) for k in ("seeds", "depths", "coefs", "init_index",
                                                   "target_index", "lr")),
                 _replicated(matrix, mesh), spec=spec)


def _save_running(ctx, checkpoint, rows, padded, state, axis) -> None:
    running = np.zeros(len(padded), bool)
    running[: len(rows)] = to_host(state.status)[: len(rows)] == RUNNING
    if running.any():
        _inflight.save(checkpoint, padded, state, axis, running, ctx.run_id)


def _run_slice(ctx: _Context, sl: Slice, name: str) -> None:
    g, mesh = ctx.grid, ctx.mesh
    rows = list(sl.rows)
    padded = rows + [rows[-1]] * (sl.batch - len(rows))  # duplicates fill the batch
    settings, axis, loop_mesh = _layout(ctx, sl.dim)
    spec = Spec(tuple(g.inits), tuple(g.targets), sl.dim, sl.capacity, g.init_scale,
                ctx.dtype.name, settings, axis, mesh)
    label = f"d={sl.dim} L<={sl.active} ({sl.batch} configs)"
    if (spec, sl.batch) not in ctx.compiled:
        ctx.bar.note(f"compiling the programs of width {sl.dim}, depths <= {sl.capacity}, "
                     f"{sl.batch} configurations")
        ctx.compiled.add((spec, sl.batch))
    state, phi, mask, lr = _start(ctx, spec, padded)
    state = _inflight.restore(state, padded, ctx.saved, axis, mesh)
    eps = jnp.asarray(g.eps, ctx.dtype)
    max_iters = jnp.asarray(g.max_iters, jnp.int32)
    active = _replicated(np.asarray(sl.active, np.int32), mesh)
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
                state = _stop(state, stop, len(padded), mesh)
                continue
        state = advance_chunk(state, phi, mask, lr, active, eps, max_iters, settings, axis,
                              loop_mesh)
        cfg_steps = settings.record_every * int((~done).sum())
        if checkpoint:
            try:
                _save_running(ctx, checkpoint, rows, padded, state, axis)
            except KeyboardInterrupt:  # finish this save, so the chunk is not lost
                _save_running(ctx, checkpoint, rows, padded, state, axis)
                raise
    if checkpoint and os.path.exists(checkpoint):
        os.unlink(checkpoint)


def build_inputs(grid: Grid, rows: list[dict], capacity: int, dtype,
                 matmul: str = "dot") -> dict[str, np.ndarray]:
    """Initial weights, masks, targets and learning rates of `rows` as a sweep draws them,
    padded to `capacity`, on the host (batch first): for tests and benchmarks."""
    dtype = jnp.dtype(dtype)
    mesh = make_mesh(jax.devices()[:1])
    ctx = _Context(grid, dtype, mesh, matmul, "sequential", "vmap", 1, False, "",
                   _Progress(0, 0, False), None, None)
    settings, axis, _ = _layout(ctx, rows[0]["dim"])
    spec = Spec(tuple(grid.inits), tuple(grid.targets), rows[0]["dim"], capacity,
                grid.init_scale, dtype.name, settings, axis, mesh)
    state, phi, mask, lr = _start(ctx, spec, rows)
    return dict(W=to_host(state.W, axis), phi=to_host(phi, axis), mask=to_host(mask, axis),
                lr=to_host(lr))


def slice_program(grid: Grid, rows: list[dict], capacity: int, *, dtype, chunk: int,
                  matmul: str, prefix: str = "sequential", batching: str = "auto", devices=None):
    """The compiled programs of one slice, as a sweep runs them: `(state, advance)`, where
    `advance(state)` is one chunk of `chunk` iterations. The benchmark's entry point."""
    dtype = jnp.dtype(dtype)
    mesh = make_mesh(devices)
    n_dev = mesh.devices.size
    if len(rows) % n_dev:
        raise ValueError(f"{len(rows)} configurations do not split over {n_dev} devices")
    ctx = _Context(grid, dtype, mesh, matmul, prefix, batching, chunk, False, "",
                   _Progress(0, 0, False), None, None)
    settings, axis, loop_mesh = _layout(ctx, rows[0]["dim"])
    spec = Spec(tuple(grid.inits), tuple(grid.targets), rows[0]["dim"], capacity,
                grid.init_scale, dtype.name, settings, axis, mesh)
    state, phi, mask, lr = _start(ctx, spec, rows)
    eps = jnp.asarray(grid.eps, dtype)
    max_iters = jnp.asarray(grid.max_iters, jnp.int32)
    active = _replicated(np.asarray(max(r["depth"] for r in rows), np.int32), mesh)
    return state, lambda state: advance_chunk(state, phi, mask, lr, active, eps, max_iters,
                                              settings, axis, loop_mesh)
