"""The engines a sweep batches: the full network (`full`) and the exact mode reduction from
ZAS (`modes`, see `zasjax._modes`). The driver does not care which: an engine plans its
slices, builds a slice's initial state and chunk program, and moves states to and from the
host (configurations first) for checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from .. import _modes
from .._inits import depth_coef
from .._objectives import objective_class
from .._run import RunState, Settings
from ._distributed import put, sharding, to_host
from ._grid import COUNT_AXES, Grid
from ._plan import LOOP_MIN_DIM, Class, Slice, classes
from ._programs import (
    Spec,
    advance_chunk,
    batch_axis,
    final_end_to_end,
    measure,
    modes as modes_of,
    start,
    targets as draw_targets,
    until_finished,
)

#: Below this width the unrolled multiply-add formulation with the batch as the last axis
#: beats batched dot products (measured by `zasjax bench`).
UNROLLED_MAX_DIM = 8

BATCHINGS = ("auto", "vmap", "loop")


@dataclass
class Prepared:
    """A slice ready to run: its state, one chunk of iterations as `advance(state)`, and
    `measure(state)`: the objective's measures of every configuration, and
    `end_to_end(state)`: every configuration's end-to-end matrix (`--save end-to-end`)."""

    state: object
    advance: Callable
    measure: Callable | None = None
    end_to_end: Callable | None = None  # the final end-to-end matrices, batch first
    modes: Callable | None = None       # every configuration's modes, batch first


def replicated(x, mesh) -> jax.Array:
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, PartitionSpec()),
                                        lambda idx: x[idx])


def _seed_and_target_inputs(grid: Grid, rows: list[dict], dtype, dim: int):
    matrix = np.zeros((dim, dim), dtype) if grid.target_matrix is None else \
        np.asarray(grid.target_matrix, dtype)
    return (np.asarray([r["seed"] for r in rows], np.uint32),
            np.asarray([r["depth"] for r in rows], np.int32),
            np.asarray([grid.targets.index(r["target"]) for r in rows], np.int32),
            np.asarray([r["lr"] for r in rows], dtype), matrix)


def _scales_and_observations(rows: list[dict], dtype):
    return (np.asarray([np.nan if r["init_scale"] is None else r["init_scale"] for r in rows],
                       dtype),
            np.asarray([r["observations"] or 0 for r in rows], np.int32))


# ---------------------------------------------------------------------------------------------
# The full network
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FullEngine:
    """Every layer of every configuration, padded to its class's capacity (`_programs`)."""

    matmul: str = "auto"
    prefix: str = "sequential"
    batching: str = "auto"
    objective: str | type = "whitened"  # `Grid.objective`: its layouts pick the matmul
    name: str = "full"

    def check(self, grid: Grid) -> None:
        cls = grid.objective_class
        if self.matmul != "auto" and self.matmul not in cls.layouts:
            raise ValueError(f"matmul {self.matmul!r} is not a layout of objective "
                             f"{cls.label()}; it supports {list(cls.layouts)}")

    def plan(self, grid: Grid, ratio, n_dev, budget, dtype, max_batch) -> list[Class]:
        return classes(grid.index, ratio, n_dev, budget, dtype.itemsize, grid.optimizer,
                       max_batch)

    def _matmul(self, dim: int) -> str:
        if self.matmul != "auto":
            return self.matmul
        layouts = objective_class(self.objective).layouts
        return "unrolled" if dim <= UNROLLED_MAX_DIM and "unrolled" in layouts else "dot"

    def shared(self, grid: Grid, dim: int, chunk: int, mesh) -> bool:
        """Whether the slice holds the grid's fixed data once (batch first, batched)."""
        _, axis, loop_mesh = self.layout(dim, chunk, grid, mesh)
        return grid.data is not None and axis == 0 and loop_mesh is None

    def layout(self, dim: int, chunk: int, grid: Grid, mesh) -> tuple[Settings, int, object]:
        mm = self._matmul(dim)
        axis = batch_axis(mm)
        settings = Settings(grid.optimizer, tuple(grid.hyper), mm, self.prefix, chunk)
        # (a diagonal network's step is elementwise: batched, never one by one)
        loop = axis == 0 and grid.parametrization.makes == "matrix" and (
            self.batching == "loop" or self.batching == "auto" and dim >= LOOP_MIN_DIM and
            mesh.devices.flat[0].platform == "cpu")
        return settings, axis, mesh if loop else None

    def initial(self, grid: Grid, sl: Slice, rows: list[dict], dtype, mesh, chunk: int):
        """(state, objectives, mask, lr) of `rows` (padded to the batch) on the mesh."""
        settings, axis, _ = self.layout(sl.dim, chunk, grid, mesh)
        cls = grid.objective_class
        static = () if grid.data is not None else \
            tuple((f"most_{a}", max(grid.observations)) for a in cls.axes
                  if a in COUNT_AXES) + tuple((o, getattr(grid, o)) for o in cls.options)
        model = grid.parametrization
        spec = Spec(tuple(grid.inits), tuple(grid.targets), sl.dim, sl.capacity,
                    grid.init_scale is not None, dtype.name, settings, axis, mesh,
                    cls, model, grid.target_rank, static,
                    self.shared(grid, sl.dim, chunk, mesh))
        seeds, depths, targets, lr, matrix = _seed_and_target_inputs(grid, rows, dtype, sl.dim)
        scales, observations = _scales_and_observations(rows, dtype)
        coefs = np.asarray([depth_coef(r["init"], r["dim"], r["depth"], r["init_scale"])
                            if model.inits is None else 0.0 for r in rows], dtype)
        inits = np.asarray([grid.inits.index(r["init"]) for r in rows], np.int32)
        fixed = grid.fixed_objective(dtype)
        if fixed is not None:
            fixed = jax.tree.map(lambda x: replicated(x, mesh), fixed)
        return _start(*(put(x, mesh, 0) for x in (seeds, depths, coefs, scales, observations,
                                                  inits, targets, lr)),
                      replicated(matrix, mesh), fixed, spec=spec)

    def start(self, grid: Grid, sl: Slice, rows: list[dict], dtype, mesh, chunk: int
              ) -> Prepared:
        settings, axis, loop_mesh = self.layout(sl.dim, chunk, grid, mesh)
        state, data, mask, lr = self.initial(grid, sl, rows, dtype, mesh, chunk)
        eps = replicated(np.asarray(grid.eps, dtype), mesh)
        max_iters = replicated(np.int32(grid.max_iters), mesh)
        active = replicated(np.int32(sl.active), mesh)
        model = grid.parametrization
        shared = self.shared(grid, sl.dim, chunk, mesh)
        first = lambda W: W if axis == 0 else jnp.moveaxis(W, -1, 0)
        measure = None if not grid.objective_class.measures else \
            (lambda state: _measure(state.W, data, model, shared))
        return Prepared(state, lambda state: _advance(
            state, data, mask, lr, active, eps, max_iters, settings, axis, loop_mesh, model,
            shared),
            measure, lambda state: _final_end_to_end(first(state.W), model),
            lambda state: modes_of(first(state.W), model))

    def to_host(self, state: RunState, dim: int) -> dict[str, np.ndarray]:
        axis = self._axis(dim)
        out = {"W": to_host(state.W, axis), "key": to_host(jax.random.key_data(state.key))}
        for name in _COUNTERS:
            out[name] = to_host(getattr(state, name))
        for i, leaf in enumerate(jax.tree.leaves(state.opt_state)):
            out[f"opt{i}"] = to_host(leaf, axis if np.ndim(leaf) > 1 else 0)
        return out

    def from_host(self, host: dict, template: RunState, dim: int, mesh) -> RunState:
        axis = self._axis(dim)
        leaves = [put(host[f"opt{i}"], mesh, axis if host[f"opt{i}"].ndim > 1 else 0)
                  for i in range(len(jax.tree.leaves(template.opt_state)))]
        opt_state = jax.tree.unflatten(jax.tree.structure(template.opt_state), leaves)
        # Placed as raw data first: each process builds only its own shards (multi-host).
        key = jax.random.wrap_key_data(put(host["key"], mesh, 0))
        return RunState(put(host["W"], mesh, axis), opt_state,
                        *(put(host[n], mesh, 0) for n in _COUNTERS), key)

    @staticmethod
    def restore_row(host: dict, i: int, old: dict, depth: int) -> bool:
        """Copy a saved configuration into row `i`: layers 1..depth of W and of W-shaped
        optimiser state (the padding above stays identity / 0, as it would), the rest whole.
        False (and nothing copied) if it does not fit."""
        W = host["W"]
        if W.shape[2:] != old["W"].shape[1:] or W.shape[1] < depth or set(old) != set(host):
            return False
        for name, value in old.items():
            dst = host[name]
            if dst[i].shape == value.shape:
                continue
            if not (dst.ndim > 1 and dst.shape[2:] == value.shape[1:] and dst.shape[1] >= depth):
                return False
        for name, value in old.items():
            if host[name][i].shape == value.shape:
                host[name][i] = value
            else:  # the layers above `depth` keep their padding
                host[name][i, :depth] = value[:depth]
        return True

    def _axis(self, dim: int) -> int:
        return batch_axis(self._matmul(dim))


_COUNTERS = ("step", "loss", "status", "iterations", "blowup")


# ---------------------------------------------------------------------------------------------
# The exact mode reduction from ZAS
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("targets", "dim", "dtype", "mesh", "rank"))
def start_modes(seeds, depths, target_index, lr, target_matrix, targets, dim, dtype, mesh,
                rank=1):
    """The ZAS mode state (a = 1, b = 0) of every configuration, batch last: `a, b, s:
    (d, B)`, counters `(B,)`; Φ drawn exactly as the full engine draws it."""
    dtype = jnp.dtype(dtype)
    phi = draw_targets(seeds, target_index, target_matrix, targets, dim, dtype, rank)
    s = jax.vmap(lambda p: _modes.mode_svd(p)[1])(phi).T
    depth = depths.astype(dtype)
    state = _modes.init_state(s, depth)
    place = lambda x: lax.with_sharding_constraint(x, sharding(mesh, x.ndim, x.ndim - 1))
    return jax.tree.map(place, state), place(s), place(depth), place(lr.astype(dtype))


@partial(jax.jit, static_argnames=("chunk",), donate_argnums=(0,))
def advance_modes(state, s, depth, lr, eps, max_iters, chunk):
    """Up to `chunk` mode iterations of every configuration; stops once all have finished."""
    return until_finished(lambda st: _modes.step(st, s, depth, lr, eps, max_iters), state,
                          chunk)


_start = start
_advance = advance_chunk
_measure = measure
_final_end_to_end = final_end_to_end
_start_modes = start_modes
_advance_modes = advance_modes


@dataclass(frozen=True)
class ModesEngine:
    """GD from ZAS as d scalar pairs per configuration: O(d) a step at any depth."""

    name: str = "modes"

    def check(self, grid: Grid) -> None:
        problems = []
        if set(grid.inits) != {"zas"}:
            problems.append(f"init {', '.join(i for i in grid.inits if i != 'zas')}")
        if grid.optimizer != "gd":
            problems.append(f"optimizer {grid.optimizer}")
        if grid.objective != "whitened" or grid.data is not None:
            problems.append(f"objective {grid.objective_class.label()}"
                            + (" from data" if grid.data is not None else ""))
        if grid.init_scale is not None:
            problems.append("an init scale")
        if grid.model != "dense":
            problems.append(f"model {grid.model}")
        if problems:
            raise ValueError(f"engine 'modes' is exact only for plain GD from ZAS on the "
                             f"whitened loss; it cannot run {' and '.join(problems)} "
                             "(use --engine full)")

    def plan(self, grid: Grid, ratio, n_dev, budget, dtype, max_batch) -> list[Class]:
        return classes(grid.index, ratio, n_dev, budget, dtype.itemsize, grid.optimizer,
                       max_batch, modes=True)

    def start(self, grid: Grid, sl: Slice, rows: list[dict], dtype, mesh, chunk: int
              ) -> Prepared:
        seeds, depths, targets, lr, matrix = _seed_and_target_inputs(grid, rows, dtype, sl.dim)
        state, s, depth, lr = _start_modes(
            *(put(x, mesh, 0) for x in (seeds, depths, targets, lr)), replicated(matrix, mesh),
            targets=tuple(grid.targets), dim=sl.dim, dtype=dtype.name, mesh=mesh,
            rank=grid.target_rank)
        eps = replicated(np.asarray(grid.eps, dtype), mesh)
        max_iters = replicated(np.int32(grid.max_iters), mesh)
        return Prepared(state, lambda state: _advance_modes(state, s, depth, lr, eps,
                                                            max_iters, chunk))

    def to_host(self, state, dim: int) -> dict[str, np.ndarray]:
        return {name: to_host(value, value.ndim - 1)
                for name, value in state._asdict().items()}

    def from_host(self, host: dict, template, dim: int, mesh):
        return type(template)(**{name: put(host[name], mesh, host[name].ndim - 1)
                                 for name in template._fields})

    @staticmethod
    def restore_row(host: dict, i: int, old: dict, depth: int) -> bool:
        if set(old) != set(host) or any(host[n][i].shape != v.shape for n, v in old.items()):
            return False
        for name, value in old.items():
            host[name][i] = value
        return True


ENGINES = {"full": FullEngine, "modes": ModesEngine}

