"""Nonlinear residual networks with modified zero-asymmetric (mZAS) initialisation.

Wu, Wang & Ma (NeurIPS 2019), Section 6, eq. (6.1):

    z_0 = V_0 x,    z_l = z_{l-1} + U_l σ(V_l z_{l-1})  (l = 1..L),    f(x) = U_{L+1} z_L,

with `V_0: (D, d)`, `U_l: (D, m)`, `V_l: (m, D)`, `U_{L+1}: (d', D)` and σ = ReLU. The L
blocks are stored stacked (`U: (L, D, m)`, `V: (L, m, D)`) and applied with
`jax.lax.scan`, so compile time and memory for the program do not grow with L; depth
10,000 compiles in about a second.

The model, its initialisations and its loss live here; training over a learning-rate grid
is `_train.train_resnet`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax


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
    accuracy = (jnp.argmax(logits, axis=-1).astype(y.dtype) == y).mean(dtype=logits.dtype)
    return loss, accuracy


__all__ = ["ResNet", "RESNET_INITS", "init_resnet", "resnet_loss"]
