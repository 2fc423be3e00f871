"""Named update rules: one table of what each optimiser is and what it needs.

`lr` may be a traced array, so one compiled program sweeps learning rates under `vmap`.
`gd` is plain gradient descent W ← W − η∇R (eq. 2.4), built in without optax state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import optax

Factory = Callable[..., optax.GradientTransformation]


class Optimizer(NamedTuple):
    """`factory(lr, **hyper)`; the hyper-parameters it accepts; W-sized arrays of state."""

    factory: Factory | None
    hyper: tuple[str, ...]
    state_copies: int


OPTIMIZERS: dict[str, Optimizer] = {
    # gd is handled natively by the runner: no optimiser state, fewest operations.
    "gd": Optimizer(None, (), 0),
    "sgd": Optimizer(lambda lr, **kw: optax.sgd(lr, **kw), (), 0),
    "momentum": Optimizer(lambda lr, momentum=0.9: optax.sgd(lr, momentum=momentum),
                          ("momentum",), 1),
    "nesterov": Optimizer(lambda lr, momentum=0.9: optax.sgd(lr, momentum=momentum,
                                                             nesterov=True), ("momentum",), 1),
    "adam": Optimizer(lambda lr, **kw: optax.adam(lr, **kw), ("b1", "b2", "eps", "eps_root"), 2),
}


def check_optimizer(name: str, hyper: dict | None = None) -> None:
    """ValueError for an unknown optimiser or a hyper-parameter it does not take."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    allowed = OPTIMIZERS[name].hyper
    for k in hyper or {}:
        if k not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no hyper-parameters"
            raise ValueError(f"optimizer {name!r} {takes}; got {k!r}")


def make_optimizer(name: str, lr, hyper: dict | None = None) -> optax.GradientTransformation:
    """The optax transformation for `name`; `gd` maps to `optax.sgd` here."""
    check_optimizer(name, hyper)
    factory = OPTIMIZERS[name].factory or OPTIMIZERS["sgd"].factory
    return factory(lr, **(hyper or {}))
