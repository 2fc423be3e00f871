"""Gradient flow dW/dt = −∇R(W) with diffrax.

The flow conserves the invariants D_l exactly (Wu-Wang-Ma, Lemma 4.2); `FlowSolution`
records their drift, the solver's tolerance. Gradient descent is the flow's explicit Euler
scheme: `_compare.compare_gd_flow` measures how far it strays.

The vector field is the analytic gradient of R = ½‖W_{L:1} − Φ‖²_F from `_network.py`,
multiplied by the trainable mask, so padded and fixed layers stay put, exactly as in the
gradient-descent runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _status
from ._measures import invariant_drift
from ._network import loss_and_grad
from ._status import DIVERGED, FINISHED, MAX_ITERS, flow_status

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


__all__ = ["FlowSolution", "gradient_flow", "gradient_flow_jit", "check_flow_args"]
