"""Parametrizations: how parameters make the end-to-end matrix, and how ∂R/∂(end-to-end)
comes back to every parameter. A model is a parametrization and an objective
(`_objectives`); the sweep engine asks these two protocols and never a name.

A parametrization is one class with classmethods (it holds no data: parameters are arrays
the engine batches):

* `init(init, key, dim, depth, capacity, coef, scale, dtype)`: parameters of one
  configuration, padded to the capacity of its class (depth is data: one program serves
  every depth up to the capacity);
* `end_to_end(params)`: the end-to-end matrix `(D, D)`;
* `value_and_grad(params, head, matmul, prefix, active)`: R = f(end-to-end) and ∂R/∂params,
  given the objective's `head(X) -> (f(X), ∂f/∂X)`; `active` (data): the deepest layer
  that trains.
"""

from __future__ import annotations

from typing import ClassVar

from ._inits import uniform_init
from ._network import end_to_end, end_to_end_loss_and_grad


class Parametrization:
    """The protocol (see the module's docstring); subclasses define every classmethod."""

    name: ClassVar[str] = ""


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


#: The parametrizations, by name: `Grid(model=NAME)`, `--model NAME`.
MODELS: dict[str, type[Parametrization]] = {cls.name: cls for cls in (Dense,)}

__all__ = ["Parametrization", "Dense", "MODELS"]
