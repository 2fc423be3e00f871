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

import dataclasses
import importlib
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _measures
from ._implicit_bias import diagonal_limit, q_alpha
from ._network import (
    end_to_end_loss_and_grad,
    pad_square,
    regression_head,
    whitened_head,
)
from ._targets import low_rank_target

#: What deep matrix factorization measures of a final end-to-end matrix (`_measures`).
MEASURES = ("reconstruction_error", "unobserved_error", "effective_rank", "nuclear_norm")


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------


class Objective(eqx.Module):
    """A loss f of the end-to-end matrix X = W_{L:1}, with everything a sweep needs of it.

    Subclass it and define `head`; the rest has defaults:

    * `head(X) -> (f(X), G)`, G = ∂f/∂X. X: `(D, D)`; sum over the matrix axes only, so
      arrays stacked on trailing batch axes pass through. The parametrization
      (`zasjax._models`) pulls G back to every layer.
    * `draw(key, phi, **axes)` (classmethod): one configuration's objective in a sweep, from
      its target Φ `(D, D)` (the grid's `--target`), a key of its own (fold_in(key(seed), 2):
      the same at every depth, init and learning rate) and the grid axes named in `axes`:
      for each name `a`, `a=` this configuration's value (data: may be traced) and `most_a=`
      the grid's largest (static, for shapes). The default is `cls(phi)`.
    * `check()`: called on construction with concrete data (shapes, counts, finite values:
      `ValueError`); never under tracing.
    * `measure(X) -> dict`: the `measures` of a final end-to-end matrix, scalars, written as
      columns of a sweep's rows.
    * `name`, `axes`, `options`, `measures`, `layouts`, `needs_data`, `acts_on` (class
      attributes): the name in rows and on the command line; the grid axes `draw` reads
      ("observations" or its alias "samples", "init_scale", "depth"; counts come with their
      `most_` maximum); the grid's static options `draw` reads as keywords (e.g. "sparsity",
      "noise"); the measure names; the matmul layouts it supports ("unrolled" needs a `head`
      that broadcasts over trailing batch axes); whether a sweep needs its data given
      (`Grid(data=...)`, `--data-file`) because it has no random draw; what `head` takes:
      "matrix" (an end-to-end matrix) or "vector" (a diagonal network's β, `_models`).

    Data fields are arrays (a sweep stacks them over configurations); give static options
    with `eqx.field(static=True)`.
    """

    name: ClassVar[str] = ""
    axes: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[str, ...]] = ()
    measures: ClassVar[tuple[str, ...]] = ()
    layouts: ClassVar[tuple[str, ...]] = ("dot",)
    needs_data: ClassVar[bool] = False
    acts_on: ClassVar[str] = "matrix"

    def __check_init__(self):
        if all(map(_concrete, jax.tree.leaves(self))):
            self.check()

    def head(self, X):
        raise NotImplementedError(f"{type(self).__name__} must define head(X) -> (f(X), G)")

    def value_and_grad(self, W, key, matmul, prefix="sequential"):
        """R(W) = f(W_{L:1}) and its gradient for every layer of `W: (L, D, D)`."""
        return end_to_end_loss_and_grad(W, self.head, matmul, prefix,
                                        getattr(self, "active", None))

    def check(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # numpy: inside a trace, jnp on a concrete array would give a tracer
            if isinstance(value, (jax.Array, np.ndarray)) and \
                    jnp.issubdtype(value.dtype, jnp.inexact) and \
                    not np.isfinite(np.asarray(value)).all():
                raise ValueError(f"{type(self).__name__}: {f.name} must hold finite numbers; "
                                 "it has NaN or inf entries")

    @classmethod
    def draw(cls, key, phi, **axes):
        return cls(phi)

    def measure(self, X) -> dict:
        return {}

    def width(self) -> int | None:
        """D, the size of the end-to-end matrices this objective's data are for (None:
        any)."""
        phi = getattr(self, "phi", None)
        return None if phi is None else int(jnp.shape(phi)[-1])

    @classmethod
    def label(cls) -> str:
        """The name of rows and of the command line: `name`, else the class's name."""
        return cls.name or cls.__name__


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


# ---------------------------------------------------------------------------------------------
# The objectives
# ---------------------------------------------------------------------------------------------


class Whitened(Objective):
    """R(W) = ½‖W_{L:1} − Φ‖²_F, eq. (2.3). `phi: (D, D)`, zero-padded."""

    phi: jax.Array
    active: jax.Array | None = None  # layers above this are identities (see `loss_and_grad`)

    name: ClassVar[str] = "whitened"
    layouts: ClassVar[tuple[str, ...]] = ("dot", "unrolled")

    def head(self, X):
        return whitened_head(self.phi)(X)

    def check(self) -> None:
        super().check()
        _check_square("target phi", self.phi)


class Regression(Objective):
    """½‖W_{L:1}X − Y‖²_F, eq. (2.2), with `X: (D, n)`, `Y: (D, n)` zero-padded rows.

    With `batch_size` set, each step's gradient is taken on a minibatch of columns drawn
    without replacement (SGD); the loss that decides convergence is always the full one,
    scaled per sample so that the minibatch gradient is unbiased: n/b · ∇(batch loss).
    `head` is the full-batch loss. In a sweep its data come from `--data-file` (X, Y).
    """

    X: jax.Array
    Y: jax.Array
    batch_size: int | None = eqx.field(static=True, default=None)

    name: ClassVar[str] = "regression"
    needs_data: ClassVar[bool] = True

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

    def width(self) -> int:
        return int(jnp.shape(self.X)[0])

    def check(self) -> None:
        super().check()
        if jnp.ndim(self.X) != 2 or jnp.shape(self.Y) != jnp.shape(self.X):
            raise ValueError(f"X and Y must both have shape (D, n), got {jnp.shape(self.X)} "
                             f"and {jnp.shape(self.Y)}")
        if self.batch_size is not None and not 1 <= self.batch_size <= self.X.shape[1]:
            raise ValueError(f"batch_size must be in [1, {self.X.shape[1]}] (the samples), "
                             f"got {self.batch_size}")


class Completion(Objective):
    """Matrix completion (Arora et al. 2019, Sec. 2): with Ω the observed entries,

        R(W) = ½ Σ_{(i,j) ∈ Ω} ((W_{L:1} − Φ)_{ij})²,   G = M ⊙ (W_{L:1} − Φ),

    M the 0/1 indicator of Ω. `phi: (D, D)` (only its observed entries matter),
    `observed: (D, D)` boolean or 0/1 (`observed_entries` draws one), both zero outside the
    true d_L × d_0 block. `active`: as in `Whitened`. In a sweep: `observations` entries
    drawn uniformly without replacement.
    """

    phi: jax.Array
    observed: jax.Array
    active: jax.Array | None = None

    name: ClassVar[str] = "completion"
    axes: ClassVar[tuple[str, ...]] = ("observations",)
    measures: ClassVar[tuple[str, ...]] = MEASURES

    def head(self, X):
        G = jnp.where(self.observed, X - self.phi, 0)
        return 0.5 * jnp.sum(G * G, axis=(0, 1)), G

    def check(self) -> None:
        super().check()
        _check_square("target phi", self.phi)
        _check_shape("observed", self.observed, jnp.shape(self.phi))

    @classmethod
    def draw(cls, key, phi, *, observations, most_observations=None):
        return cls(phi, observed_entries(key, phi.shape, observations))

    def measure(self, X) -> dict:
        return _dmf_measures(X, self.phi, self.observed)


class Sensing(Objective):
    """Matrix sensing (Arora et al. 2019, Sec. 2): measurements y_k = ⟨A_k, Φ⟩, k = 1..m,

        R(W) = ½ Σ_k (⟨A_k, W_{L:1}⟩ − y_k)²,   G = Σ_k r_k A_k,  r_k = ⟨A_k, W_{L:1}⟩ − y_k.

    `A: (m, D, D)` zero-padded (`sensing_matrices` draws them; rows of A that are all zero,
    with y_k = 0, are absent measurements), `y: (m,)`. `phi: (D, D)`, optional: the matrix the
    measurements came from, if known; R never reads it, the measurements of a trajectory do
    (the reconstruction error). `active`: as in `Whitened`. In a sweep: `observations`
    Gaussian measurements (`sensing_matrices`).
    """

    A: jax.Array
    y: jax.Array
    phi: jax.Array | None = None
    active: jax.Array | None = None

    name: ClassVar[str] = "sensing"
    axes: ClassVar[tuple[str, ...]] = ("observations",)
    measures: ClassVar[tuple[str, ...]] = MEASURES

    def head(self, X):
        r = jnp.einsum("kij...,ij...->k...", self.A, X) - self.y
        return 0.5 * jnp.sum(r * r, axis=0), jnp.einsum("k...,kij...->ij...", r, self.A)

    def width(self) -> int:
        return int(jnp.shape(self.A)[-1])

    def check(self) -> None:
        super().check()
        if jnp.ndim(self.A) != 3 or self.A.shape[1] != self.A.shape[2]:
            raise ValueError(f"sensing matrices A must have shape (m, D, D), got "
                             f"{jnp.shape(self.A)}")
        _check_shape("measurements y", self.y, self.A.shape[:1])
        if self.phi is not None:
            _check_shape("target phi", self.phi, self.A.shape[1:])

    @classmethod
    def draw(cls, key, phi, *, observations, most_observations):
        A = sensing_matrices(key, most_observations, phi.shape, n=observations,
                             dtype=phi.dtype)
        return cls(A, jnp.einsum("kij,ij->k", A, phi), phi)

    def measure(self, X) -> dict:
        return _dmf_measures(X, self.phi, None)


class LinearRegression(Objective):
    """Linear regression on vectors, for diagonal networks (`_models.Diagonal`):

        R(β) = (1/2n) ‖Xβ − y‖²,   ∂R/∂β = (1/n) Xᵀ(Xβ − y),

    `X: (N, D)`, `y: (N,)`; with `n` given (data, ≤ N) only the first n rows are samples
    (the rest must be zero), else n = N. Note the ½ and the 1/n: Li et al. (NeurIPS 2021)
    and Pesme et al. minimise (1/n)‖Xβ − y‖² (no ½), whose gradient is twice this one, so
    their step η is our 2η; Woodworth et al.'s limit does not depend on the normalisation.

    Optional, for the measures: `beta_star: (D,)` the true β*, `noise` its label noise σ,
    `X_test: (n_t, D)`, `y_test: (n_t,)` a test set, `scale` each branch's starting product
    α^L (for Q). In a sweep: `samples` rows drawn per seed (`draw`): Gaussian or Rademacher
    covariates, a `sparsity`-sparse β* with entries ±`magnitude` on a random support, labels
    y = Xβ* + σ·ξ, ξ ~ N(0, 1).

    Measures (NaN where the data to compute one are absent): `beta_error` ‖β − β*‖;
    `test_error` the test mean squared error without ½: (1/n_t)‖X_test β − y_test‖², or,
    for drawn (isotropic) covariates, its population value ‖β − β*‖² + σ²; `l1_norm` ‖β‖₁;
    `support_found` the fraction of β*'s support among the k largest |β_i| (k = |supp β*|);
    `q_alpha` Woodworth et al.'s Q_α(β) = α² Σ q(β_i/α²) with α² = `scale` (at depth 2 their
    potential exactly); `limit_distance` ‖β − β_α‖ at `depth` 2 from the symmetric init
    (`shape` 1), β_α = `_implicit_bias.diagonal_limit` of the n samples, the limit of
    gradient flow (computed on the host, once per configuration; NaN at other depths, or
    where it has no solution).
    """

    X: jax.Array
    y: jax.Array
    n: jax.Array | None = None
    beta_star: jax.Array | None = None
    noise: jax.Array | None = None
    X_test: jax.Array | None = None
    y_test: jax.Array | None = None
    scale: jax.Array | None = None
    depth: jax.Array | None = None
    shape: float = eqx.field(static=True, default=1.0)

    name: ClassVar[str] = "linear-regression"
    axes: ClassVar[tuple[str, ...]] = ("samples", "init_scale", "depth")
    options: ClassVar[tuple[str, ...]] = ("sparsity", "magnitude", "covariates", "noise",
                                          "init_shape")
    measures: ClassVar[tuple[str, ...]] = ("beta_error", "test_error", "l1_norm",
                                           "support_found", "q_alpha", "limit_distance")
    acts_on: ClassVar[str] = "vector"

    def _n(self):
        return jnp.asarray(self.X.shape[0] if self.n is None else self.n, self.X.dtype)

    def head(self, beta):
        r = self.X @ beta - self.y
        n = self._n()
        return 0.5 * jnp.sum(r * r) / n, (self.X.T @ r) / n

    def width(self) -> int:
        return int(jnp.shape(self.X)[-1])

    def check(self) -> None:
        super().check()
        if jnp.ndim(self.X) != 2:
            raise ValueError(f"X must have shape (n, d), got {jnp.shape(self.X)}")
        _check_shape("labels y", self.y, self.X.shape[:1])
        D = self.X.shape[1]
        if self.beta_star is not None:
            _check_shape("beta_star", self.beta_star, (D,))
        if (self.X_test is None) != (self.y_test is None):
            raise ValueError("give X_test and y_test together")
        if self.X_test is not None:
            if jnp.ndim(self.X_test) != 2 or self.X_test.shape[1] != D:
                raise ValueError(f"X_test must have shape (n_test, {D}), got "
                                 f"{jnp.shape(self.X_test)}")
            _check_shape("y_test", self.y_test, self.X_test.shape[:1])

    @classmethod
    def draw(cls, key, phi, *, samples, most_samples, init_scale=None, depth=None,
             sparsity=None, magnitude=1.0, covariates="gaussian", noise=0.0, init_shape=1.0):
        D = phi.shape[-1]
        dtype = phi.dtype
        k_x, k_s, k_sign, k_noise = jax.random.split(key, 4)
        N = int(most_samples)
        if covariates == "rademacher":
            X = jax.random.rademacher(k_x, (N, D), dtype)
        else:
            X = jax.random.normal(k_x, (N, D), dtype)
        rows = jnp.arange(N, dtype=jnp.asarray(samples).dtype) < samples
        X = jnp.where(rows[:, None], X, 0)
        k = D if sparsity is None else int(sparsity)
        support = jax.random.permutation(k_s, D) < k
        signs = jax.random.rademacher(k_sign, (D,), dtype)
        beta_star = jnp.where(support, jnp.asarray(magnitude, dtype) * signs, 0)
        sigma = jnp.asarray(noise, dtype)
        y = X @ beta_star + jnp.where(rows, sigma * jax.random.normal(k_noise, (N,), dtype), 0)
        scale = None if init_scale is None else \
            jnp.asarray(init_scale, dtype) ** jnp.asarray(depth).astype(dtype)
        return cls(X, y, jnp.asarray(samples, dtype), beta_star, sigma, scale=scale,
                   depth=depth, shape=float(init_shape))

    def measure(self, beta) -> dict:
        dtype = beta.dtype
        nan = jnp.full((), jnp.nan, dtype)
        out = {"l1_norm": jnp.sum(jnp.abs(beta)), "beta_error": nan, "test_error": nan,
               "support_found": nan, "q_alpha": nan, "limit_distance": nan}
        if self.beta_star is not None:
            err = beta - self.beta_star
            out["beta_error"] = jnp.linalg.norm(err)
            support = self.beta_star != 0
            k = jnp.sum(support, dtype=jnp.int32)
            # the k largest |β_i|: rank of each |β_i| among all (0 = largest)
            order = jnp.argsort(-jnp.abs(beta))
            rank = jnp.zeros(beta.shape, jnp.int32).at[order].set(
                jnp.arange(beta.shape[0], dtype=jnp.int32))
            found = jnp.sum(support & (rank < k)).astype(dtype)
            out["support_found"] = jnp.where(k > 0, found / jnp.maximum(k, 1).astype(dtype),
                                             jnp.nan)
            if self.noise is not None:
                out["test_error"] = jnp.sum(err * err) + self.noise**2
        if self.X_test is not None:
            r = self.X_test @ beta - self.y_test
            out["test_error"] = jnp.mean(r * r)
        if self.scale is not None:
            out["q_alpha"] = q_alpha(beta, jnp.sqrt(self.scale))
            if self.depth is not None and self.shape == 1.0:
                limit = jax.pure_callback(
                    _depth_two_limit, jax.ShapeDtypeStruct(beta.shape, dtype), self.X, self.y,
                    self._n(), jnp.sqrt(self.scale), self.depth, vmap_method="sequential")
                out["limit_distance"] = jnp.linalg.norm(beta - limit)
        return out


def _depth_two_limit(X, y, n, alpha, depth):
    # On the host (`pure_callback`): Woodworth et al.'s limit of the first n samples at
    # depth 2; NaN elsewhere or where there is none (n > d, X of low rank).
    nan = np.full(X.shape[1], np.nan, X.dtype)
    if int(depth) != 2:
        return nan
    n = int(n)
    try:
        return diagonal_limit(np.asarray(X)[:n], np.asarray(y)[:n],
                              float(alpha)).astype(X.dtype)
    except (ValueError, RuntimeError):
        return nan


def _dmf_measures(X, phi, observed) -> dict:
    out = _measures.measures(X, phi, observed)
    nan = jnp.full((), jnp.nan, X.dtype)
    return {k: out.get(k, nan) for k in MEASURES}


#: The built-in objectives, by name: `Grid(objective=NAME)`, `--objective NAME`.
OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (Whitened, Completion, Sensing, Regression, LinearRegression)}


def objective_class(objective) -> type[Objective]:
    """The `Objective` subclass a name (built-in, or `module:Class`) or a class stands for;
    ValueError saying what was expected otherwise."""
    if isinstance(objective, type) and issubclass(objective, Objective):
        return objective
    if isinstance(objective, str) and objective in OBJECTIVES:
        return OBJECTIVES[objective]
    if isinstance(objective, str) and ":" in objective:
        module, _, qualname = objective.partition(":")
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"objective {objective!r}: cannot import it ({e})") from None
        return objective_class(found)
    raise ValueError(f"unknown objective {objective!r}; expected one of {sorted(OBJECTIVES)}, "
                     "a zasjax.Objective subclass, or 'module:Class' naming one")


def objective_ref(cls: type[Objective]) -> str:
    """What config.json records of an objective class: its built-in name, else
    'module:Class' (importable, so that `SweepSpec.from_json` finds it again)."""
    if OBJECTIVES.get(cls.name) is cls:
        return cls.name
    return f"{cls.__module__}:{cls.__qualname__}"


def _check_shape(name, x, shape) -> None:
    if jnp.shape(x) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {jnp.shape(x)}")


def _check_square(name, x) -> None:
    if jnp.ndim(x) != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must be a square (D, D) matrix, got shape {jnp.shape(x)}")


def check_width(objective, D: int) -> None:
    """ValueError unless `objective`'s data are for D × D end-to-end matrices."""
    width = objective.width() if hasattr(objective, "width") else None
    if width is not None and width != D:
        raise ValueError(f"{type(objective).__name__}'s data are for {width} × {width} "
                         f"end-to-end matrices; the weights W have D = {D}")


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


__all__ = ["Objective", "OBJECTIVES", "objective_class", "objective_ref", "MEASURES", "check_width",
           "Whitened", "Regression", "Completion", "Sensing", "LinearRegression",
           "is_objective", "as_objective",
           "full_batch", "target_of", "observed_entries", "sensing_matrices",
           "completion_problem", "sensing_problem"]
