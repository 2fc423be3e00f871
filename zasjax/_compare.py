"""Gradient descent against gradient flow.

Gradient descent with step η is the explicit Euler scheme of the gradient flow, so after
k = t/η steps it is O(η) away from the flow at time t (first order), and its invariants
D_l drift by O(η²) per step (Wu-Wang-Ma, Lemma 4.5), i.e. O(η) over a fixed horizon,
whereas the flow conserves them exactly (Lemma 4.2). `compare_gd_flow` measures both
rates on one network (the core runner beside `_flow.gradient_flow`); `compare_gd_flow_modes`
does the same for ZAS at any depth by the exact mode reduction (`_modes`).

This module sits above the engines it compares (`_run`, `_flow`, `_modes`); none of them
imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _modes
from ._fits import fit_power_law
from ._flow import FlowSolution, check_flow_args, gradient_flow_jit
from ._measures import invariant_drift
from ._objectives import Whitened
from ._run import advance, init_state


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


# ---------------------------------------------------------------------------------------------
# The shared bookkeeping: horizons, one time grid for the flow, the gaps
# ---------------------------------------------------------------------------------------------


class _Times(NamedTuple):
    lrs: np.ndarray      # (n_lr,)
    ts: np.ndarray       # the times at which `flow` is returned
    n_gd: np.ndarray     # GD horizon round(t_max/η) (for sampling at t/η)
    n_cmp: np.ndarray    # steps with ηk ≤ t_max, the ones compared
    keys: list           # per η the compared times ηk (rounded), then `ts`
    grid: np.ndarray     # their union: the one flow solve's times


def _times(lrs, t_max: float, ts) -> _Times:
    """Check the learning rates and horizon; the times both comparisons sample."""
    lrs = np.asarray(lrs, dtype=float).reshape(-1)
    if lrs.size < 1 or not np.all(lrs > 0) or not np.all(np.isfinite(lrs)):
        raise ValueError(f"learning rates must be finite and > 0, got {lrs.tolist()}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    ts = np.linspace(0.0, t_max, 101) if ts is None else np.asarray(ts, float)
    n_gd = np.rint(t_max / lrs).astype(int)
    n_cmp = np.floor(t_max / lrs * (1 + 1e-12)).astype(int)
    # One flow solve at the union of all requested times; rounding merges 3·0.1 with 30·0.01.
    keys = [np.round(lr * np.arange(n + 1), 12) for lr, n in zip(lrs, n_cmp)] + [
        np.round(ts, 12)]
    return _Times(lrs, ts, n_gd, n_cmp, keys, np.unique(np.concatenate(keys)))


def _gaps(times: _Times, gd_losses: Sequence[np.ndarray], flow_losses: np.ndarray) -> np.ndarray:
    """max_k |R_GD(k) − R_flow(ηk)| over ηk ≤ t_max, per η."""
    return np.array([
        np.max(np.abs(gd_losses[i][: n + 1] - flow_losses[np.searchsorted(times.grid, key)]))
        for i, (n, key) in enumerate(zip(times.n_cmp, times.keys))])


# ---------------------------------------------------------------------------------------------
# The full network
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


def compare_gd_flow(W0: jax.Array, phi: jax.Array, lrs: Sequence[float], t_max: float, *,
                    ts=None, mask: jax.Array | None = None, rtol: float = 1e-10,
                    atol: float = 1e-12, max_steps: int = 100_000) -> GdFlowComparison:
    """Run GD (core runner, one vmapped batch) at each η in `lrs` for round(t_max/η) steps and
    one flow solve sampled at every time ηk, and measure the gaps (see `GdFlowComparison`).

    Host-level driver (returns numpy): one target, one init. `ts` (default 101 points on
    [0, t_max]) are the extra times at which `flow` is returned.
    """
    times = _times(lrs, t_max, ts)
    lrs, ts, n_gd, n_cmp = times.lrs, times.ts, times.n_gd, times.n_cmp
    check_flow_args(W0, phi, ts, mask)
    dtype = W0.dtype
    mask = jnp.ones_like(W0) if mask is None else jnp.asarray(mask, dtype)

    flow = gradient_flow_jit(W0, phi, jnp.asarray(times.grid, dtype), mask, rtol=float(rtol),
                             atol=float(atol), max_steps=int(max_steps))
    losses, W_last, status = _gd_batch(W0, phi, mask, jnp.asarray(lrs, dtype),
                                       jnp.asarray(n_cmp, jnp.int32), int(n_gd.max()) + 1)
    # _gd_batch stops each run at n_cmp; continue to n_gd only where rounding asks for it.
    losses = np.asarray(losses)
    if np.any(n_gd > n_cmp):
        longer, _, _ = _gd_batch(W0, phi, mask, jnp.asarray(lrs, dtype),
                                 jnp.asarray(n_gd, jnp.int32), int(n_gd.max()) + 1)
        losses = np.asarray(longer)
    gd_losses = tuple(losses[i, : n + 1] for i, n in enumerate(n_gd))

    gaps = _gaps(times, gd_losses, np.asarray(flow.losses))
    drifts = np.asarray(jax.vmap(lambda W: invariant_drift(W, W0))(W_last))
    sample = np.searchsorted(times.grid, times.keys[-1])
    flow_at_ts = FlowSolution(jnp.asarray(ts, dtype), flow.losses[sample],
                              flow.invariant_drift[sample], flow.W[sample], flow.status,
                              flow.n_steps)
    return GdFlowComparison(lrs, gaps, fit_power_law(lrs, gaps), drifts,
                            fit_power_law(lrs, drifts), gd_losses, np.asarray(status),
                            flow_at_ts)


# ---------------------------------------------------------------------------------------------
# The modes of ZAS, at any depth
# ---------------------------------------------------------------------------------------------


def compare_gd_flow_modes(phi, depth: int, lrs, t_max: float, *, ts=None,
                          rtol: float = 1e-10, atol: float = 1e-12,
                          max_steps: int = 100_000) -> GdFlowComparison:
    """`compare_gd_flow` for ZAS at any depth, by the mode reduction: GD at each η in
    `lrs` for round(t_max/η) steps beside one mode-flow solve, with the same gaps, drifts
    and slopes (a `GdFlowComparison`; its `flow.W` is None, as the weights of a deep net
    would not fit in memory). Host-level driver: returns numpy."""
    _modes.check_phi(phi)
    _modes.check_depth(depth)
    times = _times(lrs, t_max, ts)
    lrs, ts, n_gd = times.lrs, times.ts, times.n_gd
    dtype = _modes._float_dtype(phi)
    phi = jnp.asarray(phi, dtype)
    flow = _modes.modes_flow_jit(phi, jnp.asarray(depth, dtype), jnp.asarray(times.grid, dtype),
                                 rtol=float(rtol), atol=float(atol), max_steps=int(max_steps))
    # Every η in one vmapped program; each stops at its own horizon (max_iters is data).
    tiny = jnp.asarray(np.finfo(dtype).tiny, dtype)  # never "converged": GD runs to the end
    n_records = int(n_gd.max()) + 1
    res = jax.vmap(lambda lr, n: _modes._run_modes_jit(phi, jnp.asarray(depth, dtype), lr, tiny,
                                                       n, n_records, 1))(
        jnp.asarray(lrs, dtype), jnp.asarray(n_gd, jnp.int32))
    losses = np.asarray(res.losses)
    gd_losses = tuple(losses[i, : n + 1] for i, n in enumerate(n_gd))
    gaps = _gaps(times, gd_losses, np.asarray(flow.losses))
    drifts = np.asarray(_modes.mode_invariant_drift(res.a, res.b))
    sample = np.searchsorted(times.grid, times.keys[-1])
    flow_at_ts = FlowSolution(jnp.asarray(ts, dtype), flow.losses[sample],
                              _modes.mode_invariant_drift(flow.a[sample], flow.b[sample]), None,
                              flow.status, flow.n_steps)
    return GdFlowComparison(lrs, gaps, fit_power_law(lrs, gaps), drifts,
                            fit_power_law(lrs, drifts), gd_losses, np.asarray(res.status),
                            flow_at_ts)


__all__ = ["GdFlowComparison", "compare_gd_flow", "compare_gd_flow_modes"]
