"""Named initialisations: `(key, widths, scale=None, dtype) -> W: (L, D, D)`, D = max(widths).

Layer l (1-based) fills the top-left d_l × d_{l-1} block of `W[l-1]`; the rest is zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ._network import check_widths, pad_square

Init = Callable[..., jax.Array]


def _stack(blocks: Sequence[jax.Array], size: int) -> jax.Array:
    return jnp.stack([pad_square(b, size) for b in blocks])


def _eyes(widths, dtype):
    return [jnp.eye(widths[l + 1], widths[l], dtype=dtype) for l in range(len(widths) - 1)]


def _normals(key, widths, std, dtype):
    keys = jax.random.split(key, len(widths) - 1)
    return [std(l) * jax.random.normal(keys[l], (widths[l + 1], widths[l]), dtype)
            for l in range(len(widths) - 1)]


def zas(key, widths, scale=None, dtype=jnp.float32):
    """Zero-asymmetric init (Wu-Wang-Ma): W_L = 0, W_l = I for l < L."""
    blocks = _eyes(widths, dtype)
    blocks[-1] = jnp.zeros_like(blocks[-1])
    return _stack(blocks, max(widths))


def near_zas(key, widths, scale=None, dtype=jnp.float32):
    """ZAS plus iid N(0, σ²) noise on every layer (σ = `scale`, default 0.01)."""
    sigma = 0.01 if scale is None else scale
    noise = _normals(key, widths, lambda l: sigma, dtype)
    return zas(key, widths, dtype=dtype) + _stack(noise, max(widths))


def near_identity(key, widths, scale=None, dtype=jnp.float32):
    """W_l = I + U_l, (U_l)_ij ~ N(0, 1/(dL)), Wu-Wang-Ma eq. (5.1); `scale` overrides the std."""
    L = len(widths) - 1
    std = (lambda l: scale) if scale is not None else (lambda l: (widths[l] * L) ** -0.5)
    blocks = [e + u for e, u in zip(_eyes(widths, dtype), _normals(key, widths, std, dtype))]
    return _stack(blocks, max(widths))


def identity(key, widths, scale=None, dtype=jnp.float32):
    """W_l = I for every layer."""
    return _stack(_eyes(widths, dtype), max(widths))


def xavier(key, widths, scale=None, dtype=jnp.float32):
    """Glorot normal: (W_l)_ij ~ N(0, 2/(d_{l-1} + d_l)) (Shamir's Xavier case)."""
    blocks = _normals(key, widths, lambda l: (2.0 / (widths[l] + widths[l + 1])) ** 0.5, dtype)
    return _stack(blocks, max(widths))


def gaussian(key, widths, scale=None, dtype=jnp.float32):
    """(W_l)_ij ~ N(0, σ²), σ = `scale` (default 1/√d_{l-1})."""
    std = (lambda l: scale) if scale is not None else (lambda l: widths[l] ** -0.5)
    return _stack(_normals(key, widths, std, dtype), max(widths))


def orthogonal(key, widths, scale=None, dtype=jnp.float32):
    """Haar-random (semi-)orthogonal layers, times `scale` (default 1)."""
    keys = jax.random.split(key, len(widths) - 1)
    s = 1.0 if scale is None else scale
    blocks = [s * jax.random.orthogonal(k, max(r, c), dtype=dtype)[:r, :c]
              for k, r, c in zip(keys, widths[1:], widths[:-1])]
    return _stack(blocks, max(widths))


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
    kA, *kQ = jax.random.split(key, L + 1)
    sigma = d0**-0.5 if scale is None else scale
    A = sigma * jax.random.normal(kA, (dL, d0), dtype)
    U, s, Vt = jnp.linalg.svd(A, full_matrices=False)  # U: (dL, r), Vt: (r, d0)
    root = jnp.diag(s ** (1.0 / L))
    # Q_j: (d_j, r) with orthonormal columns; Q_0 = V, Q_L = U.
    Qs = [Vt.T] + [jax.random.orthogonal(kQ[j], widths[j], dtype=dtype)[:, :r]
                   for j in range(1, L)] + [U]
    blocks = [Qs[j + 1] @ root @ Qs[j].T for j in range(L)]
    return _stack(blocks, max(widths))


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
