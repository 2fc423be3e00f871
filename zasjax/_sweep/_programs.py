"""The two compiled programs of a slice, each built once per (width, capacity, batch size):

- `start`: initial weights, masks, targets and the initial run state of every configuration,
  drawn on the device from seeds and depths given as data;
- `advance_chunk`: `record_every` iterations of `_run.step` on every configuration.

Seed s draws its initialisation from fold_in(key(s), 0) and its target from
fold_in(key(s), 1): the same seed gives the same Φ at every depth and init.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from .._inits import uniform_init
from .._network import loss_and_grad_unrolled, whitened_loss
from .._run import RUNNING, Settings, Whitened, init_state, step
from .._targets import make_target
from ._distributed import sharding
from ._grid import FILE_TARGET


def batch_axis(matmul: str) -> int:
    # Tiny matrices are vectorised across the batch, which XLA does best when it is minor.
    return -1 if matmul == "unrolled" else 0


class Spec(NamedTuple):
    """Everything static about a slice's programs (it picks the compiled program)."""

    inits: tuple[str, ...]
    targets: tuple[str, ...]
    dim: int
    capacity: int
    scale: float | None
    dtype: str
    settings: Settings
    axis: int
    mesh: Mesh


def select(index, options):
    # options: one stacked array per name; index picks one per configuration.
    if len(options) == 1:
        return options[0]
    stacked = jnp.stack(options)
    return jnp.take_along_axis(stacked, index.reshape(1, -1, *(1,) * (stacked.ndim - 2)),
                               axis=0)[0]


@partial(jax.jit, static_argnames=("spec",))
def start(seeds, depths, coefs, init_index, target_index, lr, target_matrix, spec: Spec):
    """Initial state, targets, masks and learning rates of a slice, on the mesh.

    `seeds, depths, coefs, init_index, target_index, lr: (B,)`: per configuration (`coefs`
    from `depth_coef`, the indices into `spec.inits`/`spec.targets`); `target_matrix`:
    `(D, D)` for the file target (zeros otherwise).
    """
    D, C, dtype = spec.dim, spec.capacity, jnp.dtype(spec.dtype)
    keys = jax.vmap(jax.random.key)(seeds)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    target_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    W = select(init_index, [
        jax.vmap(lambda k, L, c, name=name: uniform_init(name, k, D, L, C, c, spec.scale,
                                                           dtype))(init_keys, depths, coefs)
        for name in spec.inits])
    phi = select(target_index, [
        jnp.broadcast_to(target_matrix.astype(dtype), (len(seeds), D, D)) if name == FILE_TARGET
        else jax.vmap(lambda k, name=name: make_target(name, k, (D, D), dtype))(target_keys)
        for name in spec.targets])
    mask = (jnp.arange(C, dtype=depths.dtype)[None, :] < depths[:, None]).astype(dtype)
    mask = mask[..., None, None]
    lr = lr.astype(dtype)
    state = jax.vmap(lambda W, phi, lr: init_state(W, _LossOnly(phi), lr, spec.settings),
                     out_axes=spec.axis)(W, phi, lr)
    inputs = tuple(jnp.moveaxis(x, 0, spec.axis) for x in (phi, mask, lr))
    place = lambda x: lax.with_sharding_constraint(x, sharding(spec.mesh, x.ndim, _axis(x, spec)))
    return jax.tree.map(place, state), *map(place, inputs)


def _axis(x, spec: Spec) -> int:
    # Per-configuration scalars and keys have one axis: the batch.
    return 0 if x.ndim == 1 else spec.axis


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

    phi: jax.Array

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return whitened_loss(W, self.phi), None


class _Evaluated(eqx.Module):
    """An objective whose value and gradient at the current W were computed beforehand."""

    loss: jax.Array
    grad: jax.Array

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return self.loss, self.grad


@partial(jax.jit, static_argnames=("settings", "axis", "loop_mesh"), donate_argnums=(0,))
def advance_chunk(state, phi, mask, lr, active, eps, max_iters, settings, axis, loop_mesh=None):
    """Up to `settings.record_every` iterations of `step` on every configuration (fewer
    once all of them have finished).

    The same as vmapping `advance(..., n_records=1)`, with the loop over iterations outside
    the vmap, so the state keeps its batch on `axis` from one iteration to the next (vmapping
    a loop would move it to the front of the carry). With the batch last (`unrolled`), R and
    ∇R of the whole batch come from `loss_and_grad_unrolled` on the batch-last arrays, and the
    per-configuration `step` only applies them. With a `loop_mesh` (batch first) every device
    runs its own configurations one after another (`shard_map` over the mesh, `lax.map`
    within), with no batched products at all. `active` (data): the deepest layer of any
    configuration here; the layer loops stop there.
    """

    def one(state, phi, mask, lr, active):
        return step(state, Whitened(phi, active), mask, lr, eps, max_iters, settings)

    def batch_last(state, phi, mask, lr, active):
        # `step` broadcasts over trailing batch axes; a vmap would transpose W every step.
        objective = _Evaluated(*loss_and_grad_unrolled(state.W, phi, active))
        return step(state, objective, mask, lr, eps, max_iters, settings)

    if axis == -1:
        batched = batch_last
    elif loop_mesh is not None:
        batched = lambda *args, active: lax.map(lambda a: one(*a, active), args)
    else:
        batched = lambda *args, active: jax.vmap(partial(one, active=active))(*args)

    def chunk(state, phi, mask, lr, active):
        return until_finished(lambda st: batched(st, phi, mask, lr, active=active), state,
                              settings.record_every)

    if loop_mesh is not None:
        spec = PartitionSpec("cfg")
        # check_vma=False: the layer scans start from constants (eye), replicated by nature.
        chunk = jax.shard_map(chunk, mesh=loop_mesh, in_specs=(spec,) * 4 + (PartitionSpec(),),
                              out_specs=spec, check_vma=False)
    return chunk(state, phi, mask, lr, active)
