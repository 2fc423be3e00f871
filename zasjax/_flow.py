"""Gradient flow dW/dt = −∇R(W) with diffrax, and its comparison with gradient descent.

Gradient descent with step η is the explicit Euler scheme of the gradient flow, so after
k = t/η steps it is O(η) away from the flow at time t (first order), and its invariants
D_l drift by O(η²) per step (Wu-Wang-Ma, Lemma 4.5), i.e. O(η) over a fixed horizon,
whereas the flow conserves them exactly (Lemma 4.2). `compare_gd_flow` measures both
rates on one network.

The vector field is the analytic gradient of R = ½‖W_{L:1} − Φ‖²_F from `_network.py`,
multiplied by the trainable mask, so padded and fixed layers stay put, exactly as in the
gradient-descent runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _status
from ._diagnostics import invariant_drift
from ._fits import fit_power_law
from ._network import loss_and_grad
from ._run import Whitened, advance, init_state
from ._status import DIVERGED, FINISHED, MAX_ITERS

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


def flow_status(result: diffrax.RESULTS):
    """Our status code for one diffrax result (vmap it for a batch)."""
    import diffrax  # here and in the solvers, not at the top: `import zasjax` stays fast
    return jnp.where(result == diffrax.RESULTS.successful, FINISHED,
                     jnp.where(result == diffrax.RESULTS.max_steps_reached, MAX_ITERS,
                               DIVERGED)).astype(jnp.int32)


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
    import diffrax

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


# ---------------------------------------------------------------------------------------------
# Gradient descent against the flow
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("n_records",))
def _gd_batch(W0, phi, mask, lrs, max_iters, n_records):
    """GD for each (lr, max_iters) pair with the core runner; losses[j] = R(W_j), NaN after."""
    objective = Whitened(phi)
    eps = jnp.zeros((), W0.dtype)  # never stop early: the whole horizon is compared

    def one(lr, m):
        state = init_state(W0, objective, lr)
        state, losses = advance(state, objective, mask, lr, eps, m, n_records)
        return losses, state.W, state.status

    return jax.vmap(one)(lrs, max_iters)


#: `gradient_flow` jitted once at module level, so repeated solves of one shape compile once.
gradient_flow_jit = jax.jit(gradient_flow, static_argnames=("rtol", "atol", "solver",
                                                            "max_steps", "throw"))


class GdFlowComparison(NamedTuple):
    """Gradient descent at several learning rates against the gradient flow on [0, t_max].

    `gaps[i]` = max_k |R_GD(k) − R_flow(η_i k)| over η_i k ≤ t_max; `slope`: log-log slope of
    gaps against η (≈ 1: GD is a first-order scheme). `gd_drifts[i]`: max_l ‖D_l − D_l(0)‖₂
    of GD at its last step η_i k ≤ t_max; `drift_slope` ≈ 1 as well (O(η²) per step, T/η
    steps). `gd_losses[i]`: R_GD(k) for k = 0..round(t_max/η_i) (NaN after a divergence,
    flagged in `gd_status`). `flow`: the flow sampled at the requested `ts`.
    """

    lrs: np.ndarray
    gaps: np.ndarray
    slope: float
    gd_drifts: np.ndarray
    drift_slope: float
    gd_losses: tuple
    gd_status: np.ndarray
    flow: FlowSolution


def compare_gd_flow(W0: jax.Array, phi: jax.Array, lrs: Sequence[float], t_max: float, *,
                    ts=None, mask: jax.Array | None = None, rtol: float = 1e-10,
                    atol: float = 1e-12, max_steps: int = 100_000) -> GdFlowComparison:
    """Run GD (core runner, one vmapped batch) at each η in `lrs` for round(t_max/η) steps and
    one flow solve sampled at every time ηk, and measure the gaps (see `GdFlowComparison`).

    Host-level driver (returns numpy): one target, one init. `ts` (default 101 points on
    [0, t_max]) are the extra times at which `flow` is returned.
    """
    lrs = np.asarray(lrs, dtype=float).reshape(-1)
    if lrs.size < 1 or not np.all(lrs > 0) or not np.all(np.isfinite(lrs)):
        raise ValueError(f"learning rates must be finite and > 0, got {lrs.tolist()}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    ts = np.linspace(0.0, t_max, 101) if ts is None else np.asarray(ts, float)
    check_flow_args(W0, phi, ts, mask)
    dtype = W0.dtype
    mask = jnp.ones_like(W0) if mask is None else jnp.asarray(mask, dtype)

    n_gd = np.rint(t_max / lrs).astype(int)                # GD horizon (for sampling at t/η)
    n_cmp = np.floor(t_max / lrs * (1 + 1e-12)).astype(int)  # steps with ηk ≤ t_max
    gd_times = [lr * np.arange(n + 1) for lr, n in zip(lrs, n_cmp)]
    # One flow solve at the union of all requested times; rounding merges 3·0.1 with 30·0.01.
    keys = [np.round(t, 12) for t in (*gd_times, ts)]
    grid = np.unique(np.concatenate(keys))
    flow = gradient_flow_jit(W0, phi, jnp.asarray(grid, dtype), mask, rtol=float(rtol),
                             atol=float(atol), max_steps=int(max_steps))
    flow_losses = np.asarray(flow.losses)

    losses, W_last, status = _gd_batch(W0, phi, mask, jnp.asarray(lrs, dtype),
                                       jnp.asarray(n_cmp, jnp.int32), int(n_gd.max()) + 1)
    # _gd_batch stops each run at n_cmp; continue to n_gd only where rounding asks for it.
    losses = np.asarray(losses)
    if np.any(n_gd > n_cmp):
        longer, _, _ = _gd_batch(W0, phi, mask, jnp.asarray(lrs, dtype),
                                 jnp.asarray(n_gd, jnp.int32), int(n_gd.max()) + 1)
        losses = np.asarray(longer)
    gd_losses = tuple(losses[i, : n + 1] for i, n in enumerate(n_gd))

    gaps = np.array([
        np.max(np.abs(gd_losses[i][: n + 1] - flow_losses[np.searchsorted(grid, key)]))
        for i, (n, key) in enumerate(zip(n_cmp, keys))])
    drifts = np.asarray(jax.vmap(lambda W: invariant_drift(W, W0))(W_last))
    sample = np.searchsorted(grid, keys[-1])
    flow_at_ts = FlowSolution(jnp.asarray(ts, dtype), flow.losses[sample],
                              flow.invariant_drift[sample], flow.W[sample], flow.status,
                              flow.n_steps)
    return GdFlowComparison(lrs, gaps, fit_power_law(lrs, gaps), drifts,
                            fit_power_law(lrs, drifts), gd_losses, np.asarray(status),
                            flow_at_ts)


__all__ = ["FlowSolution", "gradient_flow", "gradient_flow_jit", "GdFlowComparison",
           "compare_gd_flow", "check_flow_args", "flow_status"]
