"""Named update rules: `(lr, **hyper) -> optax.GradientTransformation`.

`lr` may be a traced array, so one compiled program sweeps learning rates under `vmap`.
`gd` is plain gradient descent W ← W − η∇R (eq. 2.4), built in without optax state.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

Factory = Callable[..., optax.GradientTransformation]

OPTIMIZERS: dict[str, Factory | None] = {
    "gd": None,  # handled natively by the runner: no optimiser state, fewest operations
    "sgd": lambda lr, **kw: optax.sgd(lr, **kw),
    "momentum": lambda lr, momentum=0.9, **kw: optax.sgd(lr, momentum=momentum, **kw),
    "nesterov": lambda lr, momentum=0.9, **kw: optax.sgd(lr, momentum=momentum, nesterov=True,
                                                        **kw),
    "adam": lambda lr, **kw: optax.adam(lr, **kw),
}


def check_optimizer(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")


def make_optimizer(name: str, lr, hyper: dict | None = None) -> optax.GradientTransformation:
    """The optax transformation for `name`; `gd` maps to `optax.sgd` here."""
    check_optimizer(name)
    factory = OPTIMIZERS[name] or OPTIMIZERS["sgd"]
    return factory(lr, **(hyper or {}))
