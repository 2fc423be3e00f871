"""Named initialisations: `(key, widths, scale=None, dtype) -> W: (L, D, D)`, D = max(widths).

Layer l (1-based) fills the top-left d_l × d_{l-1} block of `W[l-1]`; the rest is zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ._network import check_widths, pad_square

Init = Callable[..., jax.Array]


def _uniform(widths) -> bool:
    return len(set(widths)) == 1


def _per_layer(key, widths, draw) -> jax.Array:
    """`draw(key_l, d_l, d_{l-1})` for every layer, stacked and zero-padded to `(L, D, D)`.

    With equal widths the draws are one vmapped call, so the traced program (and its
    compile time) does not grow with the depth; the numbers are those of the layer loop.
    """
    keys = jax.random.split(key, len(widths) - 1)
    D = max(widths)
    if _uniform(widths):
        return jax.vmap(lambda k: draw(k, D, D))(keys)
    return jnp.stack([pad_square(draw(k, r, c), D)
                      for k, r, c in zip(keys, widths[1:], widths[:-1])])


def _eyes(widths, dtype) -> jax.Array:
    L, D = len(widths) - 1, max(widths)
    if _uniform(widths):
        return jnp.broadcast_to(jnp.eye(D, dtype=dtype), (L, D, D))
    return jnp.stack([pad_square(jnp.eye(r, c, dtype=dtype), D)
                      for r, c in zip(widths[1:], widths[:-1])])


def _normals(key, widths, std, dtype) -> jax.Array:
    # Layer l (0-based) is std(l) * N(0, 1).
    stds = jnp.asarray([std(l) for l in range(len(widths) - 1)], dtype)[:, None, None]
    return stds * _per_layer(key, widths, lambda k, r, c: jax.random.normal(k, (r, c), dtype))


def zas(key, widths, scale=None, dtype=jnp.float32):
    """Zero-asymmetric init (Wu-Wang-Ma): W_L = 0, W_l = I for l < L."""
    return _eyes(widths, dtype).at[-1].set(0)


def near_zas(key, widths, scale=None, dtype=jnp.float32):
    """ZAS plus iid N(0, σ²) noise on every layer (σ = `scale`, default 0.01)."""
    sigma = 0.01 if scale is None else scale
    return zas(key, widths, dtype=dtype) + _normals(key, widths, lambda l: sigma, dtype)


def near_identity(key, widths, scale=None, dtype=jnp.float32):
    """W_l = I + U_l, (U_l)_ij ~ N(0, 1/(dL)), Wu-Wang-Ma eq. (5.1); `scale` overrides the std."""
    L = len(widths) - 1
    std = (lambda l: scale) if scale is not None else (lambda l: (widths[l] * L) ** -0.5)
    return _eyes(widths, dtype) + _normals(key, widths, std, dtype)


def identity(key, widths, scale=None, dtype=jnp.float32):
    """W_l = I for every layer."""
    return _eyes(widths, dtype)


def xavier(key, widths, scale=None, dtype=jnp.float32):
    """Glorot normal: (W_l)_ij ~ N(0, 2/(d_{l-1} + d_l)) (Shamir's Xavier case)."""
    return _normals(key, widths, lambda l: (2.0 / (widths[l] + widths[l + 1])) ** 0.5, dtype)


def gaussian(key, widths, scale=None, dtype=jnp.float32):
    """(W_l)_ij ~ N(0, σ²), σ = `scale` (default 1/√d_{l-1})."""
    std = (lambda l: scale) if scale is not None else (lambda l: widths[l] ** -0.5)
    return _normals(key, widths, std, dtype)


def orthogonal(key, widths, scale=None, dtype=jnp.float32):
    """Haar-random (semi-)orthogonal layers, times `scale` (default 1)."""
    s = 1.0 if scale is None else scale
    return _per_layer(key, widths,
                      lambda k, r, c: s * jax.random.orthogonal(k, max(r, c), dtype=dtype)[:r, :c])


def balanced(key, widths, scale=None, dtype=jnp.float32):
    """Arora-Cohen-Golowich-Hu balanced init: draw A ~ N(0, σ²) of shape (d_L, d_0)
    (σ = `scale`, default 1/√d_0), take A = U Σ Vᵀ, and split Σ evenly:

        W_1 = Q_1 Σ^{1/L} Vᵀ,  W_j = Q_j Σ^{1/L} Q_{j-1}ᵀ,  W_L = U Σ^{1/L} Q_{L-1}ᵀ,

    with Haar-random Q_j, so W_{j+1}ᵀW_{j+1} = W_jW_jᵀ and W_{L:1} = A. Hidden widths must be
    at least min(d_0, d_L).
    """
    L, d0, dL = len(widths) - 1, widths[0], widths[-1]
    r = min(d0, dL)
    if min(widths[1:-1], default=r) < r:
        raise ValueError(f"balanced init needs hidden widths >= min(d_0, d_L) = {r}, "
                         f"got {tuple(widths)}")
    keys = jax.random.split(key, L + 1)  # keys[0] draws A, keys[1 + j] draws Q_j
    sigma = d0**-0.5 if scale is None else scale
    A = sigma * jax.random.normal(keys[0], (dL, d0), dtype)
    U, s, Vt = jnp.linalg.svd(A, full_matrices=False)  # U: (dL, r), Vt: (r, d0)
    root = s ** (1.0 / L)
    # Q_j: (d_j, r) with orthonormal columns; Q_0 = V, Q_L = U.
    if _uniform(widths):
        inner = jax.vmap(lambda k: jax.random.orthogonal(k, d0, dtype=dtype)[:, :r])(keys[2:])
        Qs = jnp.concatenate([Vt.T[None], inner, U[None]])
        return jnp.einsum("lir,r,ljr->lij", Qs[1:], root, Qs[:-1])
    Qs = [Vt.T] + [jax.random.orthogonal(keys[1 + j], widths[j], dtype=dtype)[:, :r]
                   for j in range(1, L)] + [U]
    root = jnp.diag(root)
    return jnp.stack([pad_square(Qs[j + 1] @ root @ Qs[j].T, max(widths)) for j in range(L)])


INITS: dict[str, Init] = {
    "zas": zas,
    "near-zas": near_zas,
    "near-identity": near_identity,
    "identity": identity,
    "xavier": xavier,
    "gaussian": gaussian,
    "orthogonal": orthogonal,
    "balanced": balanced,
}


def make_init(name: str, key: jax.Array, widths: Sequence[int], scale: float | None = None,
              dtype=jnp.float32) -> jax.Array:
    """Build the named initialisation `W: (L, D, D)` for widths d_0..d_L."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; expected one of {sorted(INITS)}")
    if scale is not None and not scale > 0:
        raise ValueError(f"init scale must be > 0, got {scale}")
    return INITS[name](key, check_widths(widths), scale=scale, dtype=dtype)
