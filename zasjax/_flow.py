"""Gradient flow dW/dt = −∇R(W) with diffrax.

The flow conserves the invariants D_l exactly (Wu-Wang-Ma, Lemma 4.2); `FlowSolution`
records their drift, the solver's tolerance. Gradient descent is the flow's explicit Euler
scheme: `_compare.compare_gd_flow` measures how far it strays. `FlowSpec` is one `zasjax flow`
run (the flow beside GD at several step sizes, from an initialisation and a target),
checked on construction.

The vector field is the analytic gradient of R = ½‖W_{L:1} − Φ‖²_F from `_network.py`,
multiplied by the trainable mask, so padded and fixed layers stay put, exactly as in the
gradient-descent runner.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _status
from ._inits import INITS
from ._lists import parse_floats
from ._measures import invariant_drift
from ._network import loss_and_grad
from ._options import option
from ._status import DIVERGED, FINISHED, MAX_ITERS, flow_status
from ._targets import TARGETS

if TYPE_CHECKING:
    import diffrax


class FlowSolution(NamedTuple):
    """The gradient flow sampled at `ts: (n,)` (under vmap every field gains a batch axis).

    `losses: (n,)` R(W(t)); `invariant_drift: (n,)` max_l ‖D_l(W(t)) − D_l(W(0))‖₂;
    `W: (n, L, D, D)`; `status`: a `_status` code, FINISHED when the solver reached the last
    time, MAX_ITERS when its step budget ran out, DIVERGED when the step size collapsed or
    the state blew up (values after a failure are not meaningful); `n_steps`: accepted
    solver steps.
    """

    ts: jax.Array
    losses: jax.Array
    invariant_drift: jax.Array
    W: jax.Array
    status: jax.Array
    n_steps: jax.Array

    @property
    def ok(self):
        """True where the solver reached the last time (`status == FINISHED`)."""
        return self.status == FINISHED


def _vector_field(t, W, args):
    phi, mask = args
    _, grad = loss_and_grad(W, phi)
    return -(grad * mask)


def check_flow_args(W0, phi, ts, mask=None) -> None:
    """ValueError, before tracing, for input a flow cannot use."""
    if jnp.ndim(W0) != 3 or W0.shape[1] != W0.shape[2]:
        raise ValueError(f"W0 must have shape (L, D, D), got {jnp.shape(W0)}")
    D = W0.shape[-1]
    if jnp.shape(phi) != (D, D):
        raise ValueError(f"target must have shape ({D}, {D}) to match W0, got {jnp.shape(phi)}")
    if mask is not None and jnp.shape(mask) != W0.shape:
        raise ValueError(f"mask must have the shape of W0 {W0.shape}, got {jnp.shape(mask)}")
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] < 1:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {jnp.shape(ts)}")
    if not isinstance(ts, jax.core.Tracer):
        t = np.asarray(ts)
        if t[0] < 0 or np.any(np.diff(t) < 0) or not np.all(np.isfinite(t)):
            raise ValueError("ts must be finite, non-negative and non-decreasing")


def gradient_flow(W0: jax.Array, phi: jax.Array, ts: jax.Array, mask: jax.Array | None = None,
                  *, rtol: float = 1e-8, atol: float = 1e-10,
                  solver: diffrax.AbstractSolver | None = None,
                  max_steps: int = 100_000, throw: bool = False) -> FlowSolution:
    """Solve dW/dt = −mask ⊙ ∇R(W) from W(0) = W0 at t = 0, and sample it at the
    non-decreasing times `ts` ≥ 0.

    `W0: (L, D, D)`, `phi: (D, D)`, `ts: (n,)`. The default solver is Tsit5 (5th order)
    with a PID step-size controller at (`rtol`, `atol`); use float64 for tolerances below
    ~1e-6. Pure and unjitted (jit at the call site); vmaps over `W0`, `phi` and `mask`.
    Failures do not raise unless `throw=True`: see `FlowSolution.status`.
    """
    check_flow_args(W0, phi, ts, mask)
    dtype = W0.dtype
    ts = jnp.asarray(ts, dtype)
    mask = jnp.ones_like(W0) if mask is None else jnp.asarray(mask, dtype)
    import diffrax  # here, not at the top: `import zasjax` stays fast

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        diffrax.Tsit5() if solver is None else solver,
        t0=jnp.zeros((), dtype), t1=ts[-1], dt0=None, y0=W0, args=(phi, mask),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False)
    Ws = sol.ys
    losses = jax.vmap(lambda W: loss_and_grad(W, phi)[0])(Ws)
    drift = jax.vmap(lambda W: invariant_drift(W, W0))(Ws)
    status = flow_status(sol.result)
    out = FlowSolution(ts, losses, drift, Ws, status, sol.stats["num_accepted_steps"])
    return _status.error_if(out, status, (DIVERGED, MAX_ITERS)) if throw else out


#: `gradient_flow` jitted once at module level, so repeated solves of one shape compile once.
gradient_flow_jit = jax.jit(gradient_flow, static_argnames=("rtol", "atol", "solver",
                                                            "max_steps", "throw"))


# ---------------------------------------------------------------------------------------------
# One `zasjax flow` run
# ---------------------------------------------------------------------------------------------

#: Most rows of flow.csv: each row holds every learning rate's loss.
MAX_SAVES = 1_000_000


def _lrs(text: str, name: str) -> tuple[float, ...]:
    return tuple(parse_floats(text, name))


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlowSpec:
    """One `zasjax flow` run: the gradient flow from `init` towards the target, beside GD at
    each of `lrs`, written to the folder `out`. Checked on construction (`ValueError`); the
    command's options are these fields.
    """

    init: str = option("zas", f"initialisation, one of {', '.join(sorted(INITS))}")
    target: str | None = option(None, f"named target: {', '.join(sorted(TARGETS))}")
    target_file: str | None = option(None, "a .npy file holding a dim × dim target Φ",
                                     metavar="PHI.npy")
    dim: int = option(4, "width d")
    depth: int = option(8, "depth L")
    t_max: float = option(10.0, "flow horizon")
    n_save: int = option(101, "rows of flow.csv: equally spaced times in [0, t-max]")
    lrs: tuple[float, ...] = option((0.1, 0.05, 0.02, 0.01),
                                    "GD learning rates, comma separated (>= 4 for a slope fit)",
                                    parse=_lrs, metavar="A,B,...")
    seed: int = option(0, "PRNG seed for init and target")
    rtol: float | None = option(None, "ODE relative tolerance (default 1e-8 in float64, 1e-5 "
                                      "in float32)")
    atol: float | None = option(None, "ODE absolute tolerance (default 1e-10 in float64, "
                                      "1e-7 in float32)")
    engine: Literal["full", "modes"] = option(
        "full", "full: every layer; modes: the exact mode reduction from ZAS (--init zas "
                "only), at any depth")
    dtype: Literal["float32", "float64"] | None = option(
        None, "float64 (recommended)", flag="--x64", const="float64")
    out: str = option("runs/flow", "output folder", metavar="DIR")

    def __post_init__(self):
        object.__setattr__(self, "lrs", tuple(self.lrs))
        if self.depth < 1:
            raise ValueError(f"--depth must be >= 1, got {self.depth}")
        if self.dim < 1:
            raise ValueError(f"--dim must be >= 1, got {self.dim}")
        if not (math.isfinite(self.t_max) and self.t_max > 0):
            raise ValueError(f"--t-max must be a finite number > 0, got {self.t_max}")
        if not 2 <= self.n_save <= MAX_SAVES:
            raise ValueError(f"--n-save must be in [2, {MAX_SAVES:,}] (the rows include t = 0 "
                             f"and t = t-max), got {self.n_save}")
        if self.init not in INITS:
            raise ValueError(f"--init must be one of {sorted(INITS)}, got {self.init!r}")
        if (self.target is None) == (self.target_file is None):
            raise ValueError("give exactly one of --target NAME and --target-file PHI.npy")
        if self.target is not None and self.target not in TARGETS:
            raise ValueError(f"--target must be one of {sorted(TARGETS)}, got {self.target!r}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{name} must be a finite number > 0, got {value}")
        if self.engine not in ("full", "modes"):
            raise ValueError(f"--engine must be full or modes, got {self.engine!r}")
        if self.engine == "modes" and self.init != "zas":
            raise ValueError(f"--engine modes is exact only from ZAS, got --init {self.init}")
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be float32, float64 or None, got {self.dtype!r}")
        if not self.lrs:
            raise ValueError("--lrs expects at least one learning rate")
        bad = [lr for lr in self.lrs if not (math.isfinite(lr) and lr > 0)]
        if bad:
            raise ValueError(f"--lrs: every learning rate must be a finite number > 0, got "
                             f"{bad}")
        names = [f"{lr:g}" for lr in self.lrs]
        if len(set(names)) != len(names):
            raise ValueError(f"--lrs: learning rates must be distinct, got {list(self.lrs)}")
        too_big = [lr for lr in self.lrs if lr >= self.t_max]
        if too_big:
            raise ValueError(f"--lrs {too_big} are not below --t-max {self.t_max}: GD would "
                             "take no step within the horizon")


__all__ = ["FlowSolution", "gradient_flow", "gradient_flow_jit", "check_flow_args",
           "FlowSpec"]
