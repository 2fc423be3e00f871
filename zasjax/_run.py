"""One gradient-descent run on one network: a pure state machine stepped by `lax.scan`.

Each iteration t evaluates R(W_t) and ∇R(W_t), records whether R(W_t) ≤ ε (then
iterations-to-ε = t), flags divergence (non-finite or exploding loss), and applies the update
only while the run is still going; a finished configuration freezes, so inside a vmapped batch
one diverging learning rate never disturbs, or crashes, the others.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _status
from ._models import OnModel, as_model, check_fits, check_params
from ._network import check_prefix, get_matmul

# The objectives live in `_objectives`; re-exported here, where callers have imported them.
from ._objectives import (
    Completion,
    Regression,
    Sensing,
    Whitened,
    as_objective,
    check_width,
    is_objective,
)
from ._optimizers import OPTIMIZERS, check_optimizer, make_optimizer

# The status codes live in `_status`; re-exported here because the sweep imports them from
# `_run` (PRUNED is set only by a sweep tuning the learning rate).
from ._status import CONVERGED, DIVERGED, MAX_ITERS, PRUNED, RUNNING, STATUS_NAMES

#: A loss this many times max(R(0), 1) counts as diverged even while still finite.
DIVERGENCE_FACTOR = 1e10


# ---------------------------------------------------------------------------------------------
# State and result
# ---------------------------------------------------------------------------------------------


class RunState(NamedTuple):
    W: jax.Array            # (L, D, D) current weights W_t
    opt_state: Any          # optax state (empty for plain GD)
    step: jax.Array         # t: update steps applied so far
    loss: jax.Array         # R(W_t) at the last evaluation
    status: jax.Array       # RUNNING / CONVERGED / DIVERGED / MAX_ITERS
    iterations: jax.Array   # first t with R(W_t) ≤ ε, −1 if none yet
    blowup: jax.Array       # loss above which the run counts as diverged
    key: jax.Array          # PRNG key for minibatches


class RunResult(NamedTuple):
    """Outcome of a run (or, under vmap, of a batch of runs: every field gains a batch axis).

    `losses[j]` is R at iteration j·record_every while the run was still going, NaN after.
    `iterations` is the number of updates after which R ≤ ε first held (0 if R(W_0) ≤ ε),
    −1 if never. `status` is one of CONVERGED, DIVERGED, MAX_ITERS (codes of
    `_status.STATUS`; `_status.name` gives the written name).
    """

    W: jax.Array
    losses: jax.Array
    status: jax.Array
    iterations: jax.Array
    final_loss: jax.Array
    steps: jax.Array

    converged = _status.converged
    diverged = _status.diverged


class Settings(NamedTuple):
    """Static choices: they pick the compiled program, so they are not swept by vmap."""

    optimizer: str = "gd"
    hyper: tuple = ()           # optimiser hyper-parameters as sorted (name, value) pairs
    matmul: str = "dot"
    prefix: str = "sequential"
    record_every: int = 1


def _optimizer(settings: Settings, lr):
    return make_optimizer(settings.optimizer, lr, dict(settings.hyper))


def init_state(W0, objective, lr, settings: Settings = Settings(), key=None) -> RunState:
    """The state before the first iteration."""
    key = jax.random.key(0) if key is None else key
    matmul = get_matmul(settings.matmul)
    loss0, _ = objective.value_and_grad(W0, key, matmul, settings.prefix)
    opt_state = () if settings.optimizer == "gd" else _optimizer(settings, lr).init(W0)
    int_ = jnp.int32
    return RunState(W0, opt_state, jnp.zeros((), int_), loss0, jnp.asarray(RUNNING, int_),
                    jnp.asarray(-1, int_), DIVERGENCE_FACTOR * jnp.maximum(loss0, 1.0), key)


def _split(key):
    # One key per configuration; a batch of keys (trailing batch axes, see `step`) splits each.
    if key.ndim == 0:
        return jax.random.split(key)
    keys = jax.vmap(jax.random.split)(key.reshape(-1))
    return keys[:, 0].reshape(key.shape), keys[:, 1].reshape(key.shape)


def next_status(status, iterations, step, loss, blowup, eps, max_iters):
    """The status after evaluating R(W_t) = `loss` at update count t = `step`.

    A running configuration converges when R ≤ ε (iterations-to-ε = t), diverges when R is
    non-finite or above `blowup`, and stops at the cap when t ≥ `max_iters`; a finished one
    keeps its status. Shared by every engine, so they all stop by the same rule.
    Returns `(status, iterations)`.
    """
    going = status == RUNNING
    hit = going & (loss <= eps)
    bad = going & ~hit & (~jnp.isfinite(loss) | (loss > blowup))
    capped = going & ~hit & ~bad & (step >= max_iters)
    status = jnp.where(hit, CONVERGED, jnp.where(bad, DIVERGED,
                       jnp.where(capped, MAX_ITERS, status)))
    return status, jnp.where(hit, step, iterations)


def batch_aligned(x, ref):
    """A per-configuration value `(*b)` lined up with an array `(..., *b)` whose batch axes
    trail: leading axes of size 1, written out (no implicit rank promotion)."""
    x = jnp.asarray(x)
    return x.reshape((1,) * (jnp.ndim(ref) - x.ndim) + x.shape) if x.ndim else x


def step(state: RunState, objective, mask, lr, eps, max_iters,
         settings: Settings = Settings()) -> RunState:
    """One iteration: evaluate at W_t, update the flags, update W if still running.

    Acts on one configuration; every operation broadcasts, so a batch stacked on TRAILING
    axes (W: (L, D, D, *b), per-configuration scalars: (*b)) steps each configuration exactly
    as alone. The batch-last sweep uses that to keep the batch minor without transposes.
    """
    matmul = get_matmul(settings.matmul)
    key, sub = _split(state.key)
    loss, grad = objective.value_and_grad(state.W, sub, matmul, settings.prefix)
    grad = grad * mask
    going = state.status == RUNNING
    status, iterations = next_status(state.status, state.iterations, state.step, loss,
                                     state.blowup, eps, max_iters)
    move = status == RUNNING

    if settings.optimizer == "gd":
        W_new, opt_state = state.W - batch_aligned(lr, grad) * grad, state.opt_state
    else:
        updates, opt_state = _optimizer(settings, lr).update(grad, state.opt_state, state.W)
        W_new = state.W + updates * mask
        opt_state = jax.tree.map(lambda new, old: jnp.where(batch_aligned(move, new), new, old),
                                 opt_state, state.opt_state)
    W = jnp.where(batch_aligned(move, W_new), W_new, state.W)
    loss = jnp.where(going, loss, state.loss)
    step_ = state.step + move.astype(state.step.dtype)  # explicit: strict promotion
    return RunState(W, opt_state, step_, loss, status, iterations, state.blowup, key)


def advance(state: RunState, objective, mask, lr, eps, max_iters, n_records: int,
            settings: Settings = Settings()) -> tuple[RunState, jax.Array]:
    """`n_records · record_every` iterations; returns the new state and `(n_records,)` losses.

    Pure and unjitted: callers jit (and vmap, shard) it once at the loop level.
    """

    def block(state, _):
        going = state.status == RUNNING
        state = step(state, objective, mask, lr, eps, max_iters, settings)
        first = jnp.where(going, state.loss, jnp.nan)  # R at the block's first iteration
        if settings.record_every > 1:
            state = lax.fori_loop(
                1, settings.record_every,
                lambda _, s: step(s, objective, mask, lr, eps, max_iters, settings), state)
        return state, first

    return lax.scan(block, state, None, length=n_records)


def result(state: RunState, losses) -> RunResult:
    return RunResult(state.W, losses, state.status, state.iterations, state.loss, state.step)


# ---------------------------------------------------------------------------------------------
# Validation and the one-call entry point
# ---------------------------------------------------------------------------------------------


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_run_args(W0, lr, eps, max_iters, record_every, optimizer, mask=None, phi=None,
                   X=None, Y=None, model=None) -> None:
    """ValueError, before tracing, for input a run cannot use."""
    check_params(as_model(model), W0)
    D = W0.shape[-1]
    if mask is not None and jnp.shape(mask) != W0.shape:
        raise ValueError(f"mask must have the shape of W0 {W0.shape}, got {jnp.shape(mask)}")
    if phi is not None and jnp.shape(phi) != (D, D):
        raise ValueError(f"target must have shape ({D}, {D}) to match W0, got {jnp.shape(phi)}")
    if X is not None and (jnp.ndim(X) != 2 or X.shape[0] != D or jnp.shape(Y) != X.shape):
        raise ValueError(f"X and Y must both have shape ({D}, n), got {jnp.shape(X)} and "
                         f"{jnp.shape(Y)}")
    check_optimizer(optimizer)
    check_schedule(lr, eps, max_iters, record_every)


def check_schedule(lr, eps, max_iters, record_every) -> None:
    """ValueError, before tracing, for a step size, threshold or length no run can use."""
    if int(max_iters) < 0:
        raise ValueError(f"max_iters must be >= 0, got {max_iters}")
    if int(record_every) < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    for name, value in (("lr", lr), ("eps", eps)):
        if _concrete(value) and not np.all(np.asarray(value) > 0):
            raise ValueError(f"{name} must be > 0, got {value}")


def n_records_for(max_iters: int, record_every: int) -> int:
    # max_iters updates need max_iters + 1 evaluations; round up to whole blocks.
    return -(-(int(max_iters) + 1) // int(record_every))


@partial(jax.jit, static_argnames=("n_records", "settings"))
def _run_jit(W0, objective, mask, lr, eps, max_iters, key, n_records, settings):
    state = init_state(W0, objective, lr, settings, key)
    state, losses = advance(state, objective, mask, lr, eps, max_iters, n_records, settings)
    return result(state, losses)


def run(W0, phi=None, *, lr, X=None, Y=None, mask=None, optimizer: str = "gd",
        eps: float = 1e-10, max_iters: int = 10_000, record_every: int = 1,
        batch_size: int | None = None, key=None, matmul: str = "dot",
        prefix: str = "sequential", model=None, throw: bool = False, **hyper) -> RunResult:
    """Gradient descent from `W0: (L, D, D)` on an objective, until R ≤ `eps`, divergence, or
    `max_iters` updates. The objective is the second argument: a target `phi: (D, D)` (the
    whitened loss, `Whitened(phi)`) or any objective module (`Whitened`, `Regression`,
    `Completion`, `Sensing`: anything with `value_and_grad(W, key, matmul, prefix)`, its
    floating data cast to W0's dtype); or give data `X, Y: (D, n)` for the data loss.

    `lr`, `eps`, `phi` (or the objective's arrays), `W0`, `X`, `Y`, `key` may be batched
    with `jax.vmap`; `optimizer` (`gd`, `sgd`, `momentum`, `nesterov`, `adam`), its
    `**hyper`-parameters, `max_iters` and `record_every` are static. Returns a `RunResult`.

    `model`: the parametrization (`_models`: a name or an instance, e.g.
    `zj.Diagonal(shape=1.0)`; default the stacked network, `W0: (L, D, D)`); a diagonal
    network takes `W0: (L, 2, D)` and an objective on vectors (`LinearRegression`).
    With `throw=True` a run that diverged or hit `max_iters` raises (at run time,
    `eqx.error_if`, so also under `jit`; under `vmap` one failing member raises for all); by
    default the status says so.
    """
    if (phi is None) == (X is None):
        raise ValueError("give exactly one objective: a target `phi` or an objective module, "
                         "or data `X` and `Y`")
    given = is_objective(phi)
    model = as_model(model)
    if model.makes != "matrix" and not given:
        raise ValueError(f"the {model.name} network needs an objective module acting on "
                         "vectors (e.g. LinearRegression)")
    if given:
        check_fits(model, phi)
    check_run_args(W0, lr, eps, max_iters, record_every, optimizer, mask,
                   None if given else phi, X, Y, model)
    if batch_size is not None and X is not None and not 1 <= batch_size <= X.shape[1]:
        raise ValueError(f"batch_size must be in [1, n={X.shape[1]}], got {batch_size}")
    dtype = W0.dtype
    if X is not None:
        objective = Regression(jnp.asarray(X, dtype), jnp.asarray(Y, dtype), batch_size)
    else:
        objective = as_objective(phi, dtype)
        if given:
            check_width(objective, W0.shape[-1])
        if model.makes != "matrix":
            objective = OnModel(objective, model)
    mask = jnp.ones_like(W0) if mask is None else mask
    get_matmul(matmul)
    check_prefix(prefix)
    settings = Settings(optimizer, tuple(sorted(hyper.items())), matmul, prefix, record_every)
    key = jax.random.key(0) if key is None else key
    res = _run_jit(W0, objective, mask.astype(dtype), jnp.asarray(lr, dtype),
                   jnp.asarray(eps, dtype), jnp.asarray(max_iters, jnp.int32), key,
                   n_records_for(max_iters, record_every), settings)
    return _status.error_if(res, res.status) if throw else res


__all__ = ["run", "RunResult", "RunState", "Settings", "Whitened", "Regression", "Completion",
           "Sensing", "init_state",
           "step", "advance", "next_status", "STATUS_NAMES", "OPTIMIZERS", "RUNNING",
           "CONVERGED", "DIVERGED", "MAX_ITERS", "PRUNED"]
