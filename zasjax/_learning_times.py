"""Learning times: when each mode is learned, the loss plateaus between, the mode ODE's forecast.

Measured, on a recorded trajectory of ONE run:

* `learning_times(values)`: for each of k modes — the singular values of the end-to-end
  matrix W_{N:1}, largest first, or the coordinates of a diagonal network's β in coordinate
  order — the first recorded iteration at which the mode reaches half of its final value;
* `plateaus(losses, times)`: the loss levels between those jumps.

Predicted, by the decoupled mode ODE of a depth-N network (Saxe, McClelland & Ganguli,
ICLR 2014, at N = 2; Arora, Cohen, Hu & Luo, NeurIPS 2019, Theorem 3, for any N):

    σ̇ = c σ^{2−2/N} (s − σ),        σ(0) = σ₀ > 0,                                  (1)

the gradient flow of one aligned mode from a balanced start (every layer's share of the mode
equal), s > 0 the target's singular value (or |β*_i|). The constant c comes from the
parametrization and the loss's normalisation; from N separate layers w_1..w_N with
σ = w_N⋯w_1 and ẇ_l = −∂R/∂w_l:

    c = N      N separate layers, R = ½‖W_{N:1} − Φ‖²_F (the whitened loss, eq. (2.3)) or
               R = (1/2n)‖Xβ − y‖² with XᵀX/n = I: the default;
    c = 2N     N separate layers under the mean squared error without ½, (1/n)‖Xβ − y‖²;
    c = 2N²    one shared vector u with β = u^N − v^N (Li, Nguyen, Hegde & Wong, NeurIPS 2021)
               under (1/n)‖Xβ − y‖²: ∂β/∂u = N u^{N−1} enters twice.

A negative coordinate β*_i < 0 is learned by its negative branch with the same law: pass
magnitudes |β₀|, |β*_i|. Gradient descent at step η takes about t/η iterations for a flow
time t, with a relative error O(η c s^{2−2/N}) (tests/test_learning_times.py measures it).

`mode_half_time` is the flow time from σ₀ to s/2, `mode_trajectory` is σ(t). Both rest on an
exact antiderivative. With u = σ/s ∈ (0, 1) and ε = 2/N − 1, (1) integrates to

    c s^{2−2/N} t = F(u(t)) − F(u₀),        F′(u) = u^{ε−1} / (1 − u),                   (2)

and F is evaluated by two series that converge at least as 2^{−j} on their halves:

    u ≤ ½:  F(u) = (u^ε − 1)/ε + Σ_{k≥1} u^{k+ε}/(k+ε)                                  (3)
            (the first term is expm1(ε ln u)/ε, → ln u at ε = 0, i.e. N = 2);
    u ≥ ½:  F(u) = F(½) − ln(2w) − Σ_{j≥1} a_j (w^j − 2^{−j})/j,   w = 1 − u,           (4)
            a_j = (p)_j / j! the coefficients of (1 − w)^{−p}, p = 2 − 2/N.

Closed forms follow at N = 1 (ε = 1: F = −ln(1 − u), t = ln(2(1 − u₀))/c) and N = 2 (ε = 0:
F = ln(u/(1 − u)), t = ln(s/σ₀ − 1)/(cs)). In the logit y = ln(u/(1 − u)), dF/dy = u^ε is
monotone, so F is convex (N < 2) or concave (N > 2) in y and Newton's method inverts (2)
from the asymptotic inverse of (3) or (4).

Array namespaces. Every function takes numpy or JAX arrays: given numpy arrays or Python
numbers it computes in float64 numpy on the host; given a JAX array (or inside `jax.jit`,
`jax.vmap`) it computes in JAX, in the widest float the process allows. Bad values that can
be seen (depth < 1, σ₀ ≤ 0) raise ValueError; inside a trace they give NaN instead.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

#: A mode whose final magnitude is at most this fraction of the largest final magnitude counts
#: as not learned (`learning_times` gives it NaN): a zero singular value of the target, or a
#: coordinate off β*'s support, that only drifts at the level of the initialisation.
ZERO_RTOL = 1e-3

_TERMS = 60  # terms of the series (3) and (4): each is below 2^{−j}·j at u = ½, so 60 suffice
_NEWTON = 12  # Newton steps inverting (2): 7 reach rounding level over N ∈ [1, 100], σ₀/s ≥ 1e-300


def _xp(*xs):
    """jax.numpy if any input is a JAX array (or a tracer), else numpy."""
    return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def _float(xp):
    """float64 on the host; in JAX the widest float enabled (float32 without x64)."""
    return np.dtype(np.float64) if xp is np else jnp.asarray(0.0).dtype


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


# ---------------------------------------------------------------------------------------------
# Measured: learning times and plateaus
# ---------------------------------------------------------------------------------------------


def _iterations(xp, iterations, T: int, dtype):
    if iterations is None:
        return xp.arange(T).astype(dtype)
    if np.ndim(iterations) != 1 or np.shape(iterations)[0] != T:
        raise ValueError(f"iterations must have shape ({T},), one per record, got shape "
                         f"{np.shape(iterations)}")
    return xp.asarray(iterations).astype(dtype)


def learning_times(values, iterations=None, rtol: float = ZERO_RTOL):
    """The first recorded iteration at which each mode reaches half of its final value.

    `values: (T, k)`: k mode magnitudes at T records — the singular values of W_{N:1} in
    descending order, or a diagonal network's β in coordinate order; `iterations: (T,)` the
    iteration of each record (default `arange(T)`). Returns `(k,)`, a float array:

        τ_i = min { iterations[t] : values[t, i] / f_i ≥ ½ },

    f_i the final value: the last record whose row is all finite (rows of NaN or inf, e.g.
    padding after a run stopped, are skipped). The ratio makes a negative coordinate count
    too (it reaches half of its negative final value from above). The first crossing counts,
    not the last: a mode that overshoots and comes back keeps its first time, and a mode
    that starts at or above half (a large initialisation) gets `iterations[0]`.

    NaN where a mode has no learning time: its final magnitude is at most `rtol` times the
    largest final magnitude (`ZERO_RTOL` = 1e-3: a zero mode of the target that only drifts
    at the scale of the initialisation), or no row is finite. (A mode with a finite final
    value always crosses: at the latest, its final record does.) The times mean something
    once every mode has settled: a run stopped mid-jump gives the jumping mode a time just
    before the stop.
    """
    if np.ndim(values) != 2:
        raise ValueError(f"values must be (T, k): T records of k modes, got shape "
                         f"{np.shape(values)}")
    T, _ = np.shape(values)
    if T < 1:
        raise ValueError("values must hold at least one record")
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    xp = _xp(values, iterations)
    dtype = _float(xp)
    v = xp.asarray(values).astype(dtype)
    its = _iterations(xp, iterations, T, dtype)
    finite_row = xp.all(xp.isfinite(v), axis=1)
    last = T - 1 - xp.argmax(finite_row[::-1])  # the last finite row (0 if none is)
    final = v[last]
    scale = xp.max(xp.abs(final))
    learned = xp.any(finite_row) & (xp.abs(final) > rtol * scale)
    # v/f ≥ ½ without dividing: v·sign(f) ≥ |f|/2 (NaN records compare False)
    reached = v * xp.sign(final)[None, :] >= 0.5 * xp.abs(final)[None, :]
    first = xp.argmax(reached, axis=0)
    ok = learned & xp.any(reached, axis=0)
    return xp.where(ok, its[first], xp.asarray(np.nan, dtype))


class Plateaus(NamedTuple):
    """The loss between the jumps of `plateaus`: k + 1 intervals, each field `(k + 1,)`.

    Interval j runs over the records with `start[j] ≤ iteration < end[j]` (the last one
    includes `end`): before the first jump, between jumps j and j + 1, after the last.
    `loss[j]` is the median of the finite losses recorded in it (NaN if none).
    Intervals beyond the number of finite learning times are NaN throughout.
    """

    start: jax.Array | np.ndarray
    end: jax.Array | np.ndarray
    loss: jax.Array | np.ndarray


def plateaus(losses, times, iterations=None) -> Plateaus:
    """The loss plateaus between consecutive jumps: a `Plateaus` of k + 1 intervals.

    `losses: (T,)` the recorded loss, `times: (k,)` learning times (e.g. from
    `learning_times`, in any order; NaN entries are dropped and their intervals come last, as
    NaN), `iterations: (T,)` the iteration of each record (default `arange(T)`). With the
    finite times sorted, τ_(1) ≤ … ≤ τ_(m), the intervals are [iterations[0], τ_(1)),
    [τ_(1), τ_(2)), …, [τ_(m), iterations[−1]].

    The level of an interval is the median of the losses recorded in it. Why the median: in
    incremental learning the loss sits near a saddle for most of each interval and falls
    only around the jumps at its ends, so the median of uniformly spaced records is the
    plateau's value whatever the interval's length, without a parameter, and unmoved by the
    drops at either end; a point value (the loss at the interval's midpoint, or at its
    geometric midpoint) needs the jumps to be sharp on the scale chosen, and the geometric
    midpoint is undefined from iteration 0. Where jumps overlap (close singular values, a
    large initialisation) the level lies between the saddles' values. With records spaced
    unevenly (e.g. logarithmically) the median is over records, not over iterations. Compare
    with `plateau`, which measures the one saddle plateau near a given loss.
    """
    if np.ndim(losses) != 1:
        raise ValueError(f"losses must be (T,), got shape {np.shape(losses)}")
    if np.ndim(times) != 1:
        raise ValueError(f"times must be (k,), got shape {np.shape(times)}")
    T = np.shape(losses)[0]
    if T < 1:
        raise ValueError("losses must hold at least one record")
    xp = _xp(losses, times, iterations)
    dtype = _float(xp)
    loss = xp.asarray(losses).astype(dtype)
    its = _iterations(xp, iterations, T, dtype)
    ts = xp.sort(xp.asarray(times).astype(dtype))  # NaN sort last, in numpy and JAX alike
    nan = xp.full((1,), np.nan, dtype)
    start = xp.concatenate([its[:1], ts])
    end = xp.concatenate([ts, its[-1:]])
    # the interval after the last finite time ends at the last record; those after it are NaN
    end = xp.where(xp.isnan(start), np.nan, xp.where(xp.isnan(end), its[-1], end))
    last = xp.concatenate([xp.zeros((len(ts),), bool), xp.ones((1,), bool)])
    inside = (its[None, :] >= start[:, None]) & (
        (its[None, :] < end[:, None]) | (last[:, None] & (its[None, :] <= end[:, None])))
    masked = xp.where(inside, loss[None, :], nan[:, None])
    if xp is np:
        with warnings.catch_warnings():  # an empty interval: NaN, as documented
            warnings.simplefilter("ignore", RuntimeWarning)
            level = np.nanmedian(masked, axis=1)
    else:
        level = jnp.nanmedian(masked, axis=1)
    return Plateaus(start, end, level)


# ---------------------------------------------------------------------------------------------
# Predicted: the decoupled mode ODE (1)
# ---------------------------------------------------------------------------------------------


def _check_ode(sigma0, s, depth, c) -> None:
    """ValueError for values that can be seen (not traced)."""
    for name, x, ok, expected in (
            ("depth", depth, lambda v: v >= 1, ">= 1"),
            ("sigma0", sigma0, lambda v: v > 0, "> 0 (0 is a fixed point of the ODE)"),
            ("s", s, lambda v: v > 0, "> 0 (pass |β*| for a negative coordinate)"),
            ("c", c, lambda v: v > 0, "> 0")):
        if x is not None and _concrete(x):
            v = np.asarray(x, dtype=float)
            if not np.all(np.isfinite(v) & ok(v)):
                raise ValueError(f"{name} must be finite and {expected}, got {x}")


def _ode_arrays(sigma0, s, depth, c):
    """(xp, dtype, σ₀, s, N, c) cast to one float dtype and broadcast, c defaulting to N."""
    _check_ode(sigma0, s, depth, c)
    xp = _xp(sigma0, s, depth, c)
    dtype = _float(xp)
    cast = [xp.asarray(x).astype(dtype) for x in (sigma0, s, depth, depth if c is None else c)]
    return (xp, dtype, *xp.broadcast_arrays(*cast))


def _valid(sigma0, s, depth, c):
    """Where the arguments make sense: the results are NaN elsewhere (traced values)."""
    return (sigma0 > 0) & (s > 0) & (depth >= 1) & (c > 0)


LN2 = float(np.log(2.0))


class _Series(NamedTuple):
    """What (3) and (4) need at one ε, on a trailing axis of length K = `_TERMS`: k = 1..K,
    the exponents k + ε of (3), the coefficients a_k/k of (4) (a_k = (p)_k/k! =
    Π_{i<k} (p + i)/(i + 1), p = 1 − ε), and F(½)."""

    eps: object
    k: object
    ke: object
    ak: object
    half: object


def _series(xp, dtype, eps) -> _Series:
    k = xp.arange(1, _TERMS + 1).astype(dtype).reshape((1,) * eps.ndim + (_TERMS,))
    e = eps[..., None]
    a = xp.cumprod((1.0 - e + k - 1.0) / k, axis=-1)
    ser = _Series(eps, k, k + e, a / k, None)
    return ser._replace(half=_F_low(xp.full(eps.shape, -LN2, dtype), ser, xp))


def _phi(x, eps, xp):
    """expm1(εx)/ε, and x at ε = 0 (no division by zero on either branch)."""
    zero = eps == 0
    safe = xp.where(zero, 1.0, eps)
    return xp.where(zero, x, xp.expm1(safe * x) / safe)


def _F_low(lu, ser: _Series, xp):
    """F of (3) from ln u (u ≤ ½)."""
    return _phi(lu, ser.eps, xp) + xp.sum(xp.exp(ser.ke * lu[..., None]) / ser.ke, axis=-1)


def _F_high(lw, ser: _Series, xp):
    """F of (4) from ln w = ln(1 − u) (u ≥ ½)."""
    tail = xp.sum(ser.ak * (xp.exp(ser.k * lw[..., None]) - xp.exp(-LN2 * ser.k)), axis=-1)
    return ser.half - LN2 - lw - tail


def _softplus(x, xp):
    return xp.logaddexp(0.0, x)


def _F(y, ser: _Series, xp):
    """F of (2) at the logit y = ln(u/(1 − u)); both branches stay finite for every y."""
    lu, lw = -_softplus(-y, xp), -_softplus(y, xp)
    return xp.where(y <= 0, _F_low(lu, ser, xp), _F_high(lw, ser, xp))


def _logit0(sigma0, s, xp):
    """y₀ = ln(u₀/(1 − u₀)) for u₀ = σ₀/s < 1, without forming 1 − u₀."""
    lu = xp.log(sigma0) - xp.log(s)
    return lu - xp.log(-xp.expm1(lu))


def _rate(s, depth, c, xp):
    """c s^{2−2/N}: the time scale of (2)."""
    return c * xp.exp((2.0 - 2.0 / depth) * xp.log(s))


def mode_half_time(sigma0, s, depth, c=None):
    """Gradient-flow time for one mode of the ODE (1) to go from σ₀ to s/2.

    `sigma0`, `s`, `depth`, `c`: arrays that broadcast to one shape (the result's); `c`
    defaults to `depth` (N separate layers under ½‖·‖²: the whitened loss, or a diagonal
    network under (1/2n)‖Xβ − y‖²); pass `c=2*depth` for N separate layers under the mean
    squared error without ½, `c=2*depth**2` for Li et al.'s shared u^N. `depth` ≥ 1 need not
    be an integer. Returns

        t½ = (F(½) − F(σ₀/s)) / (c s^{2−2/N})                                   from (2),

    and 0 where σ₀ ≥ s/2 (the mode starts at or above half, as `learning_times` counts it).
    Closed forms: ln(2(1 − σ₀/s))/c at N = 1; ln(s/σ₀ − 1)/(cs) at N = 2 (Saxe et al.). For
    gradient descent at step η the predicted learning time is t½/η iterations. In float64 it
    agrees with adaptive quadrature to 3e-15 relative over N ∈ [1, 50], σ₀/s ∈ [1e-12, ½).
    """
    xp, dtype, sigma0, s, depth, c = _ode_arrays(sigma0, s, depth, c)
    ser = _series(xp, dtype, 2.0 / depth - 1.0)
    below = sigma0 < 0.5 * s
    lu0 = xp.where(below, xp.log(sigma0) - xp.log(s), -LN2)  # at or above half: 0, no NaN
    t = xp.where(below, (ser.half - _F_low(lu0, ser, xp)) / _rate(s, depth, c, xp), 0.0)
    return xp.where(_valid(sigma0, s, depth, c), t, np.nan)


def mode_trajectory(sigma0, s, depth, t, c=None):
    """σ(t), the solution of the mode ODE (1) from 0 < σ₀ < s at flow time t ≥ 0.

    Arguments broadcast to one shape, the result's (`c` as in `mode_half_time`). Solves
    F(u) = F(σ₀/s) + c s^{2−2/N} t, eq. (2), for u = σ/s by Newton's method in the logit of
    u, started from the asymptotic inverse of (3) (u small) or (4) (u near 1), and returns
    σ = s·u, rising from σ₀ towards s. `mode_trajectory(σ₀, s, N, mode_half_time(σ₀, s, N))`
    is s/2 to rounding. For gradient descent at step η, iteration k is at t = kη.
    """
    if _concrete(t) and not np.all(np.asarray(t, dtype=float) >= 0):
        raise ValueError(f"t must be >= 0, got {t}")
    if _concrete(sigma0) and _concrete(s) and not np.all(
            np.asarray(sigma0, dtype=float) < np.asarray(s, dtype=float)):
        raise ValueError(f"mode_trajectory needs sigma0 < s (a mode learned from below), got "
                         f"sigma0 = {sigma0}, s = {s}")
    xp, dtype, sigma0, s, depth, c = _ode_arrays(sigma0, s, depth, c)
    t = xp.asarray(t).astype(dtype)
    sigma0, s, depth, c, t = xp.broadcast_arrays(sigma0, s, depth, c, t)
    ser = _series(xp, dtype, 2.0 / depth - 1.0)
    y0 = _logit0(sigma0, s, xp)
    r = _F(y0, ser, xp) + _rate(s, depth, c, xp) * t
    y = _newton_start(r, y0, ser, xp)

    def newton(y):
        dy = (_F(y, ser, xp) - r) / xp.exp(-ser.eps * _softplus(-y, xp))  # dF/dy = u^ε
        return xp.maximum(y - dy, y0)

    if xp is np:
        for _ in range(_NEWTON):
            y = newton(y)
    else:
        y = lax.fori_loop(0, _NEWTON, lambda _, y: newton(y), y)
    ok = _valid(sigma0, s, depth, c) & (sigma0 < s) & (t >= 0)
    return xp.where(ok, s * xp.exp(-_softplus(-y, xp)), np.nan)


def _newton_start(r, y0, ser: _Series, xp):
    """A starting logit for F(y) = r: the inverse of (3)'s first term below F(½), of (4)'s
    logarithm above it."""
    half, zero = ser.half, ser.eps == 0
    safe = xp.where(zero, 1.0, ser.eps)
    arg = xp.maximum(1.0 + safe * r, np.finfo(ser.eps.dtype).tiny)
    lu = xp.minimum(xp.where(zero, r, xp.log(arg) / safe), -LN2)
    y_low = lu - xp.log(-xp.expm1(lu))
    lw = xp.minimum(half - LN2 - r, -LN2)
    y_high = xp.log(-xp.expm1(lw)) - lw
    return xp.maximum(xp.where(r <= half, y_low, y_high), y0)
