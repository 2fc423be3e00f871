"""Objectives: losses of the end-to-end matrix W_{L:1}, each a small checked module.

Every objective is an `eqx.Module` (a pytree, so batches of them vmap) with

* `head(X) -> (f(X), G)`: the loss as a function of the end-to-end matrix X = W_{L:1} and
  its gradient G = ∂f/∂X; sums run over the matrix axes only, so arrays stacked on trailing
  batch axes (the sweep's batch-last layout) pass through;
* `value_and_grad(W, key, matmul, prefix) -> (R(W), ∇R(W))`: R(W) = f(W_{L:1}) with the
  layer gradients ∇_l R = W_{L:l+1}ᵀ G W_{l−1:1}ᵀ, all from the one routine
  `_network.end_to_end_loss_and_grad` (every `matmul`, `prefix` and `active` it takes).

The objectives: the whitened loss (Wu-Wang-Ma eq. (2.3)), regression (eq. (2.2)), and the two
problems of deep matrix factorization (Arora, Cohen, Hu & Luo, NeurIPS 2019, "Implicit
Regularization in Deep Matrix Factorization", Sec. 2; Razin & Cohen, NeurIPS 2020):
matrix completion (observed entries of Φ) and matrix sensing (linear measurements
y_k = ⟨A_k, Φ⟩). The draws of their data (observed sets, measurement matrices) are here
too; the low-rank target is `_targets.low_rank_target`.

Rectangular widths d_0, …, d_L: every matrix is zero-padded to D × D, Φ and the data live in
the top-left d_L × d_0 block, and the width masks of `_network` keep W_{L:1} zero outside
it, so the padding adds nothing to any loss or gradient.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._network import (
    end_to_end_loss_and_grad,
    pad_square,
    regression_head,
    whitened_head,
)
from ._targets import low_rank_target

# ---------------------------------------------------------------------------------------------
# The objectives
# ---------------------------------------------------------------------------------------------


class Whitened(eqx.Module):
    """R(W) = ½‖W_{L:1} − Φ‖²_F, eq. (2.3). `phi: (D, D)`, zero-padded."""

    phi: jax.Array
    active: jax.Array | None = None  # layers above this are identities (see `loss_and_grad`)

    def head(self, X):
        return whitened_head(self.phi)(X)

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return end_to_end_loss_and_grad(W, self.head, matmul, prefix, self.active)

    def check(self, D: int) -> None:
        _check_shape("target phi", self.phi, (D, D))


class Regression(eqx.Module):
    """½‖W_{L:1}X − Y‖²_F, eq. (2.2), with `X: (D, n)`, `Y: (D, n)` zero-padded rows.

    With `batch_size` set, each step's gradient is taken on a minibatch of columns drawn
    without replacement (SGD); the loss that decides convergence is always the full one,
    scaled per sample so that the minibatch gradient is unbiased: n/b · ∇(batch loss).
    `head` is the full-batch loss.
    """

    X: jax.Array
    Y: jax.Array
    batch_size: int | None = eqx.field(static=True, default=None)

    def head(self, P):
        return regression_head(self.X, self.Y)(P)

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        loss, grad = end_to_end_loss_and_grad(W, self.head, matmul, prefix)
        if self.batch_size is None:
            return loss, grad
        n = self.X.shape[1]
        cols = jax.random.choice(key, n, (self.batch_size,), replace=False)
        _, g = end_to_end_loss_and_grad(W, regression_head(self.X[:, cols], self.Y[:, cols]),
                                        matmul, prefix)
        return loss, g * (n / self.batch_size)

    def check(self, D: int) -> None:
        if jnp.ndim(self.X) != 2 or self.X.shape[0] != D or jnp.shape(self.Y) != self.X.shape:
            raise ValueError(f"X and Y must both have shape ({D}, n), got {jnp.shape(self.X)} "
                             f"and {jnp.shape(self.Y)}")


class Completion(eqx.Module):
    """Matrix completion (Arora et al. 2019, Sec. 2): with Ω the observed entries,

        R(W) = ½ Σ_{(i,j) ∈ Ω} ((W_{L:1} − Φ)_{ij})²,   G = M ⊙ (W_{L:1} − Φ),

    M the 0/1 indicator of Ω. `phi: (D, D)` (only its observed entries matter),
    `observed: (D, D)` boolean or 0/1 (`observed_entries` draws one), both zero outside the
    true d_L × d_0 block. `active`: as in `Whitened`.
    """

    phi: jax.Array
    observed: jax.Array
    active: jax.Array | None = None

    def head(self, X):
        G = jnp.where(self.observed, X - self.phi, 0)
        return 0.5 * jnp.sum(G * G, axis=(0, 1)), G

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return end_to_end_loss_and_grad(W, self.head, matmul, prefix, self.active)

    def check(self, D: int) -> None:
        _check_shape("target phi", self.phi, (D, D))
        _check_shape("observed", self.observed, (D, D))


class Sensing(eqx.Module):
    """Matrix sensing (Arora et al. 2019, Sec. 2): measurements y_k = ⟨A_k, Φ⟩, k = 1..m,

        R(W) = ½ Σ_k (⟨A_k, W_{L:1}⟩ − y_k)²,   G = Σ_k r_k A_k,  r_k = ⟨A_k, W_{L:1}⟩ − y_k.

    `A: (m, D, D)` zero-padded (`sensing_matrices` draws them; rows of A that are all zero,
    with y_k = 0, are absent measurements), `y: (m,)`. `phi: (D, D)`, optional: the matrix the
    measurements came from, if known; R never reads it, the measurements of a trajectory do
    (the reconstruction error). `active`: as in `Whitened`.
    """

    A: jax.Array
    y: jax.Array
    phi: jax.Array | None = None
    active: jax.Array | None = None

    def head(self, X):
        r = jnp.einsum("kij...,ij...->k...", self.A, X) - self.y
        return 0.5 * jnp.sum(r * r, axis=0), jnp.einsum("k...,kij...->ij...", r, self.A)

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        return end_to_end_loss_and_grad(W, self.head, matmul, prefix, self.active)

    def check(self, D: int) -> None:
        if jnp.ndim(self.A) != 3 or self.A.shape[1:] != (D, D):
            raise ValueError(f"sensing matrices A must have shape (m, {D}, {D}), got "
                             f"{jnp.shape(self.A)}")
        _check_shape("measurements y", self.y, self.A.shape[:1])
        if self.phi is not None:
            _check_shape("target phi", self.phi, (D, D))


def _check_shape(name, x, shape) -> None:
    if jnp.shape(x) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {jnp.shape(x)}")


def is_objective(x) -> bool:
    """Whether `x` is an objective (has `value_and_grad`) rather than a target array."""
    return hasattr(x, "value_and_grad")


def as_objective(phi_or_objective, dtype) -> eqx.Module:
    """A target array as `Whitened(phi)`, an objective as is; floating arrays cast to `dtype`
    (strict promotion: the objective's data must have W's precision)."""
    if not is_objective(phi_or_objective):
        return Whitened(jnp.asarray(phi_or_objective, dtype))
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                        else x, phi_or_objective)


def full_batch(objective) -> eqx.Module:
    """The objective with its full-batch gradient (a minibatched `Regression` made whole)."""
    if isinstance(objective, Regression) and objective.batch_size is not None:
        return Regression(objective.X, objective.Y)
    return objective


def target_of(objective) -> jax.Array | None:
    """The ground truth Φ an objective holds (`Whitened`, `Completion`, a `Sensing` given
    one), else None."""
    return getattr(objective, "phi", None)


# ---------------------------------------------------------------------------------------------
# Draws: observed entries, measurement matrices, whole problems (pure in key and data)
# ---------------------------------------------------------------------------------------------


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_count(name, n, low, high) -> None:
    if _concrete(n) and not np.all((np.asarray(n) >= low) & (np.asarray(n) <= high)):
        raise ValueError(f"{name} must be in [{low}, {high}], got {n}")


def observed_entries(key: jax.Array, shape: tuple[int, int], n, size: int | None = None
                     ) -> jax.Array:
    """A uniformly random set of exactly `n` of the d_L × d_0 entries of `shape`, as a
    boolean `(size, size)` mask (`size` defaults to max(shape); padding False).

    Sampling without replacement, as Arora et al. (roosephu/deep_matrix_factorization,
    gen_obs.py: `torch.multinomial(ones(n*n), N, replacement=False)`) and Razin & Cohen
    (dmf_data_generator.py) do: entry e is observed iff π(e) < n for a uniform random
    permutation π. `n` is data (may be traced: vmap over counts); `shape`, `size` are static.
    """
    rows, cols = (int(s) for s in shape)
    size = max(rows, cols) if size is None else int(size)
    _check_count("the number of observed entries", n, 0, rows * cols)
    rank = jax.random.permutation(key, rows * cols)
    mask = (rank < jnp.asarray(n).astype(rank.dtype)).reshape(rows, cols)  # n: any int dtype
    return pad_square(mask, size)


def sensing_matrices(key: jax.Array, m: int, shape: tuple[int, int], n=None, std=None,
                     size: int | None = None, dtype=None) -> jax.Array:
    """`m` Gaussian measurement matrices `(m, size, size)`, entries iid N(0, std²) in the top
    left d_L × d_0 block of `shape`, zero elsewhere.

    Default std = 1/√(d_L d_0), Arora et al.'s `randn(N, n, n) / n` for square d × d
    (roosephu/deep_matrix_factorization, gen_obs.py): with the default target of
    `_targets.low_rank_target` (‖Φ‖_F = √(d_L d_0)) each y_k = ⟨A_k, Φ⟩ is then N(0, 1). (Razin &
    Cohen's generator, noamrazin/imp_reg_dl_not_norms dmf_data_generator.py, defaults to
    std 1: pass `std=1.0`.) `n` (data, ≤ m): only the first n matrices are kept, the rest
    are zero (absent measurements), so one shape serves every count up to m. `m`, `shape`,
    `size` are static; `n`, `std` may be traced.
    """
    rows, cols = (int(s) for s in shape)
    size = max(rows, cols) if size is None else int(size)
    dtype = _dtype(dtype)
    std = (rows * cols) ** -0.5 if std is None else jnp.asarray(std, dtype)
    A = std * jax.random.normal(key, (int(m), rows, cols), dtype)
    if n is not None:
        _check_count("the number of measurements", n, 0, int(m))
        keep = jnp.arange(int(m), dtype=jnp.asarray(n).dtype) < n
        A = jnp.where(keep[:, None, None], A, 0)
    return pad_square(A, size)


def completion_problem(key: jax.Array, shape: tuple[int, int], rank, n, norm=None,
                       size: int | None = None, dtype=None) -> Completion:
    """A random completion problem: Φ = `_targets.low_rank_target(fold_in(key, 0), shape,
    rank, norm)` and `n` observed entries drawn from fold_in(key, 1).

    `rank`, `n`, `norm` are data; `shape`, `size`, `dtype` static. So a sweep draws a batch
    of problems with one compiled program:
    `jax.vmap(lambda k, r, n: completion_problem(k, (d, d), r, n))(keys, ranks, counts)`.
    """
    phi = low_rank_target(jax.random.fold_in(key, 0), shape, rank, norm, size, dtype)
    return Completion(phi, observed_entries(jax.random.fold_in(key, 1), shape, n, size))


def sensing_problem(key: jax.Array, shape: tuple[int, int], rank, m: int, n=None, norm=None,
                    std=None, size: int | None = None, dtype=None) -> Sensing:
    """A random sensing problem: the Φ of `completion_problem` with the same key
    (fold_in(key, 0)), `m` measurement matrices from fold_in(key, 1) (`sensing_matrices`,
    the first `n` kept), y_k = ⟨A_k, Φ⟩. The result holds Φ for the measurements.

    `rank`, `n`, `norm`, `std` are data; `shape`, `m`, `size`, `dtype` static.
    """
    phi = low_rank_target(jax.random.fold_in(key, 0), shape, rank, norm, size, dtype)
    A = sensing_matrices(jax.random.fold_in(key, 1), m, shape, n, std, size, phi.dtype)
    return Sensing(A, jnp.einsum("kij,ij->k", A, phi), phi)


def _dtype(dtype):
    # The caller chooses precision; by default JAX's default float (float64 under x64).
    return jnp.dtype(jax.dtypes.canonicalize_dtype(float) if dtype is None else dtype)


__all__ = ["Whitened", "Regression", "Completion", "Sensing", "is_objective", "as_objective",
           "full_batch", "target_of", "observed_entries", "sensing_matrices",
           "completion_problem", "sensing_problem"]
