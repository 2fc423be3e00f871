"""Named targets Φ: `(key, shape) -> (d_L, d_0)` arrays, random low-rank targets with their
rank as data (`low_rank_target`), and user matrices from `.npy` files."""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._network import pad_square

Target = Callable[[jax.Array, tuple[int, int]], jax.Array]


def _dtype(dtype):
    # The caller chooses precision; by default JAX's default float (float64 under x64).
    return jnp.dtype(jax.dtypes.canonicalize_dtype(float) if dtype is None else dtype)


def _square(name: str, shape: tuple[int, int]) -> int:
    if shape[0] != shape[1]:
        raise ValueError(f"target {name!r} needs d_L == d_0, got shape {shape}")
    return shape[0]


def neg_identity(key, shape, dtype=None):
    """Φ = −I (Wu-Wang-Ma Fig. 2/3; Shamir's hard case in 1-D)."""
    return -jnp.eye(*shape, dtype=_dtype(dtype))


def identity(key, shape, dtype=None):
    """Φ = I (already solved by the identity initialisation)."""
    return jnp.eye(*shape, dtype=_dtype(dtype))


def gaussian(key, shape, dtype=None):
    """Φ_ij ~ N(0, 1) iid (Wu-Wang-Ma Fig. 2)."""
    return jax.random.normal(key, shape, _dtype(dtype))


def orthogonal(key, shape, dtype=None):
    """A Haar-random orthogonal (or semi-orthogonal) matrix."""
    return jax.random.orthogonal(key, max(shape), dtype=_dtype(dtype))[: shape[0], : shape[1]]


def psd(key, shape, dtype=None):
    """Φ = G Gᵀ / d with G_ij ~ N(0, 1): symmetric positive (semi-)definite."""
    d = _square("psd", shape)
    G = jax.random.normal(key, (d, d), _dtype(dtype))
    return G @ G.T / d


def low_rank_target(key, shape, rank, norm=None, size: int | None = None, dtype=None):
    """A random rank-r target Φ = U Vᵀ · norm/‖U Vᵀ‖_F, U: (d_L, r), V: (d_0, r) iid N(0, 1),
    as Arora, Cohen, Hu & Luo (NeurIPS 2019) draw it (roosephu/deep_matrix_factorization,
    gen_gt.py: ‖Φ‖_F = n for n × n) and Razin & Cohen (NeurIPS 2020) do
    (noamrazin/imp_reg_dl_not_norms, dmf_data_generator.py: ‖Φ‖_F = num_rows).

    `shape = (d_L, d_0)`; `norm` defaults to √(d_L d_0): entries of root-mean-square 1, the
    peers' d for square d × d (for rectangular shapes Razin & Cohen's is d_L: pass it).
    `rank` is data (may be traced; 1 ≤ r ≤ min(shape)): U and V are drawn with min(shape)
    columns and the columns from r on are zeroed, so one compiled draw serves every rank and
    the rank-r target of a key shares its first r directions with the rank-(r+1) one. Zero-
    padded to `(size, size)` if `size` is given. `norm` may be traced too.
    """
    rows, cols = (int(s) for s in shape)
    r_max = min(rows, cols)
    if not isinstance(rank, jax.core.Tracer) and not np.all(
            (np.asarray(rank) >= 1) & (np.asarray(rank) <= r_max)):
        raise ValueError(f"rank must be in [1, {r_max}] for a target of shape {shape}, "
                         f"got {rank}")
    dtype = _dtype(dtype)
    UV = jax.random.normal(key, (rows + cols, r_max), dtype)  # one draw: U above V
    keep = jnp.arange(r_max, dtype=jnp.asarray(rank).dtype) < rank  # rank: any int dtype
    U = jnp.where(keep[None, :], UV[:rows], 0)
    phi = U @ UV[rows:].T
    norm = (rows * cols) ** 0.5 if norm is None else jnp.asarray(norm, dtype)
    phi = phi * (norm / jnp.linalg.norm(phi))
    return phi if size is None else pad_square(phi, int(size))


TARGETS: dict[str, Target] = {
    "neg-identity": neg_identity,
    "identity": identity,
    "gaussian": gaussian,
    "orthogonal": orthogonal,
    "psd": psd,
}


def make_target(name: str, key: jax.Array, shape: tuple[int, int], dtype=None) -> jax.Array:
    """Build the named target of `shape = (d_L, d_0)` (`dtype`: JAX's default float unless
    given, so float64 under x64); raises ValueError for unknown names."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; expected one of {sorted(TARGETS)} "
                         "(or a matrix from a .npy file)")
    return TARGETS[name](key, tuple(shape), dtype=dtype)


def load_target(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a user target from a `.npy` file; a 1-D file of length 1 or a scalar means d = 1.

    Raises ValueError if the file does not hold a finite real matrix of the expected shape.
    """
    if not os.path.exists(path):
        raise ValueError(f"target file {str(path)!r} does not exist")
    expected = "a .npy array of shape (d, d)" if shape is None else \
        f"a .npy array of shape {tuple(shape)}"
    try:
        phi = np.load(path, allow_pickle=False)  # never unpickle a user's file
    except Exception:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"target file {str(path)!r} is not readable: expected {expected}"
                         ) from None
    if not isinstance(phi, np.ndarray):  # an .npz archive
        phi.close()
        raise ValueError(f"target file {str(path)!r} is an archive, expected {expected}")
    phi = np.asarray(phi)
    if phi.ndim < 2 and phi.size == 1:
        phi = phi.reshape(1, 1)
    if phi.ndim != 2 or not np.issubdtype(phi.dtype, np.number) or np.iscomplexobj(phi):
        raise ValueError(f"target file {str(path)!r} must hold a real 2-D matrix, "
                         f"got dtype {phi.dtype} and shape {phi.shape}")
    if shape is not None and tuple(phi.shape) != tuple(shape):
        raise ValueError(f"target file {str(path)!r} has shape {phi.shape}, expected "
                         f"{tuple(shape)} to match --dim")
    if not np.all(np.isfinite(phi)):
        raise ValueError(f"target file {str(path)!r} contains non-finite entries")
    return phi
