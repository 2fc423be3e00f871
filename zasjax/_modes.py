"""Exact reduced dynamics of gradient descent from ZAS on the whitened loss: d scalar pairs.

Setting. R(W) = ½‖W_L ⋯ W_1 − Φ‖²_F, eq. (2.3), for a square target `phi: (d, d)`, started
from the zero-asymmetric init (ZAS: W_l = I for l < L, W_L = 0) and run by plain GD,
W_l ← W_l − η ∇_l R with ∇_l R = W_{L:l+1}ᵀ E W_{l−1:1}ᵀ and E = W_{L:1} − Φ.

Claim. With an SVD Φ = U diag(s) Vᵀ, every GD iterate has the form

    W_1 = … = W_{L−1} = V diag(a) Vᵀ,        W_L = U diag(b) Vᵀ,        a, b: (d,),

starting from a = 1, b = 0, and the d modes evolve independently (coupled only through η):

    e = a^{L−1} b − s                               (W_{L:1} − Φ = U diag(e) Vᵀ)
    b ← b − η e a^{L−1}                             (∇_L R = E W_{L−1:1}ᵀ = U diag(e a^{L−1}) Vᵀ)
    a ← a − η b e a^{L−2}                           (∇_l R, l < L, below)
    R = ½ Σ_i e_i²

Derivation. Suppose the form holds at step t; write A = V diag(a) Vᵀ (symmetric) and
B = U diag(b) Vᵀ, so W_{L:1} = B A^{L−1} = U diag(b a^{L−1}) Vᵀ and E = U diag(e) Vᵀ. For
l < L, W_{L:l+1} = B A^{L−1−l} = U diag(b a^{L−1−l}) Vᵀ and W_{l−1:1} = V diag(a^{l−1}) Vᵀ, so

    ∇_l R = V diag(b a^{L−1−l}) Uᵀ · U diag(e) Vᵀ · V diag(a^{l−1}) Vᵀ = V diag(b e a^{L−2}) Vᵀ,

the same matrix for every l < L: the lower layers stay equal and keep the form V diag(·) Vᵀ,
and W_L keeps U diag(·) Vᵀ. ZAS is the case a = 1, b = 0; by induction the form holds for
every iterate. (First step: e = −s, so b = ηs, W_L = ηΦ, and a stays 1.) L = 1 has no lower
layers: W_{L:1} = W_1 = U diag(b) Vᵀ, e = b − s, and a is not used.

Any SVD gives the same weights. Each mode's trajectory (a_i, b_i) depends only on s_i, so
a_i = α(s_i) and b_i = β(s_i) for fixed functions α, β, with β(0) = 0 for all t (e = 0 keeps
b = 0, a = 1). Then W_l = V diag(α(s)) Vᵀ = α̃(ΦᵀΦ) with α̃(s²) = α(s), a function of ΦᵀΦ alone
(repeated singular values give the same α on the whole eigenspace, so the choice of basis
inside it does not matter), and W_L = U diag(β(s)) Vᵀ = Φ · β̃(ΦᵀΦ) with β̃(σ²) = β(σ)/σ on
σ > 0 (zero singular values contribute β(0) = 0). Neither depends on which SVD was taken;
for Φ = −I one valid choice is U = −I, s = 1, V = I, and W_l = a I, W_L = −b I.

Cost and stability. One step is O(d) whatever L is: one log and one exp per mode
(`power`: a^{L−2} = ±exp((L−2) log|a|), then a^{L−1} = a^{L−2} · a), about 3× cheaper than
forming each product in log space. A state whose a^{L−2} leaves float range gives a
non-finite loss and counts as diverged, as the full engine's products do. Depth is data (an
array), so one compiled program serves every depth and `jax.vmap` sweeps depths, learning
rates and targets alike. Zero-padded singular values (s = 0) never move, so targets of
several sizes can share one padded d.

Floating point. The reduction is exact in exact arithmetic. In floating point the full
engine's lower layers differ at rounding level, and above the convergent range of η the
mode manifold is transversally unstable, so there the full engine's outcome (a late
divergence, an oscillation) is rounding noise that a 1e-14 nudge of W_0 changes; wherever it
is not, the two engines agree in status, iterations and losses (tests/test_modes.py). Use
float64 at large L: a ≈ 1 + O(1/L) moves by less than float32's resolution near 1.

Stability. At a minimum, λ_max = Σ_l ‖∂p/∂W_l‖² = s²((L−1)/a² + 1/b²) ≥ s²(L−1) for the mode
of largest s (p = a^{L−1} b), so every stable η is below ≈ 2/(s_max² L).

Gradient flow. The flow dW/dt = −∇R from ZAS keeps the same form (the argument above
never used η), and reduces to the 2d scalar ODEs

    da/dt = −b e a^{L−2},        db/dt = −e a^{L−1}         (da/dt = 0 when L = 1),

solved by `modes_flow` with diffrax as `_flow.gradient_flow` solves the full flow.

One module on purpose (~400 lines): the GD map and its flow both rest on the derivation
above and change together. GD against the flow, on the modes as on the full network, is
`_compare.compare_gd_flow_modes`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _status
from ._run import DIVERGENCE_FACTOR, batch_aligned, check_schedule, n_records_for, next_status
from ._status import DIVERGED, FINISHED, MAX_ITERS, RUNNING, flow_status

if TYPE_CHECKING:
    import diffrax

# ---------------------------------------------------------------------------------------------
# Powers, and the reduced loss and gradient
# ---------------------------------------------------------------------------------------------


def power(a, n):
    """a^n elementwise for integer-valued n ≥ 0 (any array broadcasting with `a`), as
    ±exp(n log|a|): one log and one exp, relative error O(ulp · (1 + |n log a|)).

    a^0 = 1 (also for a = 0), 0^n = 0 for n > 0, and a^n beyond float range is ±inf.
    """
    n = jnp.asarray(n, a.dtype)
    sign = jnp.where((a < 0) & (jnp.mod(n, 2) == 1), -1.0, 1.0).astype(a.dtype)
    # n · log|0| = −inf is right for n > 0; for n = 0 it would be 0 · (−inf) = NaN.
    return sign * jnp.exp(jnp.where(n == 0, 0.0, n * jnp.log(jnp.abs(a))))


def mode_loss_and_grad(a, b, s, depth):
    """R and the per-mode gradients (g_a, g_b) of the reduced problem.

    `a, b, s: (d, *batch)`, `depth: (*batch)` or scalar. Returns R: (*batch) = ½ Σ_i e_i²
    with e = a^{L−1} b − s, g_a = b e a^{L−2} (0 when L = 1) and g_b = e a^{L−1}: the
    projections Vᵀ ∇_l R V (any l < L) and Uᵀ ∇_L R V of the full gradient onto the diagonal.
    """
    depth = batch_aligned(depth, a)
    deep = depth > 1
    lower = power(a, jnp.where(deep, depth - 2, 0))      # a^{L−2}
    top = jnp.where(deep, lower * a, 1.0)                  # a^{L−1}
    e = top * b - s
    g_b = e * top
    g_a = jnp.where(deep, b * e * lower, 0.0)
    return 0.5 * jnp.sum(e * e, axis=0), g_a, g_b


# ---------------------------------------------------------------------------------------------
# The state machine (same stopping rule and step counting as `_run`)
# ---------------------------------------------------------------------------------------------


class ModeState(NamedTuple):
    a: jax.Array            # (d, *b) lower layers' eigenvalues: W_l = V diag(a) Vᵀ, l < L
    b: jax.Array            # (d, *b) top layer's singular values: W_L = U diag(b) Vᵀ
    step: jax.Array         # t: update steps applied so far
    loss: jax.Array         # R at the last evaluation
    status: jax.Array       # RUNNING / CONVERGED / DIVERGED / MAX_ITERS
    iterations: jax.Array   # first t with R ≤ ε, −1 if none yet
    blowup: jax.Array       # loss above which the run counts as diverged


def init_state(s, depth) -> ModeState:
    """The ZAS state a = 1, b = 0 before the first iteration (`_run.init_state`'s analogue).

    `s: (d, *batch)` singular values of Φ, `depth: (*batch)` or scalar.
    """
    a, b = jnp.ones_like(s), jnp.zeros_like(s)
    loss0, _, _ = mode_loss_and_grad(a, b, s, jnp.asarray(depth, s.dtype))
    int_ = jnp.int32
    shape = loss0.shape
    return ModeState(a, b, jnp.zeros(shape, int_), loss0, jnp.full(shape, RUNNING, int_),
                     jnp.full(shape, -1, int_), DIVERGENCE_FACTOR * jnp.maximum(loss0, 1.0))


def step(state: ModeState, s, depth, lr, eps, max_iters) -> ModeState:
    """One GD iteration on the modes: evaluate at step t, update the flags, move if running.

    Exactly `_run.step` for plain GD from ZAS: same `next_status`, same freezing, same count.
    Every operation broadcasts, so a batch on trailing axes (`a, b, s: (d, *b)`, scalars
    `(*b)`) steps each configuration as alone.
    """
    depth = jnp.asarray(depth, s.dtype)
    loss, g_a, g_b = mode_loss_and_grad(state.a, state.b, s, depth)
    going = state.status == RUNNING
    status, iterations = next_status(state.status, state.iterations, state.step, loss,
                                     state.blowup, eps, max_iters)
    move = status == RUNNING
    move_, lr_ = batch_aligned(move, state.a), batch_aligned(lr, state.a)
    a = jnp.where(move_, state.a - lr_ * g_a, state.a)
    b = jnp.where(move_, state.b - lr_ * g_b, state.b)
    loss = jnp.where(going, loss, state.loss)
    return ModeState(a, b, state.step + move.astype(state.step.dtype), loss, status, iterations,
                     state.blowup)


def advance(state: ModeState, s, depth, lr, eps, max_iters, n_records: int,
            record_every: int = 1) -> tuple[ModeState, jax.Array]:
    """`n_records · record_every` iterations; returns the new state and `(n_records, *b)`
    losses (R at each block's first iteration while running, NaN after), as `_run.advance`.
    Pure and unjitted."""

    def one(_, st):
        return step(st, s, depth, lr, eps, max_iters)

    def block(st, _):
        going = st.status == RUNNING
        st = step(st, s, depth, lr, eps, max_iters)
        first = jnp.where(going, st.loss, jnp.nan)
        if record_every > 1:
            st = lax.fori_loop(1, record_every, one, st)
        return st, first

    return lax.scan(block, state, None, length=n_records)


# ---------------------------------------------------------------------------------------------
# SVD, weights and the result
# ---------------------------------------------------------------------------------------------


def mode_svd(phi):
    """Φ = U diag(s) Vᵀ with `U, V: (d, d)` orthogonal and `s: (d,)` ≥ 0 (any valid SVD
    gives the same weights, see the module docstring). Returns `(U, s, V)`."""
    U, s, Vh = jnp.linalg.svd(phi)
    return U, s, Vh.T


def mode_weights(a, b, U, V, depth: int):
    """The full weights `(L, d, d)`: W_l = V diag(a) Vᵀ for l < L, W_L = U diag(b) Vᵀ.

    `depth` is a Python int (it sets the shape); meant for small L, e.g. to compare with
    `run`'s weights.
    """
    depth = int(depth)
    lower = (V * a[None, :]) @ V.T
    top = (U * b[None, :]) @ V.T
    return jnp.concatenate([jnp.broadcast_to(lower, (depth - 1, *lower.shape)), top[None]])


class ModeResult(NamedTuple):
    """Outcome of `run_modes` (under vmap every field gains a batch axis).

    The fields of `_run.RunResult` except `W` (rebuild it with `weights()`): `losses:
    (n_records,)` R at every `record_every`-th iteration while running, NaN after; `status`
    (CONVERGED / DIVERGED / MAX_ITERS); `iterations` (updates until R ≤ ε first held, −1 if
    never); `final_loss`; `steps`. Plus the modes `a, b: (d,)`, the SVD `U: (d, d)`,
    `s: (d,)`, `V: (d, d)` and `depth`.
    """

    losses: jax.Array
    status: jax.Array
    iterations: jax.Array
    final_loss: jax.Array
    steps: jax.Array
    a: jax.Array
    b: jax.Array
    U: jax.Array
    s: jax.Array
    V: jax.Array
    depth: jax.Array

    converged = _status.converged
    diverged = _status.diverged

    def weights(self) -> jax.Array:
        """The full network `W: (L, d, d)` of this (unbatched) result; small L only."""
        return mode_weights(self.a, self.b, self.U, self.V, _int_depth(self.depth))

    def end_to_end(self) -> jax.Array:
        """W_{L:1} = U diag(a^{L−1} b) Vᵀ: (d, d), for any L."""
        p = power(self.a, jnp.asarray(self.depth) - 1) * self.b
        return (self.U * p[None, :]) @ self.V.T


# ---------------------------------------------------------------------------------------------
# Validation and the one-call entry point
# ---------------------------------------------------------------------------------------------


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _int_depth(depth) -> int:
    value = np.asarray(depth)
    if value.ndim != 0:
        raise ValueError(f"weights() needs one depth; got shape {value.shape} (a batch?)")
    return int(value)


def check_phi(phi) -> None:
    if jnp.ndim(phi) != 2 or jnp.shape(phi)[0] != jnp.shape(phi)[1]:
        raise ValueError(f"phi must be a square matrix (d, d), got shape {jnp.shape(phi)}")
    if jnp.shape(phi)[0] < 1:
        raise ValueError("phi must have d >= 1")
    if not (jnp.issubdtype(jnp.result_type(phi), jnp.number)
            and not jnp.issubdtype(jnp.result_type(phi), jnp.complexfloating)):
        raise ValueError(f"phi must be real, got dtype {jnp.result_type(phi)}")


def check_depth(depth) -> None:
    if jnp.ndim(depth) != 0:
        raise ValueError(f"depth must be a scalar (vmap to sweep depths), got shape "
                         f"{jnp.shape(depth)}")
    if _concrete(depth):
        L = float(np.asarray(depth))
        if not (np.isfinite(L) and L >= 1 and L == round(L)):
            raise ValueError(f"depth must be an integer >= 1, got {depth}")


def check_modes_args(phi, depth, lr, eps, max_iters, record_every) -> None:
    """ValueError, before tracing, for input `run_modes` cannot use."""
    check_phi(phi)
    check_depth(depth)
    check_schedule(lr, eps, max_iters, record_every)


def _float_dtype(phi):
    dtype = jnp.result_type(phi)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


@partial(jax.jit, static_argnames=("n_records", "record_every"))
def _run_modes_jit(phi, depth, lr, eps, max_iters, n_records, record_every):
    U, s, V = mode_svd(phi)
    state = init_state(s, depth)
    state, losses = advance(state, s, depth, lr, eps, max_iters, n_records, record_every)
    return ModeResult(losses, state.status, state.iterations, state.loss, state.step,
                      state.a, state.b, U, s, V, depth)


def run_modes(phi, depth, *, lr, eps: float = 1e-10, max_iters: int = 10_000,
              record_every: int = 1, throw: bool = False) -> ModeResult:
    """GD from ZAS on R = ½‖W_{L:1} − Φ‖²_F, eq. (2.3), by its exact mode reduction.

    `phi: (d, d)`, `depth` = L ≥ 1 (any integer-valued number or array: one compiled program
    serves every depth). Same iterates, stopping rule, statuses and iteration counts as
    `run(make_init("zas", key, (d,) * (L + 1)), phi, lr=lr, ...)`, at O(d) per step. `phi`,
    `depth`, `lr` and `eps` may be batched with `jax.vmap`; `max_iters` too (it is an array
    argument, the recorded length follows the Python value given); `record_every` is static.
    Returns a `ModeResult`; with `throw=True` a diverged or capped run raises, as in `run`.
    """
    check_modes_args(phi, depth, lr, eps, max_iters, record_every)
    dtype = _float_dtype(phi)
    res = _run_modes_jit(jnp.asarray(phi, dtype), jnp.asarray(depth, dtype),
                          jnp.asarray(lr, dtype), jnp.asarray(eps, dtype),
                          jnp.asarray(max_iters, jnp.int32),
                          n_records_for(max_iters, record_every), int(record_every))
    return _status.error_if(res, res.status) if throw else res


# ---------------------------------------------------------------------------------------------
# Gradient flow of the modes
# ---------------------------------------------------------------------------------------------


class ModeFlowSolution(NamedTuple):
    """The mode flow sampled at `ts: (n,)`: `losses: (n,)` R(t); `a, b: (n, d)`; `status`
    and `n_steps` as in `FlowSolution` (FINISHED when the solver reached the last time)."""

    ts: jax.Array
    losses: jax.Array
    a: jax.Array
    b: jax.Array
    status: jax.Array
    n_steps: jax.Array

    @property
    def ok(self):
        return self.status == FINISHED


def _mode_field(t, y, args):
    s, depth = args
    _, g_a, g_b = mode_loss_and_grad(y[0], y[1], s, depth)
    return -g_a, -g_b


def modes_flow(phi, depth, ts, *, rtol: float = 1e-8, atol: float = 1e-10,
               solver: diffrax.AbstractSolver | None = None,
               max_steps: int = 100_000, throw: bool = False) -> ModeFlowSolution:
    """The gradient flow dW/dt = −∇R from ZAS, as the 2d ODEs da/dt = −b e a^{L−2},
    db/dt = −e a^{L−1} (module docstring), sampled at non-decreasing times `ts: (n,)` ≥ 0.

    `phi: (d, d)`, `depth` = L (data, like `run_modes`). Same conventions as
    `_flow.gradient_flow`: Tsit5 with a PID controller at (`rtol`, `atol`) by default,
    pure and unjitted, vmaps over `phi` and `depth`; failures are flagged in `status`, and
    raise only with `throw=True`.
    """
    check_phi(phi)
    check_depth(depth)
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] < 1:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {jnp.shape(ts)}")
    if _concrete(ts):
        t = np.asarray(ts)
        if t[0] < 0 or np.any(np.diff(t) < 0) or not np.all(np.isfinite(t)):
            raise ValueError("ts must be finite, non-negative and non-decreasing")
    dtype = _float_dtype(phi)
    phi, depth, ts = (jnp.asarray(x, dtype) for x in (phi, depth, ts))
    _, s, _ = mode_svd(phi)
    import diffrax  # lazily, as in `_flow`

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_mode_field),
        diffrax.Tsit5() if solver is None else solver,
        t0=jnp.zeros((), dtype), t1=ts[-1], dt0=None, y0=(jnp.ones_like(s), jnp.zeros_like(s)),
        args=(s, depth), saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False)
    a, b = sol.ys
    losses = jax.vmap(lambda a, b: mode_loss_and_grad(a, b, s, depth)[0])(a, b)
    status = flow_status(sol.result)
    out = ModeFlowSolution(ts, losses, a, b, status, sol.stats["num_accepted_steps"])
    return _status.error_if(out, status, (DIVERGED, MAX_ITERS)) if throw else out


#: `modes_flow` jitted once, so every depth (and target of one d) reuses one compile.
modes_flow_jit = jax.jit(modes_flow, static_argnames=("rtol", "atol", "solver", "max_steps",
                                                      "throw"))


def mode_invariant_drift(a, b):
    """max_l ‖D_l − D_l(0)‖₂ of the network of modes `a, b: (..., d)` from ZAS: only
    D_{L−1} = W_Lᵀ W_L − W_{L−1} W_{L−1}ᵀ = V diag(b² − a²) Vᵀ moves (the lower layers are
    equal, so their D_l = 0), and it starts at −I. Returns `(...)`."""
    return jnp.max(jnp.abs(b * b - a * a + 1.0), axis=-1)


__all__ = ["run_modes", "ModeResult", "ModeState", "init_state", "step", "advance",
           "mode_loss_and_grad", "mode_svd", "mode_weights", "power", "modes_flow",
           "modes_flow_jit", "ModeFlowSolution", "mode_invariant_drift", "check_modes_args",
           "check_phi", "check_depth"]
