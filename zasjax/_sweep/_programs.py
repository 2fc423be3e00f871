"""The compiled programs of a slice, each built once per (width, capacity, batch size):

- `start`: initial weights, masks, objectives (targets, observed entries or measurements)
  and the initial run state of every configuration, drawn on the device from seeds,
  depths, observation counts and init scales given as data;
- `advance_chunk`: `record_every` iterations of `_run.step` on every configuration;
- `measure`: what the objective measures of each final end-to-end matrix.

Seed s draws its initialisation from fold_in(key(s), 0), its target from fold_in(key(s), 1)
and its objective's own data (observed entries, measurement matrices: `Objective.draw`)
from fold_in(key(s), 2): the same seed gives the same Φ at every depth, init and
observation count, and the same observations at every depth and init.

The engine asks two protocols and never a name: the parametrization (`spec.model`,
`_models`) for the parameters, the end-to-end matrix and the pullback; the objective
(`spec.objective`, `_objectives.Objective`) for its draw, its head and its measures.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._models import Dense, OnModel
from .._network import end_to_end_loss_and_grad_unrolled
from .._objectives import Whitened
from .._run import RUNNING, Settings, init_state, step
from .._targets import low_rank_target, make_target
from ._distributed import sharding
from ._grid import FILE_TARGET, LOW_RANK, PLANTED


def batch_axis(matmul: str) -> int:
    # Tiny matrices are vectorised across the batch, which XLA does best when it is minor.
    return -1 if matmul == "unrolled" else 0


class Spec(NamedTuple):
    """Everything static about a slice's programs (it picks the compiled program)."""

    inits: tuple[str, ...]
    targets: tuple[str, ...]
    dim: int
    capacity: int
    scaled: bool            # init scales given (as data), or each init's default
    dtype: str
    settings: Settings
    axis: int
    mesh: Mesh
    objective: type = Whitened  # an `Objective` subclass
    model: object = Dense()     # a parametrization (`_models`)
    rank: int = 1           # of the low-rank target
    static: tuple = ()      # (name, value) keywords of `objective.draw`: most_<count>, options
    shared: bool = False    # the grid's fixed data held once, not per configuration


def select(index, options):
    # options: one stacked array per name; index picks one per configuration.
    if len(options) == 1:
        return options[0]
    stacked = jnp.stack(options)
    return jnp.take_along_axis(stacked, index.reshape(1, -1, *(1,) * (stacked.ndim - 2)),
                               axis=0)[0]


def targets(seeds, target_index, target_matrix, names, dim: int, dtype, rank: int = 1):
    """Φ of every configuration, `(B, dim, dim)`: seed s draws from fold_in(key(s), 1).
    (An objective on vectors that plants its own truth gets zeros `(B, dim)`.)"""
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 1))(seeds)
    if names == (PLANTED,):
        return jnp.zeros((len(seeds), dim), dtype)

    def draw(name):
        if name == FILE_TARGET:
            return jnp.broadcast_to(target_matrix.astype(dtype), (len(seeds), dim, dim))
        if name == LOW_RANK:
            return jax.vmap(lambda k: low_rank_target(k, (dim, dim), rank, dtype=dtype))(keys)
        return jax.vmap(lambda k: make_target(name, k, (dim, dim), dtype))(keys)

    return select(target_index, [draw(name) for name in names])


def draw_objectives(seeds, phi, axes: dict, fixed, spec: Spec):
    """Every configuration's objective, batched on the first axis: the grid's fixed data
    (`fixed`, broadcast) or `spec.objective.draw` from fold_in(key(s), 2), Φ, the axes
    the objective reads (`axes`: name → `(B,)`) and its static keywords
    (`Objective.draw`)."""
    if fixed is not None:
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (len(seeds), *x.shape)), fixed)
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 2))(seeds)
    names = spec.objective.axes
    draw = lambda k, p, *values: spec.objective.draw(
        k, p, **dict(zip(names, values)), **dict(spec.static))
    return jax.vmap(draw)(keys, phi, *(axes[a] for a in names))


@partial(jax.jit, static_argnames=("spec",))
def start(seeds, depths, coefs, scales, observations, init_index, target_index, lr,
          target_matrix, fixed, spec: Spec):
    """Initial state, objectives, masks and learning rates of a slice, on the mesh.

    `seeds, depths, coefs, scales, observations, init_index, target_index, lr: (B,)`: per
    configuration (`coefs` from `depth_coef`, `scales` the init scales when `spec.scaled`,
    the indices into `spec.inits`/`spec.targets`); `target_matrix`: `(D, D)` for the file
    target (zeros otherwise); `fixed`: the grid's objective when its data are given
    (`Grid.data`, the same for every configuration), else None.
    """
    D, C, dtype = spec.dim, spec.capacity, jnp.dtype(spec.dtype)
    keys = jax.vmap(jax.random.key)(seeds)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    scales = scales.astype(dtype) if spec.scaled else jnp.full(len(seeds), jnp.nan, dtype)
    W = select(init_index, [
        jax.vmap(lambda k, L, c, x, name=name: spec.model.init(
            name, k, D, L, C, c, x if spec.scaled else None, dtype))(
                init_keys, depths, coefs, scales)
        for name in spec.inits])
    mask = (jnp.arange(C, dtype=depths.dtype)[None, :] < depths[:, None]).astype(dtype)
    mask = mask[..., None, None]
    lr = lr.astype(dtype)
    place = lambda x: lax.with_sharding_constraint(x, sharding(spec.mesh, x.ndim, _axis(x, spec)))
    if spec.shared:  # one copy of the grid's data: every configuration reads it
        data = jax.tree.map(lambda x: lax.with_sharding_constraint(
            x, NamedSharding(spec.mesh, PartitionSpec())), fixed)
        state = jax.vmap(lambda W, lr: init_state(W, _LossOnly(data, spec.model), lr,
                                                  spec.settings), out_axes=spec.axis)(W, lr)
        inputs = jax.tree.map(lambda x: jnp.moveaxis(x, 0, spec.axis), (mask, lr))
        return jax.tree.map(place, state), data, *jax.tree.map(place, inputs)
    phi = targets(seeds, target_index, target_matrix, spec.targets, D, dtype, spec.rank)
    axes = {"observations": observations, "samples": observations, "init_scale": scales,
            "depth": depths}
    data = draw_objectives(seeds, phi, axes, fixed, spec)
    state = jax.vmap(lambda W, data, lr: init_state(W, _LossOnly(data, spec.model), lr,
                                                    spec.settings),
                     out_axes=spec.axis)(W, data, lr)
    inputs = jax.tree.map(lambda x: jnp.moveaxis(x, 0, spec.axis), (data, mask, lr))
    return jax.tree.map(place, state), *jax.tree.map(place, inputs)


def _axis(x, spec: Spec) -> int:
    # Per-configuration scalars and keys have one axis: the batch; vectors of measurements
    # (B, m) keep it first too.
    return 0 if x.ndim <= 2 else spec.axis


@partial(jax.jit, static_argnames=("model", "shared"))
def measure(W, objective, model=Dense(), shared=False):
    """`objective.measure` of every configuration's end-to-end matrix, `(B,)` each (batch
    first, as every objective but the whitened loss runs; `shared`: one objective for
    all)."""
    return jax.vmap(lambda W, o: o.measure(model.end_to_end(W)),
                    in_axes=(0, None if shared else 0))(W, objective)


@partial(jax.jit, static_argnames=("model",))
def final_end_to_end(W, model=Dense()):
    """Every configuration's end-to-end matrix, `(B, D, D)` (batch first)."""
    return jax.vmap(model.end_to_end)(W)


@partial(jax.jit, static_argnames=("model",))
def modes(W, model=Dense()):
    """Every configuration's modes (`Parametrization.modes`), `(B, k)` (batch first)."""
    return jax.vmap(model.modes)(W)


#: Iterations between two checks whether every configuration of a slice has finished: the
#: check reduces over all devices (over the network, with several processes).
CHECK_EVERY = 16


def until_finished(step_fn, state, n: int):
    """Up to `n` applications of `step_fn` to a batched state, stopping (at the next multiple
    of `CHECK_EVERY`) once no configuration is running: finished ones would only idle, and
    `step_fn` leaves them unchanged, so where it stops does not change any result."""
    def going(carry):
        i, st = carry
        return (i < n) & jnp.any(st.status == RUNNING)

    def block(carry):
        i, st = carry
        k = jnp.minimum(CHECK_EVERY, n - i)
        return i + k, lax.fori_loop(0, k, lambda _, st: step_fn(st), st)

    return lax.while_loop(going, block, (jnp.zeros((), jnp.int32), state))[1]


class _LossOnly(eqx.Module):
    """R(W) alone, for the initial state (which keeps no gradient): a smaller program."""

    objective: eqx.Module
    model: object = eqx.field(static=True, default=Dense())

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return self.objective.head(self.model.end_to_end(W))[0], None


class _Evaluated(eqx.Module):
    """An objective whose value and gradient at the current W were computed beforehand."""

    loss: jax.Array
    grad: jax.Array

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return self.loss, self.grad


@partial(jax.jit, static_argnames=("settings", "axis", "loop_mesh", "model", "shared"),
         donate_argnums=(0,))
def advance_chunk(state, data, mask, lr, active, eps, max_iters, settings, axis,
                  loop_mesh=None, model=Dense(), shared=False):
    """Up to `settings.record_every` iterations of `step` on every configuration (fewer
    once all of them have finished).

    The same as vmapping `advance(..., n_records=1)`, with the loop over iterations outside
    the vmap, so the state keeps its batch on `axis` from one iteration to the next (vmapping
    a loop would move it to the front of the carry). With the batch last (`unrolled`), R and
    ∇R of the whole batch come from `end_to_end_loss_and_grad_unrolled` on the batch-last
    arrays (the objective's `head` broadcasts over them), and the
    per-configuration `step` only applies them. With a `loop_mesh` (batch first) every device
    runs its own configurations one after another (`shard_map` over the mesh, `lax.map`
    within), with no batched products at all. `active` (data): the deepest layer of any
    configuration here; the layer loops stop there. `shared` (batch first, no loop mesh):
    `data` is one objective that every configuration reads (the grid's fixed data), so a
    product with its data is one product with the stacked configurations.
    """

    def one(state, data, mask, lr, active):
        return step(state, OnModel(data, model, active), mask, lr, eps, max_iters, settings)

    def batch_last(state, data, mask, lr, active):
        # `step` broadcasts over trailing batch axes; a vmap would transpose W every step.
        # (Batch last is the whitened loss's layout: the other objectives run batch first.)
        evaluated = _Evaluated(*end_to_end_loss_and_grad_unrolled(state.W, data.head, active))
        return step(state, evaluated, mask, lr, eps, max_iters, settings)

    if axis == -1:
        batched = batch_last
    elif loop_mesh is not None:
        batched = lambda *args, active: lax.map(lambda a: one(*a, active), args)
    else:
        batched = lambda *args, active: jax.vmap(
            partial(one, active=active), in_axes=(0, None if shared else 0, 0, 0))(*args)

    def chunk(state, data, mask, lr, active):
        return until_finished(lambda st: batched(st, data, mask, lr, active=active),
                              state, settings.record_every)

    if loop_mesh is not None:
        spec = PartitionSpec("cfg")
        # check_vma=False: the layer scans start from constants (eye), replicated by nature.
        chunk = jax.shard_map(chunk, mesh=loop_mesh, in_specs=(spec,) * 4 + (PartitionSpec(),),
                              out_specs=spec, check_vma=False)
    return chunk(state, data, mask, lr, active)
