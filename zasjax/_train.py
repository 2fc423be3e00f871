"""Full-batch training of the residual network of `_resnet.py` over a learning-rate grid.

Every learning rate of the grid starts from the same network; one jitted function, vmapped
over the learning rate (an array argument, so a new grid of the same size does not
recompile), advances all of them `chunk` steps at a time with `lax.scan`. Each step
evaluates the cross-entropy at θ_t and stops a run by the rule every engine shares
(`_run.next_status`): a loss that is non-finite or above `blowup`·R(θ_0) marks it DIVERGED
and freezes it, so its NaNs never spread to the rest of the grid; there is no ε, so a run
that survives ends at the step budget (MAX_ITERS). Long runs write a checkpoint
(`_checkpoint`) between chunks and resume from it exactly.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _checkpoint
from ._optimizers import check_optimizer, make_optimizer
from ._resnet import ResNet, resnet_loss
from ._run import next_status
from ._status import DIVERGED, RUNNING


class TrainResult(NamedTuple):
    """Outcome of `train_resnet` for a grid of k learning rates (numpy arrays).

    Attributes:
        lrs: `(k,)` learning rates.
        loss: `(t + 1, k)` loss at iterations 0..t (t = `steps`, the iterations run).
        accuracy: `(t + 1, k)` training accuracy at iterations 0..t.
        status: `(k,)` `_status` codes: DIVERGED where the loss became non-finite or
            exceeded `blowup` times its initial value (frozen from then on), MAX_ITERS
            where the run used its whole step budget, RUNNING in a partial result.
        diverged_at: `(k,)` first iteration with a bad loss, -1 if none.
        steps: iterations run (fewer than asked when every run diverged early).
        model: the final `ResNet`s, every leaf with a leading `(k,)` axis.
    """

    lrs: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    status: np.ndarray
    diverged_at: np.ndarray
    steps: int
    model: ResNet

    @property
    def diverged(self) -> np.ndarray:
        """`(k,)` True where the run diverged."""
        return np.asarray(self.status) == DIVERGED


class _State(NamedTuple):
    # One learning rate's training state; the grid stacks it on a leading (k,) axis.
    model: ResNet
    opt_state: optax.OptState
    status: jax.Array       # int32 `_status` code
    diverged_at: jax.Array  # int32, -1 until the run diverges


def _tree_where(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _stop(state: _State, t, loss, blowup, steps):
    """(status, diverged_at) after evaluating the loss R(θ_t) at step t (eq. of `next_status`,
    with no ε: −∞ is never reached)."""
    status, _ = next_status(state.status, jnp.int32(-1), t, loss, blowup, -jnp.inf, steps)
    started = (status == DIVERGED) & (state.status == RUNNING)
    return status, jnp.where(started, t, state.diverged_at)


def _run_chunk(state: _State, lr, step0, blowup, x, y, *, optimizer, length, steps):
    # One learning rate, `length` optimiser steps; vmapped over the grid by `_advance`.
    opt = make_optimizer(optimizer, lr)

    def step(state: _State, t):
        (loss, acc), grads = eqx.filter_value_and_grad(resnet_loss, has_aux=True)(
            state.model, x, y)
        status, diverged_at = _stop(state, t, loss, blowup, steps)
        updates, opt_state = opt.update(grads, state.opt_state, state.model)
        move = status == RUNNING
        model = _tree_where(move, optax.apply_updates(state.model, updates), state.model)
        opt_state = _tree_where(move, opt_state, state.opt_state)
        return _State(model, opt_state, status, diverged_at), (loss, acc)

    return jax.lax.scan(step, state, step0 + jnp.arange(length, dtype=step0.dtype))


@partial(jax.jit, static_argnames=("optimizer", "length", "steps"))
def _advance(state, lrs, step0, blowup, x, y, *, optimizer, length, steps):
    # Module-level so that every call with the same shapes reuses one compilation.
    fn = partial(_run_chunk, optimizer=optimizer, length=length, steps=steps)
    state, (loss, acc) = jax.vmap(fn, in_axes=(0, 0, None, None, None, None))(
        state, lrs, step0, blowup, x, y)
    return state, loss, acc


@partial(jax.jit, static_argnames=("steps",))
def _finish(state: _State, step, blowup, x, y, *, steps):
    # The loss at the last iterate decides the final status too (the cap, or a late blow-up).
    loss, acc = jax.vmap(resnet_loss, in_axes=(0, None, None))(state.model, x, y)
    status, diverged_at = jax.vmap(_stop, in_axes=(0, None, 0, None, None))(
        state, step, loss, blowup, steps)
    return state._replace(status=status, diverged_at=diverged_at), loss, acc


def _check_lrs(lrs) -> np.ndarray:
    lrs = np.atleast_1d(np.asarray(lrs, dtype=np.float64))
    if lrs.ndim != 1 or lrs.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-d grid of learning rates, got {lrs!r}")
    if not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError(f"learning rates must be finite and > 0, got {lrs.tolist()}")
    return lrs


def _fingerprint(*arrays) -> str:
    # Identifies the training data in a checkpoint, so a resume on other data is refused.
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _save(path: Path, meta: dict, state: _State, loss, acc) -> None:
    leaves = {f"leaf{i}": leaf for i, leaf in enumerate(jax.tree.leaves(state))}
    _checkpoint.save(path, {"loss": loss, "accuracy": acc, **leaves}, meta)


def _load(path: Path, meta: dict, state: _State):
    arrays, saved = _checkpoint.load(path)
    expected = {k: v for k, v in meta.items() if k != "step"}
    found = {k: v for k, v in saved.items() if k != "step"}
    if found != expected:
        raise _checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} belongs to a different run: saved {found}, now "
            f"{expected}; use a fresh output folder or delete the checkpoint")
    leaves, treedef = jax.tree.flatten(state)
    try:
        new = [jnp.asarray(arrays[f"leaf{i}"], leaf.dtype) for i, leaf in enumerate(leaves)]
        loss, acc = arrays["loss"], arrays["accuracy"]
    except KeyError as e:
        raise _checkpoint.CheckpointError(f"checkpoint {str(path)!r} lacks the array {e}") \
            from None
    if [a.shape for a in new] != [a.shape for a in leaves]:
        raise _checkpoint.CheckpointError(f"checkpoint {str(path)!r} holds arrays of the "
                                          "wrong shapes")
    return int(saved["step"]), jax.tree.unflatten(treedef, new), loss, acc


def train_resnet(
    model: ResNet,
    x,
    y,
    lrs,
    *,
    steps: int,
    optimizer: str = "sgd",
    chunk: int = 50,
    blowup: float = 1e3,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_seconds: float = 60.0,
    callback: Callable[[int, TrainResult], None] | None = None,
    optimiser: str | None = None,
) -> TrainResult:
    """Full-batch training of one initial network for every learning rate of a grid.

    Args:
        model: the initial `ResNet`.
        x: `(n, d)` training inputs (cast to the model's dtype).
        y: `(n,)` integer labels.
        lrs: `(k,)` learning rates, each > 0.
        steps: number of optimiser steps.
        optimizer: one of `OPTIMIZERS` (`"gd"`/`"sgd"` = plain gradient descent).
        chunk: steps per jitted call: the granularity of callbacks, checkpoints and the
            early stop taken when every run has diverged.
        blowup: a run diverges when its loss is non-finite or exceeds `blowup` times
            the initial loss.
        checkpoint: `.npz` path; if it exists the run resumes from it (it must come from
            the same grid, optimizer, step count, shapes and data: otherwise
            `CheckpointError`, a ValueError), and it is rewritten atomically at most every
            `checkpoint_seconds` and at the end.
        callback: called as `callback(step, partial_result)` after every chunk, once the
            checkpoint is written (an exception raised there interrupts the run cleanly).
        optimiser: deprecated spelling of `optimizer`.

    Returns:
        `TrainResult`.
    """
    if optimiser is not None:
        warnings.warn("train_resnet(optimiser=...) is deprecated; use optimizer=...",
                      DeprecationWarning, stacklevel=2)
        optimizer = optimiser
    check_optimizer(optimizer)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    if not blowup > 1:
        raise ValueError(f"blowup must be > 1, got {blowup!r}")
    lrs64 = _check_lrs(lrs)
    dtype = model.V0.dtype
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y)
    if x.ndim != 2 or x.shape[1] != model.V0.shape[1] or y.shape != x.shape[:1]:
        raise ValueError(
            f"expected x: (n, {model.V0.shape[1]}) and y: (n,), got {x.shape} and {y.shape}"
        )
    k, steps = lrs64.size, int(steps)
    lrs_arr = jnp.asarray(lrs64, dtype)
    models = jax.tree.map(lambda a: jnp.broadcast_to(a, (k, *a.shape)), model)
    opt_state = jax.vmap(lambda lr, m: make_optimizer(optimizer, lr).init(m))(lrs_arr, models)
    state = _State(models, opt_state, jnp.full(k, RUNNING, jnp.int32),
                   jnp.full(k, -1, jnp.int32))
    threshold = blowup * jax.jit(resnet_loss)(model, x, y)[0]

    meta = {"lrs": lrs64.tolist(), "optimizer": optimizer, "steps": steps,
            "blowup": float(blowup), "dtype": str(dtype),
            "shapes": [list(a.shape) for a in jax.tree.leaves(model)],
            "data": _fingerprint(x, y), "step": 0}
    step = 0
    loss_hist = np.zeros((0, k), dtype)
    acc_hist = np.zeros((0, k), dtype)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        step, state, loss_hist, acc_hist = _load(path, meta, state)

    def result(state, loss_h, acc_h, step):
        return TrainResult(lrs64, loss_h, acc_h, np.asarray(state.status),
                           np.asarray(state.diverged_at), step, state.model)

    def going(state) -> bool:
        return bool(np.any(np.asarray(state.status) == RUNNING))

    last_save = time.monotonic()
    while step < steps and going(state):
        length = min(chunk, steps - step)
        state, loss, acc = _advance(state, lrs_arr, jnp.asarray(step, jnp.int32), threshold,
                                    x, y, optimizer=optimizer, length=length, steps=steps)
        loss_hist = np.concatenate([loss_hist, np.asarray(loss).T])
        acc_hist = np.concatenate([acc_hist, np.asarray(acc).T])
        step += length
        done = step >= steps or not going(state)
        if path is not None and (done or time.monotonic() - last_save >= checkpoint_seconds):
            _save(path, {**meta, "step": step}, state, loss_hist, acc_hist)
            last_save = time.monotonic()
        if callback is not None:
            callback(step, result(state, loss_hist, acc_hist, step))
    state, loss_end, acc_end = _finish(state, jnp.asarray(step, jnp.int32), threshold, x, y,
                                       steps=steps)
    return result(state, np.concatenate([loss_hist, np.asarray(loss_end)[None]]),
                  np.concatenate([acc_hist, np.asarray(acc_end)[None]]), step)


__all__ = ["TrainResult", "train_resnet"]
