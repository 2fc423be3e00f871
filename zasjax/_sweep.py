"""Grids of runs: depth buckets → vmapped, sharded, chunked programs, resumable from disk.

A grid is the product init × target × dim × depth × seed × learning rate. Configurations of
one width are grouped into depth buckets (depths within `bucket_ratio` of each other); each
bucket is padded with fixed identity layers to its largest depth (`pad_depth`), so one
compiled program runs it. The configuration axis is sharded over all devices with
`jax.sharding`, and split into slices when it would not fit in memory. A host loop advances
each slice a chunk of iterations at a time, stops once every configuration is finished,
appends finished rows to `runs.csv` and checkpoints the ones in flight, atomically.
"""

from __future__ import annotations

import glob
import io
import itertools
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _store
from ._inits import INITS, make_init
from ._network import loss_and_grad_unrolled, pad_depth
from ._optimizers import check_optimizer
from ._run import PRUNED, RUNNING, STATUS_NAMES, RunState, Settings, Whitened, init_state, step
from ._targets import TARGETS, make_target

#: XLA:CPU runs a while loop whose buffers total under this many bytes as ONE compiled kernel;
#: above it, every iteration dispatches each fused op separately (~1-3 µs each). The layer
#: loops of small networks are dispatch-bound, so we raise the 1 kB default (measured in
#: `zasjax bench`: 3-4x for d = 2). It must be in XLA_FLAGS before the CPU backend starts.
SMALL_LOOP_BYTES = 10**9


def enable_small_loop_kernels(env=os.environ) -> bool:
    """Ask XLA:CPU to compile whole layer loops as single kernels (see `SMALL_LOOP_BYTES`).

    Adds the option to `XLA_FLAGS` unless the user set backend options there already; it
    only takes effect if JAX has not started its CPU backend yet (zasjax calls this when
    imported). `ZASJAX_KEEP_XLA_FLAGS=1` leaves `XLA_FLAGS` untouched. Returns whether the
    option is now in `XLA_FLAGS`.
    """
    flags = env.get("XLA_FLAGS", "")
    if env.get("ZASJAX_KEEP_XLA_FLAGS") == "1":
        return "xla_cpu_small_while_loop_byte_threshold" in flags
    if "xla_backend_extra_options" not in flags:
        env["XLA_FLAGS"] = (f"{flags} --xla_backend_extra_options="
                            f"xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}").strip()
    return "xla_cpu_small_while_loop_byte_threshold" in env["XLA_FLAGS"]


enable_small_loop_kernels()

KEY_COLUMNS = ("init", "target", "dim", "depth", "seed", "lr", "optimizer")
COLUMNS = (*KEY_COLUMNS, "iterations", "final_loss", "status", "steps")
FILE_TARGET = "file"

#: Below this width the unrolled multiply-add formulation with the batch as the last axis
#: beats batched dot products (measured by `zasjax bench`).
UNROLLED_MAX_DIM = 8

#: From this width on, XLA:CPU runs one configuration's D × D products faster than a batch
#: of them (batched dots of D ≥ 64 lose 20-45% against plain ones on the 2-core machine), so
#: on CPU the configurations of a device are looped over inside the compiled program.
LOOP_MIN_DIM = 48
BATCHINGS = ("auto", "vmap", "loop")


@dataclass(frozen=True)
class Grid:
    """One product grid of configurations. Shapes (dims, depths) are static; the rest sweeps."""

    inits: Sequence[str] = ("zas",)
    targets: Sequence[str] = ("neg-identity",)
    dims: Sequence[int] = (1,)
    depths: Sequence[int] = (1, 2, 4, 8)
    seeds: Sequence[int] = (0,)
    lrs: Sequence[float] = (0.01,)
    optimizer: str = "gd"
    hyper: tuple = ()
    eps: float = 1e-10
    max_iters: int = 10_000
    init_scale: float | None = None
    target_matrix: np.ndarray | None = field(default=None, compare=False, repr=False)

    def check(self) -> None:
        """ValueError for any value a run cannot use, before anything is traced or written."""
        for name, values, table in (("init", self.inits, INITS), ("target", self.targets,
                                                                    {**TARGETS, FILE_TARGET: 0})):
            if not values:
                raise ValueError(f"give at least one {name}")
            for v in values:
                if v not in table:
                    raise ValueError(f"unknown {name} {v!r}; expected one of {sorted(table)}")
        if FILE_TARGET in self.targets and self.target_matrix is None:
            raise ValueError("target 'file' needs a target matrix (--target-file)")
        for name, values in (("dim", self.dims), ("depth", self.depths), ("seed", self.seeds),
                             ("lr", self.lrs)):
            if not len(values):
                raise ValueError(f"give at least one {name}")
        if min(self.dims) < 1:
            raise ValueError(f"every dim must be >= 1, got {list(self.dims)}")
        if min(self.depths) < 1:
            raise ValueError(f"every depth must be >= 1, got {list(self.depths)}")
        if min(self.seeds) < 0:
            raise ValueError(f"seeds must be >= 0, got {list(self.seeds)}")
        if not all(lr > 0 and math.isfinite(lr) for lr in self.lrs):
            raise ValueError(f"every learning rate must be a finite number > 0, got "
                             f"{list(self.lrs)}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.max_iters < 1:
            raise ValueError(f"max_iters must be >= 1, got {self.max_iters}")
        if self.init_scale is not None and not self.init_scale > 0:
            raise ValueError(f"init scale must be > 0, got {self.init_scale}")
        check_optimizer(self.optimizer)
        if self.target_matrix is not None:
            shape = np.shape(self.target_matrix)
            for d in self.dims:
                if shape != (d, d):
                    raise ValueError(f"target matrix has shape {shape}, expected ({d}, {d}) "
                                     f"to match dim {d}")

    def configs(self) -> list[dict]:
        """Every configuration as a row dict with the `KEY_COLUMNS`, in a fixed order."""
        return [dict(init=i, target=t, dim=int(d), depth=int(L), seed=int(s), lr=float(lr),
                     optimizer=self.optimizer)
                for i, t, d, L, s, lr in itertools.product(self.inits, self.targets, self.dims,
                                                            self.depths, self.seeds, self.lrs)]


def config_key(row: dict) -> tuple:
    """Hashable identity of a configuration, equal for a fresh row and one read from CSV."""
    return (row["init"], row["target"], int(row["dim"]), int(row["depth"]), int(row["seed"]),
            float(row["lr"]), row["optimizer"])


# ---------------------------------------------------------------------------------------------
# Planning: depth buckets and slices
# ---------------------------------------------------------------------------------------------


def depth_buckets(depths: Sequence[int], ratio: float = 1.2) -> list[list[int]]:
    """Group sorted depths so that each group's largest is at most `ratio` × its smallest.

    A bucket's cost is its largest depth, so the padding waste of a bucket is ≤ `ratio`.
    `ratio=1` gives one program per depth.
    """
    if ratio < 1:
        raise ValueError(f"bucket ratio must be >= 1, got {ratio}")
    buckets: list[list[int]] = []
    for L in sorted(set(int(d) for d in depths)):
        if buckets and L <= ratio * buckets[-1][0]:
            buckets[-1].append(L)
        else:
            buckets.append([L])
    return buckets


def bytes_per_config(depth: int, dim: int, itemsize: int, optimizer: str) -> int:
    """Rough working set of one configuration: W, mask, prefixes, gradients, optimiser state."""
    copies = 5 + {"gd": 0, "sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}.get(optimizer, 2)
    return copies * (depth + 1) * dim * dim * itemsize


def memory_budget(devices) -> int:
    """Bytes one slice may use per device: a quarter of its memory (host RAM on CPU)."""
    try:
        stats = devices[0].memory_stats() or {}
        limit = stats.get("bytes_limit")
    except Exception:  # noqa: BLE001 - not every backend reports memory
        limit = None
    if not limit:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // max(len(devices), 1)
    return int(limit) // 4


# ---------------------------------------------------------------------------------------------
# Building one slice's inputs (on the host, vectorised over seeds)
# ---------------------------------------------------------------------------------------------


def _seed_keys(seeds, stream: int):
    return jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), stream))(jnp.asarray(seeds))


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _inits(keys, init, depths, dim, depth, scale, dtype):
    """Initial weights of every depth in `depths` (`keys[i]`: the seeds of `depths[i]`), each
    padded to `depth` by `pad_depth`: one compiled builder per bucket. Equal-width inits draw
    all layers in one vmapped call, so the builder compiles as fast at L = 512 as at L = 2.
    """
    def one(key, L):
        W = make_init(init, key, (dim,) * (L + 1), scale, dtype)
        return pad_depth(W, jnp.ones((L, 1, 1), dtype), depth)[0]

    return [jax.vmap(partial(one, L=L))(k) for k, L in zip(keys, depths)]


@partial(jax.jit, static_argnums=(1, 2, 3))
def _targets(keys, target, dim, dtype):
    return jax.vmap(lambda k: make_target(target, k, (dim, dim), dtype))(keys)


def build_inputs(grid: Grid, rows: list[dict], depth: int, dtype) -> dict[str, np.ndarray]:
    """Initial weights, masks, targets and learning rates for `rows`, padded to `depth`.

    Seed s draws its initialisation from fold_in(key(s), 0) and its target from
    fold_in(key(s), 1): the same seed gives the same Φ at every depth and init.
    """
    dim = rows[0]["dim"]
    W = np.empty((len(rows), depth, dim, dim), dtype)
    mask = np.empty((len(rows), depth, 1, 1), dtype)
    phi = np.empty((len(rows), dim, dim), dtype)
    groups: dict[str, dict[int, list[int]]] = {}  # init -> depth -> row indices
    for i, r in enumerate(rows):
        groups.setdefault(r["init"], {}).setdefault(r["depth"], []).append(i)
    for init, by_depth in sorted(groups.items()):
        depths = tuple(sorted(by_depth))
        seeds = [sorted({rows[i]["seed"] for i in by_depth[L]}) for L in depths]
        Ws = _inits([_seed_keys(s, 0) for s in seeds], init, depths, dim, depth,
                    grid.init_scale, jnp.dtype(dtype).name)
        for L, s, Ws_L in zip(depths, seeds, Ws):
            idx = by_depth[L]
            W[idx] = np.asarray(Ws_L)[np.searchsorted(s, [rows[i]["seed"] for i in idx])]
            mask[idx, :L], mask[idx, L:] = 1, 0
    for target in {r["target"] for r in rows}:
        idx = [i for i, r in enumerate(rows) if r["target"] == target]
        seeds = sorted({rows[i]["seed"] for i in idx})
        if target == FILE_TARGET:
            phis = np.broadcast_to(np.asarray(grid.target_matrix, dtype), (len(seeds), dim, dim))
        else:
            phis = _targets(_seed_keys(seeds, 1), target, dim, jnp.dtype(dtype).name)
        phi[idx] = np.asarray(phis)[np.searchsorted(seeds, [rows[i]["seed"] for i in idx])]
    return dict(W=W, mask=mask, phi=phi, lr=np.asarray([r["lr"] for r in rows], dtype))


# ---------------------------------------------------------------------------------------------
# The compiled chunk
# ---------------------------------------------------------------------------------------------


def batch_axis(matmul: str) -> int:
    # Tiny matrices are vectorised across the batch, which XLA does best when it is minor.
    return -1 if matmul == "unrolled" else 0


@partial(jax.jit, static_argnames=("settings", "axis"), donate_argnums=(0,))
def _init_states(W, phi, lr, settings, axis):
    def one(W, phi, lr):
        return init_state(W, Whitened(phi), lr, settings)

    return jax.vmap(one, in_axes=axis, out_axes=axis)(W, phi, lr)


class _Evaluated(eqx.Module):
    """An objective whose value and gradient at the current W were computed beforehand."""

    loss: jax.Array
    grad: jax.Array

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return self.loss, self.grad


@partial(jax.jit, static_argnames=("settings", "axis", "loop_mesh"), donate_argnums=(0,))
def _advance_chunk(state, phi, mask, lr, eps, max_iters, settings, axis, loop_mesh=None):
    """`settings.record_every` iterations of `step` on every configuration.

    The same as vmapping `advance(..., n_records=1)`, with the loop over iterations outside
    the vmap, so the state keeps its batch on `axis` from one iteration to the next (vmapping
    a loop would move it to the front of the carry). With the batch last (`unrolled`), R and
    ∇R of the whole batch come from `loss_and_grad_unrolled` on the batch-last arrays, and the
    per-configuration `step` only applies them. With a `loop_mesh` (batch first) every device
    runs its own configurations one after another (`shard_map` over the mesh, `lax.map`
    within), with no batched products at all.
    """

    def one(state, phi, mask, lr):
        return step(state, Whitened(phi), mask, lr, eps, max_iters, settings)

    def batch_last(state, phi, mask, lr):
        # `step` broadcasts over trailing batch axes; a vmap would transpose W every step.
        objective = _Evaluated(*loss_and_grad_unrolled(state.W, phi))
        return step(state, objective, mask, lr, eps, max_iters, settings)

    if axis == -1:
        batched = batch_last
    elif loop_mesh is not None:
        batched = lambda *args: lax.map(lambda a: one(*a), args)
    else:
        batched = jax.vmap(one)

    def chunk(state, phi, mask, lr):
        return lax.fori_loop(0, settings.record_every,
                             lambda _, state: batched(state, phi, mask, lr), state)

    if loop_mesh is not None:
        spec = PartitionSpec("cfg")
        # check_vma=False: the layer scans start from constants (eye), replicated by nature.
        chunk = jax.shard_map(chunk, mesh=loop_mesh, in_specs=spec, out_specs=spec,
                              check_vma=False)
    return chunk(state, phi, mask, lr)


def _sharding(mesh, ndim: int, axis: int) -> NamedSharding:
    spec = [None] * ndim
    spec[axis] = "cfg"
    return NamedSharding(mesh, PartitionSpec(*spec))


def _put(x: np.ndarray, mesh, axis: int):
    """Place a host array on the mesh, split along the configuration axis (works multi-host)."""
    x = np.moveaxis(np.asarray(x), 0, axis)
    sharding = _sharding(mesh, x.ndim, axis)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _host(x) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


# ---------------------------------------------------------------------------------------------
# Checkpoints of configurations in flight
# ---------------------------------------------------------------------------------------------


def _state_arrays(state: RunState, axis: int) -> dict[str, np.ndarray]:
    out = {}
    for name in ("W", "step", "loss", "status", "iterations", "blowup"):
        out[name] = np.moveaxis(_host(getattr(state, name)), axis, 0)
    out["key"] = np.moveaxis(_host(jax.random.key_data(state.key)), axis if axis == 0 else -2, 0)
    for i, leaf in enumerate(jax.tree.leaves(state.opt_state)):
        out[f"opt{i}"] = np.moveaxis(_host(leaf), axis, 0)
    return out


def _save_checkpoint(path: str, rows: list[dict], state: RunState, axis: int) -> None:
    arrays = _state_arrays(state, axis)
    keys = np.asarray([repr(config_key(r)) for r in rows])
    buf = io.BytesIO()
    np.savez(buf, config_keys=keys, **{k: v[: len(rows)] for k, v in arrays.items()})
    _store.atomic_write_bytes(path, buf.getvalue())


def _load_checkpoints(folder: str) -> dict[str, dict[str, np.ndarray]]:
    """config-key repr → its saved state arrays, from every checkpoint in `folder`."""
    saved = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.npz"))):
        with np.load(path) as data:
            names = [n for n in data.files if n != "config_keys"]
            arrays = {n: data[n] for n in names}
            for i, k in enumerate(data["config_keys"]):
                saved[str(k)] = {n: a[i] for n, a in arrays.items()}
    return saved


def _restore(state: RunState, rows: list[dict], saved: dict, axis: int) -> RunState:
    hits = [(i, saved[repr(config_key(r))]) for i, r in enumerate(rows)
            if repr(config_key(r)) in saved]
    if not hits:
        return state
    host = {k: np.array(v) for k, v in _state_arrays(state, axis).items()}  # writable copies
    for i, arrays in hits:
        for name, value in arrays.items():
            if name in host and host[name].shape[1:] == value.shape:
                host[name][i] = value
    leaves = [host[f"opt{i}"] for i in range(len(jax.tree.leaves(state.opt_state)))]
    mesh = state.W.sharding.mesh
    put = lambda x: _put(x, mesh, axis)
    key_data = host["key"]
    key = jax.random.wrap_key_data(np.moveaxis(key_data, 0, axis if axis == 0 else -2))
    key = jax.device_put(key, _sharding(mesh, key.ndim, axis))
    opt_state = jax.tree.unflatten(jax.tree.structure(state.opt_state), [put(x) for x in leaves])
    return RunState(put(host["W"]), opt_state, put(host["step"]), put(host["loss"]),
                    put(host["status"]), put(host["iterations"]), put(host["blowup"]), key)


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = self.shown = time.perf_counter()
        self.cfg_steps = 0

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


def _result_row(row: dict, state_host: dict, i: int) -> dict:
    status = int(state_host["status"][i])
    iters = int(state_host["iterations"][i])
    return {**row, "iterations": iters if iters >= 0 else None,
            "final_loss": float(state_host["loss"][i]), "status": STATUS_NAMES[status],
            "steps": int(state_host["step"][i])}


def sweep(grid: Grid, out: str | None = None, *, resume: bool = False, chunk: int = 1000,
          bucket_ratio: float = 1.2, devices=None, max_batch: int | None = None,
          matmul: str = "auto", prefix: str = "sequential", batching: str = "auto",
          dtype=None, progress: bool = False, prune: bool = False) -> list[dict]:
    """Run every configuration of `grid`; return one row dict per configuration (`COLUMNS`).

    With `out`, finished rows are appended to `out/runs.csv` after every chunk and the
    configurations in flight are checkpointed in `out/inflight/`; `resume=True` continues
    from there, recomputing nothing that finished. Diverging configurations are rows with
    status `diverged`, never exceptions.

    `prune=True` is for learning-rate tuning: a configuration still running after more
    iterations than another learning rate of the same (init, target, dim, depth, seed)
    needed to converge cannot be the fastest, so it stops with status `pruned`. The best
    rate per configuration (`best_per_config`) is unchanged; the sweep ends much sooner.

    `batching` says how the configurations of one device share a program when the batch is
    not last (`matmul="dot"`): `"vmap"` (batched products), `"loop"` (one configuration
    after another, `lax.map`) or `"auto"` (loop on CPU from width `LOOP_MIN_DIM`, else vmap).
    """
    grid.check()
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; expected one of {BATCHINGS}")
    dtype = jnp.dtype(dtype or jnp.zeros(()).dtype)
    devices = list(devices or jax.devices())
    mesh = Mesh(np.asarray(devices), ("cfg",))
    n_dev = len(devices)
    configs = grid.configs()
    runs_csv = os.path.join(out, "runs.csv") if out else None
    inflight = os.path.join(out, "inflight") if out else None

    finished: dict[tuple, dict] = {}
    saved = {}
    if out and resume:
        for r in _store.read_csv(runs_csv):
            finished[config_key(r)] = r
        saved = _load_checkpoints(inflight)
    elif out and os.path.exists(runs_csv):
        raise ValueError(f"{out!r} already holds a sweep (runs.csv); pass resume=True "
                         "(--resume) to continue it, or choose another output folder")
    pending = [c for c in configs if config_key(c) not in finished]
    bar = _Progress(len(configs), progress)
    bar.done = len(configs) - len(pending)
    write = out is not None and jax.process_index() == 0

    for dim in sorted({c["dim"] for c in pending}):
        mm = ("unrolled" if dim <= UNROLLED_MAX_DIM else "dot") if matmul == "auto" else matmul
        axis = batch_axis(mm)
        settings = Settings(grid.optimizer, tuple(grid.hyper), mm, prefix, chunk)
        loop = axis == 0 and (batching == "loop" or batching == "auto" and dim >= LOOP_MIN_DIM
                              and devices[0].platform == "cpu")
        of_dim = [c for c in pending if c["dim"] == dim]
        for bucket in depth_buckets([c["depth"] for c in of_dim], bucket_ratio):
            depth = max(bucket)
            rows_all = [c for c in of_dim if c["depth"] in bucket]
            per = bytes_per_config(depth, dim, dtype.itemsize, grid.optimizer)
            cap = max_batch or max(1, memory_budget(devices) * n_dev // per)
            cap = max(n_dev, cap // n_dev * n_dev)
            for start in range(0, len(rows_all), cap):
                rows = rows_all[start:start + cap]
                tag = f"d{dim}-L{depth}-{start}"
                _run_slice(grid, rows, depth, dtype, mesh, axis, settings, saved, bar, tag,
                           finished, runs_csv if write else None,
                           os.path.join(inflight, tag + ".npz") if write else None, prune,
                           mesh if loop else None)
    bar.close()
    return [_as_row(finished[config_key(c)]) for c in configs]


def _as_row(r: dict) -> dict:
    """Normalise a row read back from CSV to the types of a fresh one."""
    iters = r.get("iterations")
    return dict(init=r["init"], target=r["target"], dim=int(r["dim"]), depth=int(r["depth"]),
                seed=int(r["seed"]), lr=float(r["lr"]), optimizer=r["optimizer"],
                iterations=None if iters in (None, "") else int(iters),
                final_loss=float(r["final_loss"]), status=r["status"], steps=int(r["steps"]))


def _tuning_group(row: dict) -> tuple:
    key = config_key(row)
    return key[:5] + key[6:]  # everything but the learning rate


def _fastest(finished: dict) -> dict[tuple, int]:
    """Tuning group → fewest iterations among its converged learning rates so far."""
    best: dict[tuple, int] = {}
    for r in finished.values():
        if r["status"] == "converged":
            g, n = _tuning_group(r), int(r["iterations"])
            best[g] = min(best.get(g, n), n)
    return best


def _stop(state: RunState, stop: np.ndarray, n_padded: int, mesh, axis: int) -> RunState:
    flags = np.zeros(n_padded, bool)
    flags[: len(stop)] = stop
    return state._replace(status=jnp.where(_put(flags, mesh, axis), PRUNED, state.status))


def _run_slice(grid, rows, depth, dtype, mesh, axis, settings, saved, bar, tag, finished,
               runs_csv, checkpoint, prune=False, loop_mesh=None):
    n_dev = mesh.devices.size
    padded = rows + [rows[-1]] * (-len(rows) % n_dev)  # duplicates fill the last device
    host = build_inputs(grid, padded, depth, dtype)
    W, phi, mask, lr = (_put(host[k], mesh, axis) for k in ("W", "phi", "mask", "lr"))
    state = _init_states(W, phi, lr, settings, axis)
    state = _restore(state, padded, saved, axis)
    eps = jnp.asarray(grid.eps, dtype)
    max_iters = jnp.asarray(grid.max_iters, jnp.int32)
    reported = np.zeros(len(rows), bool)
    cfg_steps = 0
    while True:
        status = np.moveaxis(_host(state.status), axis, 0)[: len(rows)]
        done = status != RUNNING
        new = done & ~reported
        if new.any():
            state_host = {k: np.moveaxis(_host(getattr(state, k)), axis, 0)
                          for k in ("status", "iterations", "loss", "step")}
            new_rows = [_result_row(rows[i], state_host, i) for i in np.flatnonzero(new)]
            for r in new_rows:
                finished[config_key(r)] = r
            if runs_csv:
                _store.append_csv(runs_csv, new_rows, COLUMNS)
            reported |= new
        bar.update(int(new.sum()), cfg_steps, tag)
        cfg_steps = 0
        if done.all():
            break
        if prune:
            fastest = _fastest(finished)
            steps = np.moveaxis(_host(state.step), axis, 0)[: len(rows)]
            stop = ~done & np.asarray([steps[i] > fastest.get(_tuning_group(r), np.inf)
                                       for i, r in enumerate(rows)])
            if stop.any():  # they cannot beat a rate that already converged: report them
                state = _stop(state, stop, len(padded), mesh, axis)
                continue
        state = _advance_chunk(state, phi, mask, lr, eps, max_iters, settings, axis,
                               loop_mesh)
        cfg_steps = settings.record_every * int((~done).sum())
        if checkpoint:
            _save_checkpoint(checkpoint, padded, state, axis)
    if checkpoint and os.path.exists(checkpoint):
        os.unlink(checkpoint)


# ---------------------------------------------------------------------------------------------
# Learning-rate tuning
# ---------------------------------------------------------------------------------------------


def best_per_config(rows: list[dict]) -> list[dict]:
    """For each (init, target, dim, depth, seed, optimizer): the fastest converging learning
    rate (ties: the larger η); if none converged, the lowest final loss among the rest."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        k = tuple(r[c] for c in KEY_COLUMNS if c != "lr")
        groups.setdefault(k, []).append(r)

    def rank(r):
        if r["status"] == "converged":
            return (0, r["iterations"], -r["lr"])
        loss = r["final_loss"]
        return (1, loss if math.isfinite(loss) and r["status"] != "diverged" else math.inf,
                -r["lr"])

    return [min(g, key=rank) for g in groups.values()]


def lr_grid(lo: float = 2.0**-14, hi: float = 1.0, per_octave: int = 2) -> list[float]:
    """Log-spaced learning rates from `lo` to `hi`, `per_octave` per factor of two."""
    n = round(math.log2(hi / lo) * per_octave)
    return [float(lo * 2.0 ** (i / per_octave)) for i in range(n + 1)]
