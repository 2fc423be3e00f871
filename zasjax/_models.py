"""Parametrizations: how parameters make the end-to-end matrix, and how ∂R/∂(end-to-end)
comes back to every parameter. A model is a parametrization and an objective
(`_objectives`); the sweep engine asks these two protocols and never a name.

A parametrization is one small frozen dataclass (hashable: the engine compiles one program
per parametrization; it holds options, never data: parameters are arrays the engine
batches), with

* `init(init, key, dim, depth, capacity, coef, scale, dtype)`: parameters of one
  configuration, padded to the capacity of its class (depth is data: one program serves
  every depth up to the capacity);
* `end_to_end(params)`: the end-to-end matrix `(D, D)` (a vector `(D,)` for `makes =
  "vector"`);
* `value_and_grad(params, head, matmul, prefix, active)`: R = f(end-to-end) and ∂R/∂params,
  given the objective's `head(X) -> (f(X), ∂f/∂X)`; `active` (data): the deepest layer
  that trains;
* `modes(params)`: what "learning times" follow, `(k,)`: the singular values of the
  end-to-end matrix (descending), or a diagonal network's coordinates β_i;
* class attributes `name`, `makes` ("matrix" or "vector": the objectives it takes, whose
  `acts_on` must match), `inits` (the init names it takes; None: `_inits.INITS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._inits import uniform_init
from ._network import end_to_end, end_to_end_loss_and_grad


@dataclass(frozen=True)
class Parametrization:
    """The protocol (see the module's docstring); subclasses define every method."""

    name: ClassVar[str] = ""
    makes: ClassVar[str] = "matrix"
    inits: ClassVar[tuple[str, ...] | None] = None


@dataclass(frozen=True)
class Dense(Parametrization):
    """The stacked network W_L ⋯ W_1, `params = W: (capacity, D, D)`, layers above the
    depth identities (`_inits.uniform_init`); the pullback is the chain rule
    ∇_l R = W_{L:l+1}ᵀ G W_{l−1:1}ᵀ (`_network.end_to_end_loss_and_grad`)."""

    name: ClassVar[str] = "dense"

    @classmethod
    def init(cls, init, key, dim, depth, capacity, coef, scale, dtype):
        return uniform_init(init, key, dim, depth, capacity, coef, scale, dtype)

    @classmethod
    def end_to_end(cls, params):
        return end_to_end(params)

    @classmethod
    def value_and_grad(cls, params, head, matmul, prefix="sequential", active=None):
        return end_to_end_loss_and_grad(params, head, matmul, prefix, active)

    @classmethod
    def modes(cls, params):
        return jnp.linalg.svd(end_to_end(params), compute_uv=False)


@dataclass(frozen=True)
class Diagonal(Parametrization):
    """The diagonal linear network of depth L (Woodworth et al., COLT 2020; Li et al.,
    NeurIPS 2021):

        β = w₊^(L) ⊙ ⋯ ⊙ w₊^(1) − w₋^(L) ⊙ ⋯ ⊙ w₋^(1) ∈ ℝ^D,

    `params: (capacity, 2, D)`, row 0 the w₊ of a layer, row 1 its w₋; layers above the depth
    are ones (the identity of ⊙). Init `constant`: every entry of w₊ equals α (the init
    scale) and every entry of w₋ equals `shape`·α, so each branch's product starts at α^L
    (at L = 2 this α is Woodworth et al.'s: their w₊ = w₋ = α·1, β = w₊² − w₋²); `shape` ≠ 1
    is an initialisation shape w₊ ≠ w₋ in the sense of Azulay et al. (ICML 2021), β(0) =
    (1 − shape^L) α^L. The pullback: ∂R/∂w₊^(l) = g ⊙ Π_{m≠l} w₊^(m),
    ∂R/∂w₋^(l) = −g ⊙ Π_{m≠l} w₋^(m), g = ∂f/∂β; O(L·D) a step."""

    shape: float = 1.0

    name: ClassVar[str] = "diagonal"
    makes: ClassVar[str] = "vector"
    inits: ClassVar[tuple[str, ...]] = ("constant",)

    def __post_init__(self):
        if not (isinstance(self.shape, (int, float)) and self.shape > 0):
            raise ValueError(f"the init shape (w₋/w₊ at initialisation) must be a number > 0, "
                             f"got {self.shape!r}")

    def init(self, init, key, dim, depth, capacity, coef, scale, dtype):
        if init not in self.inits:
            raise ValueError(f"init {init!r} is not an init of the diagonal network; expected "
                             f"one of {list(self.inits)}")
        scale = jnp.asarray(scale, dtype)
        layer = jnp.stack([jnp.full(dim, 1, dtype), jnp.full(dim, self.shape, dtype)]) * scale
        active = (jnp.arange(capacity, dtype=jnp.asarray(depth).dtype) < depth)[:, None, None]
        return jnp.where(active, layer[None], jnp.ones((1, 2, dim), dtype))

    @staticmethod
    def end_to_end(params):
        prod = jnp.prod(params, axis=0)
        return prod[0] - prod[1]

    @staticmethod
    def value_and_grad(params, head, matmul=None, prefix="sequential", active=None):
        # Π_{m≠l} w^(m) from exclusive prefix and suffix products: no division (entries may
        # be 0).
        ones = jnp.ones_like(params[:1])
        below = jnp.cumprod(jnp.concatenate([ones, params[:-1]]), axis=0)
        above = jnp.flip(jnp.cumprod(jnp.flip(jnp.concatenate([params[1:], ones]), 0),
                                     axis=0), 0)
        beta = below[-1, 0] * params[-1, 0] - below[-1, 1] * params[-1, 1]
        f, g = head(beta)
        sign = jnp.asarray([1, -1], params.dtype)[:, None]
        return f, below * above * (sign * g[None])[None]

    @classmethod
    def modes(cls, params):
        return cls.end_to_end(params)


class OnModel(eqx.Module):
    """An objective on a parametrization, as `zj.run` and a sweep step it: R(params) =
    f(end_to_end(params)) with `value_and_grad(params, key, matmul, prefix)`; the layer
    products stop at layer `active` (data; the padding above it is identity, so one
    program serves every depth of a class)."""

    objective: eqx.Module
    model: Parametrization = eqx.field(static=True)
    active: jax.Array | None = None

    def value_and_grad(self, params, key, matmul, prefix="sequential"):
        return self.model.value_and_grad(params, self.objective.head, matmul, prefix,
                                         self.active)


#: The parametrizations, by name: `Grid(model=NAME)`, `--model NAME`.
MODELS: dict[str, type[Parametrization]] = {cls.name: cls for cls in (Dense, Diagonal)}


def as_model(model=None) -> Parametrization:
    """A parametrization from a name, an instance, or None (the stacked network);
    ValueError for an unknown name."""
    if model is None:
        return Dense()
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
        return MODELS[model]()
    return model


def check_fits(model, objective) -> None:
    """ValueError unless `objective` acts on what `model` makes (a matrix or a vector)."""
    acts_on = getattr(objective, "acts_on", "matrix")
    if acts_on != model.makes:
        raise ValueError(f"objective {type(objective).__name__} acts on a {acts_on}; the "
                         f"{model.name} network makes a {model.makes}")


def check_params(model, params) -> None:
    """ValueError, before tracing, unless `params` have the shape `model` takes."""
    shape = jnp.shape(params)
    if model.makes == "vector":
        if len(shape) != 3 or shape[1] != 2:
            raise ValueError(f"parameters of the {model.name} network must have shape "
                             f"(L, 2, D) (w₊ and w₋ of each layer), got {shape}")
    elif len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"W0 must have shape (L, D, D), got {shape}")


__all__ = ["Parametrization", "Dense", "Diagonal", "MODELS", "OnModel", "as_model", "check_fits",
           "check_params"]
