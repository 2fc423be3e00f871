"""Named initialisations: `(key, widths, scale=None, dtype) -> W: (L, D, D)`, D = max(widths).

Layer l (1-based) fills the top-left d_l × d_{l-1} block of `W[l-1]`; the rest is zero.
`scale` may be an array, traced under `vmap` (one compiled draw for every scale), except for
near-identity's, which the host turns into its `depth_coef`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._network import check_widths, end_to_end, pad_square

Init = Callable[..., jax.Array]

#: Default ‖W_{L:1}‖_F of the small inits of deep matrix factorization.
SMALL_SCALE = 1e-3


def _uniform(widths) -> bool:
    return len(set(widths)) == 1


# ---------------------------------------------------------------------------------------------
# Rectangular widths: one draw per layer, each from split(key, L)[l]
# ---------------------------------------------------------------------------------------------


def _per_layer(key, widths, draw) -> jax.Array:
    """`draw(key_l, d_l, d_{l-1})` for every layer, stacked and zero-padded to `(L, D, D)`."""
    keys = jax.random.split(key, len(widths) - 1)
    return jnp.stack([pad_square(draw(k, r, c), max(widths))
                      for k, r, c in zip(keys, widths[1:], widths[:-1])])


def _eyes(widths, dtype) -> jax.Array:
    return jnp.stack([pad_square(jnp.eye(r, c, dtype=dtype), max(widths))
                      for r, c in zip(widths[1:], widths[:-1])])


def _normals(key, widths, std, dtype) -> jax.Array:
    # Layer l (0-based) is std(l) * N(0, 1).
    stds = jnp.asarray([std(l) for l in range(len(widths) - 1)], dtype)[:, None, None]
    return stds * _per_layer(key, widths, lambda k, r, c: jax.random.normal(k, (r, c), dtype))


def zas(key, widths, scale=None, dtype=None):
    """Zero-asymmetric init (Wu-Wang-Ma): W_L = 0, W_l = I for l < L."""
    return _eyes(widths, _dtype(dtype)).at[-1].set(0)


def near_zas(key, widths, scale=None, dtype=None):
    """ZAS plus iid N(0, σ²) noise on every layer (σ = `scale`, default 0.01)."""
    dtype = _dtype(dtype)
    return zas(key, widths, dtype=dtype) + _normals(key, widths, lambda l: _noise(scale), dtype)


def near_identity(key, widths, scale=None, dtype=None):
    """W_l = I + U_l, (U_l)_ij ~ N(0, 1/(dL)), Wu-Wang-Ma eq. (5.1); `scale` overrides the std."""
    L, dtype = len(widths) - 1, _dtype(dtype)
    std = (lambda l: scale) if scale is not None else (lambda l: (widths[l] * L) ** -0.5)
    return _eyes(widths, dtype) + _normals(key, widths, std, dtype)


def identity(key, widths, scale=None, dtype=None):
    """W_l = I for every layer."""
    return _eyes(widths, _dtype(dtype))


def xavier(key, widths, scale=None, dtype=None):
    """Glorot normal: (W_l)_ij ~ N(0, 2/(d_{l-1} + d_l)) (Shamir's Xavier case)."""
    return _normals(key, widths, lambda l: (2.0 / (widths[l] + widths[l + 1])) ** 0.5,
                    _dtype(dtype))


def gaussian(key, widths, scale=None, dtype=None):
    """(W_l)_ij ~ N(0, σ²), σ = `scale` (default 1/√d_{l-1})."""
    std = (lambda l: scale) if scale is not None else (lambda l: widths[l] ** -0.5)
    return _normals(key, widths, std, _dtype(dtype))


def orthogonal(key, widths, scale=None, dtype=None):
    """Haar-random (semi-)orthogonal layers, times `scale` (default 1)."""
    s, dtype = _orth_scale(scale), _dtype(dtype)
    return _per_layer(key, widths,
                      lambda k, r, c: s * jax.random.orthogonal(k, max(r, c), dtype=dtype)[:r, :c])


def balanced(key, widths, scale=None, dtype=None):
    """Arora-Cohen-Golowich-Hu balanced init: draw A ~ N(0, σ²) of shape (d_L, d_0)
    (σ = `scale`, default 1/√d_0), take A = U Σ Vᵀ, and split Σ evenly:

        W_1 = Q_1 Σ^{1/L} Vᵀ,  W_j = Q_j Σ^{1/L} Q_{j-1}ᵀ,  W_L = U Σ^{1/L} Q_{L-1}ᵀ,

    with Haar-random Q_j, so W_{j+1}ᵀW_{j+1} = W_jW_jᵀ and W_{L:1} = A. Hidden widths must be
    at least min(d_0, d_L).
    """
    L, d0, dL, dtype = len(widths) - 1, widths[0], widths[-1], _dtype(dtype)
    r = min(d0, dL)
    if min(widths[1:-1], default=r) < r:
        raise ValueError(f"balanced init needs hidden widths >= min(d_0, d_L) = {r}, "
                         f"got {tuple(widths)}")
    keys = jax.random.split(key, L + 1)  # keys[0] draws A, keys[1 + j] draws Q_j
    sigma = d0**-0.5 if scale is None else scale
    A = sigma * jax.random.normal(keys[0], (dL, d0), dtype)
    U, s, Vt = jnp.linalg.svd(A, full_matrices=False)  # U: (dL, r), Vt: (r, d0)
    # Q_j: (d_j, r) with orthonormal columns; Q_0 = V, Q_L = U.
    Qs = [Vt.T] + [jax.random.orthogonal(keys[1 + j], widths[j], dtype=dtype)[:, :r]
                   for j in range(1, L)] + [U]
    root = jnp.diag(s ** (1.0 / L))
    return jnp.stack([pad_square(Qs[j + 1] @ root @ Qs[j].T, max(widths)) for j in range(L)])


def _to_norm(W, scale, coef):
    """W with every layer times c = (scale / ‖W_{L:1}‖_F)^{coef}, coef = 1/L: the end-to-end
    matrix of the result has Frobenius norm `scale` (Arora et al.'s layers all scaled alike)."""
    scale = jnp.asarray(SMALL_SCALE if scale is None else scale, W.dtype)
    return W * (scale / jnp.linalg.norm(end_to_end(W))) ** coef


def small_gaussian(key, widths, scale=None, dtype=None):
    """Small Gaussian init of deep matrix factorization (Arora, Cohen, Hu & Luo 2019): iid
    Gaussian layers, all multiplied by one factor so that ‖W_{L:1}‖_F = `scale` exactly
    (default `SMALL_SCALE`; may be traced). Arora et al.'s `init_scale` s
    (roosephu/deep_matrix_factorization, main.py: std s^{1/L}/√d per layer) gives
    ‖W_{L:1}‖_F ≈ s√d: pass scale = s√d."""
    W = _normals(key, widths, lambda l: 1.0, _dtype(dtype))
    return _to_norm(W, scale, 1.0 / (len(widths) - 1))


def small_orthogonal(key, widths, scale=None, dtype=None):
    """Haar-random (semi-)orthogonal layers, all multiplied by one factor so that
    ‖W_{L:1}‖_F = `scale` exactly (default `SMALL_SCALE`; may be traced). For d × d layers
    that factor is (scale/√d)^{1/L}; Arora et al.'s orthogonal init with `init_scale` s
    (main.py: (s√d)^{1/L} per layer, ‖W_{L:1}‖_F = s·d) is scale = s·d."""
    W = orthogonal(key, widths, dtype=dtype)
    return _to_norm(W, scale, 1.0 / (len(widths) - 1))


# ---------------------------------------------------------------------------------------------
# Equal widths: depth as data
# ---------------------------------------------------------------------------------------------
#
# With every width equal to D, an init of depth L is drawn into a stack of `capacity` ≥ L
# layers whose layers L+1.. are identities (the padding of `_network.pad_depth`). Layer l
# draws from split(key, capacity)[l], which with partitionable threefry (JAX's default) is
# split(key, L)[l] for every capacity, so the numbers do not depend on the capacity and one
# compiled builder serves every depth up to it. Scalars that depend on L (near-identity's
# std, balanced's 1/L) come from the host as `coef` (see `depth_coef`), so a traced depth
# gives exactly the numbers of a static one.


def _std_normal_layers(key, capacity, D, dtype):
    keys = jax.random.split(key, capacity)
    return jax.vmap(lambda k: jax.random.normal(k, (D, D), dtype))(keys)


def _zas_u(key, D, L, capacity, coef, scale, dtype):
    eye = jnp.broadcast_to(jnp.eye(D, dtype=dtype), (capacity, D, D))
    return eye.at[L - 1].set(0)


def _noisy(base, std):
    def init(key, D, L, capacity, coef, scale, dtype):
        noise = _std_normal_layers(key, capacity, D, dtype)
        return base(key, D, L, capacity, coef, scale, dtype) + std(D, coef, scale) * noise
    return init


def _identity_u(key, D, L, capacity, coef, scale, dtype):
    return jnp.broadcast_to(jnp.eye(D, dtype=dtype), (capacity, D, D))


def _zeros_u(key, D, L, capacity, coef, scale, dtype):
    return jnp.zeros((capacity, D, D), dtype)


def _orthogonal_u(key, D, L, capacity, coef, scale, dtype):
    keys = jax.random.split(key, capacity)
    return _orth_scale(scale) * jax.vmap(lambda k: jax.random.orthogonal(k, D, dtype=dtype))(keys)


def _balanced_u(key, D, L, capacity, coef, scale, dtype):
    keys = jax.random.split(key, capacity + 1)  # as in `balanced`: keys[0] A, keys[1 + j] Q_j
    sigma = D**-0.5 if scale is None else scale
    U, s, Vt = jnp.linalg.svd(sigma * jax.random.normal(keys[0], (D, D), dtype))
    inner = jax.vmap(lambda k: jax.random.orthogonal(k, D, dtype=dtype))(keys[2:])
    Qs = jnp.concatenate([Vt.T[None], inner, U[None]])       # Q_0 .. Q_capacity
    at_L = jnp.arange(capacity + 1, dtype=jnp.asarray(L).dtype) == L
    Qs = jnp.where(at_L[:, None, None], U, Qs)  # Q_L = U
    return jnp.einsum("lir,r,ljr->lij", Qs[1:], s**coef, Qs[:-1])  # coef = 1/L


def _small_u(base):
    # `_to_norm` on the first L layers (the rest identities, so W_{L:1} is theirs).
    def init(key, D, L, capacity, coef, scale, dtype):
        W = base(key, D, L, capacity, coef, None, dtype)
        active = (jnp.arange(capacity, dtype=jnp.asarray(L).dtype) < L)[:, None, None]
        return _to_norm(jnp.where(active, W, jnp.eye(D, dtype=dtype)), scale, coef)
    return init


#: name -> (builder of the stack before padding, host-side coefficient from (D, L, scale)).
_UNIFORM = {
    "zas": (_zas_u, None),
    "near-zas": (_noisy(_zas_u, lambda D, coef, scale: _noise(scale)), None),
    "near-identity": (_noisy(_identity_u, lambda D, coef, scale: coef),
                      lambda D, L, scale: (D * L) ** -0.5 if scale is None else scale),
    "identity": (_identity_u, None),
    "xavier": (_noisy(_zeros_u, lambda D, coef, scale: (2.0 / (2 * D)) ** 0.5), None),
    "gaussian": (_noisy(_zeros_u, lambda D, coef, scale: D**-0.5 if scale is None else scale),
                 None),
    "orthogonal": (_orthogonal_u, None),
    "balanced": (_balanced_u, lambda D, L, scale: 1.0 / L),
    "small-gaussian": (_small_u(_noisy(_zeros_u, lambda D, coef, scale: 1.0)),
                       lambda D, L, scale: 1.0 / L),
    "small-orthogonal": (_small_u(_orthogonal_u), lambda D, L, scale: 1.0 / L),
}


def depth_coef(name: str, dim: int, depth: int, scale: float | None = None) -> float:
    """The depth-dependent scalar of init `name` (0 if it has none), computed on the host."""
    coef = _UNIFORM[name][1]
    return 0.0 if coef is None else float(coef(dim, depth, scale))


def uniform_init(name: str, key, dim: int, depth, capacity: int, coef, scale=None,
                 dtype=None) -> jax.Array:
    """Init `name` of depth `depth` (may be traced, ≤ `capacity`) with every width `dim`,
    padded with identity layers to `(capacity, dim, dim)`; `coef = depth_coef(...)`.

    Equals `pad_depth(make_init(name, key, (dim,) * (depth + 1), scale), ..., capacity)`.
    """
    dtype = _dtype(dtype)
    build = _UNIFORM[name][0]
    W = build(key, dim, depth, capacity, jnp.asarray(coef, dtype), scale, dtype)
    active = (jnp.arange(capacity, dtype=jnp.asarray(depth).dtype) < depth)[:, None, None]
    return jnp.where(active, W, jnp.eye(dim, dtype=dtype))


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _noise(scale):
    return 0.01 if scale is None else scale


def _orth_scale(scale):
    return 1.0 if scale is None else scale


def _dtype(dtype):
    # The caller chooses precision; by default JAX's default float (float64 under x64).
    return jnp.dtype(jax.dtypes.canonicalize_dtype(float) if dtype is None else dtype)


INITS: dict[str, Init] = {
    "zas": zas,
    "near-zas": near_zas,
    "near-identity": near_identity,
    "identity": identity,
    "xavier": xavier,
    "gaussian": gaussian,
    "orthogonal": orthogonal,
    "balanced": balanced,
    "small-gaussian": small_gaussian,
    "small-orthogonal": small_orthogonal,
}


def make_init(name: str, key: jax.Array, widths: Sequence[int], scale: float | None = None,
              dtype=None) -> jax.Array:
    """Build the named initialisation `W: (L, D, D)` for widths d_0..d_L (`dtype`: JAX's
    default float unless given)."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; expected one of {sorted(INITS)}")
    if scale is not None and _concrete(scale) and not np.all(np.asarray(scale) > 0):
        raise ValueError(f"init scale must be > 0, got {scale}")
    widths = check_widths(widths)
    if _uniform(widths):
        L, D = len(widths) - 1, widths[0]
        return uniform_init(name, key, D, L, L, depth_coef(name, D, L, scale), scale, dtype)
    return INITS[name](key, widths, scale=scale, dtype=dtype)
