"""Nonlinear residual networks with modified zero-asymmetric (mZAS) initialisation.

Wu, Wang & Ma (NeurIPS 2019), Section 6, eq. (6.1):

    z_0 = V_0 x,    z_l = z_{l-1} + U_l σ(V_l z_{l-1})  (l = 1..L),    f(x) = U_{L+1} z_L,

with `V_0: (D, d)`, `U_l: (D, m)`, `V_l: (m, D)`, `U_{L+1}: (d', D)` and σ = ReLU. The L
blocks are stored stacked (`U: (L, D, m)`, `V: (L, m, D)`) and applied with
`jax.lax.scan`, so compile time and memory for the program do not grow with L; depth
10,000 compiles in about a second.

Training (`train_resnet`) runs full-batch optimisation of the softmax cross-entropy for
a whole grid of learning rates in one vmapped, jitted call; a run whose loss turns
non-finite or explodes is flagged diverged and frozen, never raised. Long runs are cut
into chunks with an atomic `.npz` checkpoint, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._optimizers import OPTIMIZERS, make_optimizer
from ._store import atomic_write_bytes


class ResNet(eqx.Module):
    """The residual network of eq. (6.1), acting on ONE example (vmap for a batch).

    Attributes:
        V0: `(D, d)` input embedding V_0.
        U: `(L, D, m)` block output maps U_1..U_L.
        V: `(L, m, D)` block input maps V_1..V_L.
        U_out: `(d', D)` readout U_{L+1}.
    """

    V0: jax.Array
    U: jax.Array
    V: jax.Array
    U_out: jax.Array

    @property
    def depth(self) -> int:
        return self.U.shape[-3]

    def features(self, x: jax.Array) -> jax.Array:
        """z_L for one input `x: (d,)`; returns `(D,)`."""
        def block(z, uv):
            u, v = uv
            return z + u @ jax.nn.relu(v @ z), None

        z_last, _ = jax.lax.scan(block, self.V0 @ x, (self.U, self.V))
        return z_last

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits f(x) = U_{L+1} z_L, `x: (d,)` -> `(d',)`."""
        return self.U_out @ self.features(x)


# --- initialisations: name -> (key, shape, dtype) -> ResNet -----------------------------


class _Shape(NamedTuple):
    depth: int  # L
    d_in: int  # d
    width: int  # D
    hidden: int  # m
    d_out: int  # d'


def _normal(key, shape, std: float, dtype):
    return jax.random.normal(key, shape, dtype) * std


def _glorot(key, shape, dtype):
    fan_out, fan_in = shape
    return _normal(key, shape, math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def _init_mzas(key, s: _Shape, dtype) -> ResNet:
    # eq. (6.2): U_l = 0 for l = 1..L+1 and (V_l)_ij ~ N(0, 1/D). The paper leaves V_0
    # open; we use Glorot normal, std sqrt(2 / (d + D)), as a standard input layer would.
    # (N(0, 1/d) also trains, a little slower: 0.89 vs 0.92 accuracy after 1,000 steps
    # at L = 100, D = m = 32, η = 0.007.)
    k0, kb = jax.random.split(key)

    def block(k):
        return (jnp.zeros((s.width, s.hidden), dtype),
                _normal(k, (s.hidden, s.width), 1.0 / math.sqrt(s.width), dtype))

    U, V = jax.vmap(block)(jax.random.split(kb, s.depth))
    V0 = _glorot(k0, (s.width, s.d_in), dtype)
    return ResNet(V0, U, V, jnp.zeros((s.d_out, s.width), dtype))


def _init_xavier(key, s: _Shape, dtype) -> ResNet:
    # Glorot normal for every matrix: std = sqrt(2 / (fan_in + fan_out)).
    k0, kb, ko = jax.random.split(key, 3)

    def block(k):
        ku, kv = jax.random.split(k)
        return _glorot(ku, (s.width, s.hidden), dtype), _glorot(kv, (s.hidden, s.width), dtype)

    U, V = jax.vmap(block)(jax.random.split(kb, s.depth))
    return ResNet(_glorot(k0, (s.width, s.d_in), dtype), U, V,
                  _glorot(ko, (s.d_out, s.width), dtype))


RESNET_INITS: dict[str, Callable[..., ResNet]] = {
    "mzas": _init_mzas,
    "xavier": _init_xavier,
}


def init_resnet(
    key: jax.Array,
    name: str = "mzas",
    *,
    depth: int,
    width: int,
    hidden: int | None = None,
    d_in: int = 784,
    d_out: int = 10,
    dtype=None,
) -> ResNet:
    """Build the network of eq. (6.1) with the named initialisation.

    Args:
        key: PRNG key.
        name: one of `RESNET_INITS` — `"mzas"` (eq. (6.2)) or `"xavier"` (Glorot normal).
        depth: number of residual blocks L >= 1.
        width: residual width D.
        hidden: block hidden width m (default: D).
        d_in, d_out: input and output dimensions d, d'.
        dtype: floating dtype (default: JAX's default float).

    Returns:
        `ResNet` with `V0: (D, d)`, `U: (L, D, m)`, `V: (L, m, D)`, `U_out: (d', D)`.
    """
    if name not in RESNET_INITS:
        raise ValueError(
            f"unknown ResNet initialisation {name!r}; expected one of {sorted(RESNET_INITS)}"
        )
    hidden = width if hidden is None else hidden
    for label, value in (("depth", depth), ("width", width), ("hidden", hidden),
                         ("d_in", d_in), ("d_out", d_out)):
        if int(value) != value or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    dtype = jnp.zeros((), dtype).dtype  # None -> default float (float64 under x64)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be floating, got {dtype}")
    shape = _Shape(int(depth), int(d_in), int(width), int(hidden), int(d_out))
    return RESNET_INITS[name](key, shape, dtype)


# --- loss -------------------------------------------------------------------------------


def resnet_loss(model: ResNet, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy and training accuracy over a batch.

    The paper reports training accuracy (Figure 4); the loss it minimises is the
    cross-entropy over the 10 classes, -mean_i log softmax(f(x_i))_{y_i}.

    Args:
        model: `ResNet`.
        x: `(n, d)` inputs.
        y: `(n,)` integer labels.

    Returns:
        `(loss, accuracy)`, two scalars.
    """
    logits = jax.vmap(model)(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    accuracy = (jnp.argmax(logits, axis=-1) == y).mean(dtype=logits.dtype)
    return loss, accuracy


# --- optimisers: the package's one table (`gd` = `sgd` = plain gradient descent) ---------

OPTIMISERS = OPTIMIZERS


# --- training over a learning-rate grid -------------------------------------------------


class TrainResult(NamedTuple):
    """Outcome of `train_resnet` for a grid of k learning rates (numpy arrays).

    Attributes:
        lrs: `(k,)` learning rates.
        loss: `(t + 1, k)` loss at iterations 0..t (t = `steps`, the iterations run).
        accuracy: `(t + 1, k)` training accuracy at iterations 0..t.
        diverged: `(k,)` True where the loss became non-finite or exceeded
            `blowup` times its initial value; those runs are frozen from then on.
        diverged_at: `(k,)` first iteration with a bad loss, -1 if none.
        steps: iterations run (fewer than asked when every run diverged early).
        model: the final `ResNet`s, every leaf with a leading `(k,)` axis.
    """

    lrs: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    diverged: np.ndarray
    diverged_at: np.ndarray
    steps: int
    model: ResNet


def _tree_where(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _run_chunk(state, lr, step0, loss0, x, y, *, optimiser, length, blowup):
    # One learning rate, `length` optimiser steps; vmapped over the grid by `_advance`.
    opt = make_optimizer(optimiser, lr)

    def step(carry, t):
        model, opt_state, diverged, diverged_at = carry
        (loss, acc), grads = eqx.filter_value_and_grad(resnet_loss, has_aux=True)(model, x, y)
        bad = ~jnp.isfinite(loss) | (loss > blowup * loss0)
        diverged_at = jnp.where(bad & ~diverged, t, diverged_at)
        diverged = diverged | bad
        updates, new_state = opt.update(grads, opt_state, model)
        new_model = optax.apply_updates(model, updates)
        # A diverged run is frozen so its NaNs cannot spread; its flag says what happened.
        model = _tree_where(diverged, model, new_model)
        opt_state = _tree_where(diverged, opt_state, new_state)
        return (model, opt_state, diverged, diverged_at), (loss, acc)

    steps = step0 + jnp.arange(length, dtype=step0.dtype)
    carry, (loss, acc) = jax.lax.scan(step, state, steps)
    return carry, loss, acc


@functools.partial(jax.jit, static_argnames=("optimiser", "length", "blowup"))
def _advance(state, lrs, step0, loss0, x, y, *, optimiser, length, blowup):
    # Module-level so that every call with the same shapes reuses one compilation.
    fn = functools.partial(_run_chunk, optimiser=optimiser, length=length, blowup=blowup)
    return jax.vmap(fn, in_axes=(0, 0, None, None, None, None))(state, lrs, step0, loss0, x, y)


_evaluate = jax.jit(jax.vmap(resnet_loss, in_axes=(0, None, None)))


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


def _save_checkpoint(path: Path, meta: dict, state, loss, acc) -> None:
    leaves = jax.tree.leaves(state)
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), loss=np.asarray(loss),
             accuracy=np.asarray(acc),
             **{f"leaf{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, meta: dict, state):
    with np.load(path) as f:
        saved = json.loads(str(f["meta"]))
        expected = {k: v for k, v in meta.items() if k != "step"}
        found = {k: v for k, v in saved.items() if k != "step"}
        if found != expected:
            raise ValueError(
                f"checkpoint {path} belongs to a different run: saved {found}, now {expected}; "
                "use a fresh output folder or delete the checkpoint"
            )
        leaves, treedef = jax.tree.flatten(state)
        new = [jnp.asarray(f[f"leaf{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)]
        if [a.shape for a in new] != [a.shape for a in leaves]:
            raise ValueError(f"checkpoint {path} holds arrays of the wrong shapes")
        return saved["step"], jax.tree.unflatten(treedef, new), f["loss"], f["accuracy"]


def train_resnet(
    model: ResNet,
    x,
    y,
    lrs,
    *,
    steps: int,
    optimiser: str = "sgd",
    chunk: int = 50,
    blowup: float = 1e3,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_seconds: float = 60.0,
    callback: Callable[[int, TrainResult], None] | None = None,
) -> TrainResult:
    """Full-batch training of one initial network for every learning rate of a grid.

    All k runs start from `model` and are advanced together by one jitted function,
    vmapped over the learning rate (an array argument, so a new grid of the same size
    does not recompile). Each jitted call advances `chunk` steps with `lax.scan`.

    Args:
        model: the initial `ResNet`.
        x: `(n, d)` training inputs (cast to the model's dtype).
        y: `(n,)` integer labels.
        lrs: `(k,)` learning rates, each > 0.
        steps: number of optimiser steps.
        optimiser: one of `OPTIMIZERS` (`"gd"`/`"sgd"` = plain gradient descent).
        chunk: steps per jitted call: the granularity of callbacks, checkpoints and the
            early stop taken when every run has diverged.
        blowup: a run diverges when its loss is non-finite or exceeds `blowup` times
            the initial loss.
        checkpoint: `.npz` path; if it exists the run resumes from it (it must come from
            the same grid, optimiser, step count and shapes), and it is rewritten
            atomically at most every `checkpoint_seconds` and at the end.
        callback: called as `callback(step, partial_result)` after every chunk, once the
            checkpoint is written (an exception raised there interrupts the run cleanly).

    Returns:
        `TrainResult`.
    """
    if optimiser not in OPTIMISERS:
        raise ValueError(f"unknown optimiser {optimiser!r}; expected one of {sorted(OPTIMISERS)}")
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
    k = lrs64.size
    lrs_arr = jnp.asarray(lrs64, dtype)
    models = jax.tree.map(lambda a: jnp.broadcast_to(a, (k, *a.shape)), model)
    opt_state = jax.vmap(lambda lr, m: make_optimizer(optimiser, lr).init(m))(lrs_arr, models)
    state = (models, opt_state, jnp.zeros(k, bool), jnp.full(k, -1, jnp.int32))
    loss0 = jax.jit(resnet_loss)(model, x, y)[0]

    meta = {"lrs": lrs64.tolist(), "optimiser": optimiser, "steps": int(steps),
            "blowup": float(blowup), "dtype": str(dtype),
            "shapes": [list(a.shape) for a in jax.tree.leaves(model)],
            "data": _fingerprint(x, y), "step": 0}
    step = 0
    loss_hist = np.zeros((0, k), dtype)
    acc_hist = np.zeros((0, k), dtype)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        step, state, loss_hist, acc_hist = _load_checkpoint(path, meta, state)

    def result(state, loss_hist, acc_hist, step, final=False):
        models, _, diverged, diverged_at = state
        loss_h, acc_h = loss_hist, acc_hist
        if final:
            loss_end, acc_end = _evaluate(models, x, y)
            loss_h = np.concatenate([loss_h, np.asarray(loss_end)[None]])
            acc_h = np.concatenate([acc_h, np.asarray(acc_end)[None]])
        return TrainResult(lrs64, loss_h, acc_h, np.asarray(diverged),
                           np.asarray(diverged_at), step, models)

    last_save = time.monotonic()
    while step < steps and not bool(np.all(state[2])):
        length = min(chunk, steps - step)
        state, loss, acc = _advance(state, lrs_arr, jnp.asarray(step, jnp.int32), loss0, x, y,
                                    optimiser=optimiser, length=length, blowup=float(blowup))
        loss_hist = np.concatenate([loss_hist, np.asarray(loss).T])
        acc_hist = np.concatenate([acc_hist, np.asarray(acc).T])
        step += length
        done = step >= steps or bool(np.all(state[2]))
        if path is not None and (done or time.monotonic() - last_save >= checkpoint_seconds):
            _save_checkpoint(path, {**meta, "step": step}, state, loss_hist, acc_hist)
            last_save = time.monotonic()
        if callback is not None:
            callback(step, result(state, loss_hist, acc_hist, step))
    return result(state, loss_hist, acc_hist, step, final=True)
