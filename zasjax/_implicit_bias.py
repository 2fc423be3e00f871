"""The implicit bias of depth-2 diagonal linear networks, exactly: Woodworth et al.'s limit of
gradient flow, and the two interpolants it moves between.

Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro (COLT 2020, "Kernel and
Rich Regimes in Overparametrized Models", Theorem 1) train β = w₊⊙w₊ − w₋⊙w₋ ∈ ℝ^d on the
square loss from w₊ = w₋ = α·1 (each branch's product starts at α²). With X: (n, d),
gradient flow gives ẇ₊ = −2w₊⊙Xᵀr, ẇ₋ = 2w₋⊙Xᵀr (r: the residual, up to the loss's
normalisation), so at every time

    β(t) = α²(e^{−4Xᵀ∫r} − e^{4Xᵀ∫r}) = 2α² sinh(Xᵀν(t)),   ν(t) = −4∫₀ᵗ r,       (mirror form)

and the limit, when it interpolates, is the one interpolant of that form: the minimiser of

    Q_α(β) = α² Σ_i q(β_i/α²),   q(z) = 2 − √(4 + z²) + z·arcsinh(z/2)            (Thm. 1)

subject to Xβ = y, since ∇Q_α(β) = arcsinh(β/(2α²)) (q'(z) = arcsinh(z/2)) and the
Lagrange condition ∇Q_α(β) = Xᵀν is the mirror form. Q_α tends to ‖β‖²/(4α²) as α → ∞
(the kernel regime: the minimum-ℓ2 interpolant) and behaves as log(1/α²)·‖β‖₁ as α → 0 (the
rich regime: the minimum-ℓ1 interpolant, basis pursuit).

`diagonal_limit` solves the convex dual in the n unknowns ν: Q_α's conjugate is
Q_α*(u) = 2α² Σ_i cosh(u_i) − 2α²d, so the minimiser of

    g(ν) = 2α² Σ_i cosh((Xᵀν)_i) − yᵀν,
    ∇g(ν) = X·2α² sinh(Xᵀν) − y = Xβ(ν) − y,   ∇²g(ν) = X diag(2α² cosh(Xᵀν)) Xᵀ,

gives the limit β(ν) = 2α² sinh(Xᵀν); its gradient is the residual. Newton's method with a
backtracking line search finds it; 2α² cosh and 2α² sinh are evaluated as
exp(log α² + |z|)·(1 ± e^{−2|z|}), which neither overflows for small α (at α = 1e-4 the
entries of Xᵀν reach ~20) nor loses the difference for large α.

Everything here runs on the host, in float64 (numpy and scipy): these are reference solvers
to measure the simulator against, not part of it. `q_alpha`, the potential, is also a
measure of a run and is written with jax.numpy: jittable, and vmap it over a batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: The stopping rule of `diagonal_limit`: ‖Xβ − y‖₂ ≤ RTOL·(1 + ‖y‖₂).
RTOL = 1e-13

#: ... or, once Newton's method stops making progress, ‖Xβ − y‖₂ ≤ FLOOR·ε·‖|X|e + |y|‖₂,
#: e = |β|⊙(1 + |log α²| + |Xᵀν|) + 2α² cosh(Xᵀν)⊙|X|ᵀ|ν|, a bound on the residual's
#: rounding error (reached first for an ill-conditioned X or a large y).
FLOOR = 16.0

#: Newton iterations without the residual halving after which `diagonal_limit` accepts a
#: residual at that floor.
FLAT = 5

#: The most one Newton trial step of `diagonal_limit` may change any entry of Xᵀν.
MAX_MOVE = 10.0


def q_alpha(beta, alpha) -> jax.Array:
    """Q_α(β) = α² Σ_i q(β_i/α²), q(z) = 2 − √(4 + z²) + z·arcsinh(z/2) (Woodworth et al.
    2020, Theorem 1): the potential that gradient flow of a depth-2 diagonal network from
    scale α minimises among interpolants (see `diagonal_limit`).

    beta: (d,); alpha: a positive scalar (an array: sweep it with vmap). Returns a scalar
    of beta's floating dtype. Its gradient is the mirror map, ∇Q_α(β) = arcsinh(β/(2α²))
    (q'(z) = arcsinh(z/2)); jax.grad gives it, 0 at β_i = 0.

    Written per coordinate as |β|·(arcsinh(u) − u/(1 + √(1 + u²))), u = |β|/(2α²) (the
    identity 2 − √(4 + z²) = −z²/(2 + √(4 + z²))), so no two large terms cancel: the bracket
    is ≈ u/2 for small u and ≈ log(2u) − 1 for large u. For u > 1, arcsinh(u) and the
    fraction come from t = log u = log|β| − log 2 − 2 log α, so neither α² nor u has to be
    representable: Q_α(1) = log(1/α²) − 1 + O(α²) is right at α = 1e-200, and
    Q_α(β) = ‖β‖²/(4α²)(1 + O(β²/α⁴)) at large α. Against high-precision decimal
    arithmetic each term is right to 1e-15 relative for α from 1e-200 to 1e150 and |β_i|
    from 1e-300 to 1e300 (1e-14 where 2α² overflows, as u then comes from t), short of
    underflow. Jit it (or call it inside a jitted measure): run eagerly, each new shape
    compiles every primitive anew.
    """
    beta = jnp.asarray(beta)
    if beta.ndim != 1:
        raise ValueError(f"beta must be a vector (d,), got shape {beta.shape}")
    if not isinstance(alpha, jax.core.Tracer):
        a = np.asarray(alpha)
        if a.ndim != 0 or a.dtype.kind not in "iuf" or not (np.isfinite(a) and a > 0):
            raise ValueError(f"alpha must be a positive finite scalar, got {alpha!r}")
    if not jnp.issubdtype(beta.dtype, jnp.floating):
        beta = beta.astype(jnp.result_type(float))
    alpha = jnp.asarray(alpha, beta.dtype)
    log_2a2 = jnp.log(jnp.asarray(2, beta.dtype)) + 2 * jnp.log(alpha)
    b = jnp.abs(beta)
    nonzero = b > 0
    # log u, −inf where β_i = 0 (through a safe log: jax.grad stays finite there, = 0).
    t = jnp.where(nonzero, jnp.log(jnp.where(nonzero, b, 1)) - log_2a2, -jnp.inf)
    large = t > 0
    # u > 1: everything in e^{−t} ∈ (0, 1).
    s = jnp.exp(-jnp.where(large, t, 0))
    root = jnp.sqrt(1 + s * s)
    big = jnp.where(large, t, 0) + jnp.log1p(root) - 1 / (s + root)
    # u ≤ 1: u itself, by division where 2α² is a normal number, else from t.
    two_a2 = 2 * alpha * alpha
    normal = jnp.isfinite(two_a2) & (two_a2 >= float(jnp.finfo(beta.dtype).tiny))
    u = jnp.where(normal, b / jnp.where(normal, two_a2, 1), jnp.exp(jnp.minimum(t, 0)))
    u = jnp.where(large, 0, u)
    small = jnp.arcsinh(u) - u / (1 + jnp.sqrt(1 + u * u))
    return jnp.sum(b * jnp.where(large, big, small))


def diagonal_limit(X, y, alpha, *, return_dual: bool = False, max_iter: int = 200):
    """The limit of gradient flow on a depth-2 diagonal network β = w₊⊙w₊ − w₋⊙w₋ from
    w₊ = w₋ = α·1, on the square loss (any normalisation): argmin Q_α(β) subject to Xβ = y
    (Woodworth et al. 2020, Theorem 1; `q_alpha`).

    X: (n, d) with n ≤ d and full row rank n (so that interpolants exist); y: (n,);
    alpha: a positive finite scalar (tested from 1e-16 to 1e50; far below 1e-16 the
    damped phase needs a larger max_iter: ~300 iterations at 1e-30).

    Solved in its mirror form β = 2α² sinh(Xᵀν) by Newton's method on the convex dual
    g(ν) = 2α² Σ cosh(Xᵀν) − yᵀν from ν = 0 (the module's docstring), until
    ‖Xβ − y‖₂ ≤ RTOL·(1 + ‖y‖₂) (a dozen iterations from α = 1e-4 to 1e2 on Gaussian data),
    or, where rounding stops it first (an ill-conditioned X, a large y), at the residual's
    rounding floor (`FLOOR`; on random problems with cond(X) ≤ ~1e3, 3e-12·(1 + ‖y‖₂) at
    worst).
    The Newton system is solved by Cholesky, or, where the Hessian's weights span so many
    orders of magnitude (tiny α) that rounding defeats it, through a QR factorisation of
    diag(√(2α² cosh(Xᵀν)))Xᵀ.

    Returns β: (d,), float64; with return_dual=True the pair (β, ν), ν: (n,), such that
    β = 2α² sinh(Xᵀν) exactly as computed. Raises ValueError on bad input (before any
    solve), RuntimeError when Newton's method stalls or runs out of iterations.
    """
    X, y = _interpolation_problem(X, y)
    alpha = _positive("alpha", alpha)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    log_a2 = 2 * np.log(alpha)
    tol = RTOL * (1 + np.linalg.norm(y))

    def at(nu):
        # β = 2α² sinh(z), w = 2α² cosh(z), g(ν), ‖∇g‖, z = Xᵀν, all in log space.
        z = X.T @ nu
        a = np.abs(z)
        # A trial step may overflow: its g is then inf and the line search rejects it.
        with np.errstate(over="ignore", invalid="ignore"):
            scale = np.exp(log_a2 + a)  # α² e^{|z|}
            beta = np.sign(z) * scale * -np.expm1(-2 * a)
            w = scale * (1 + np.exp(-2 * a))
            r = X @ beta - y
            return beta, w, np.sum(w) - y @ nu, r, np.linalg.norm(r)

    def at_floor(beta, w, nu, rnorm):
        # The rounding floor of the residual: z = Xᵀν carries an absolute error ~ε|X|ᵀ|ν|,
        # hence β = 2α² sinh(z) one of ~ε·w⊙|X|ᵀ|ν| (w = 2α² cosh(z)); exp(log α² + |z|)
        # adds a relative one ~ε(|log α²| + |z|), and Xβ − y one of ε(|X||β| + |y|). A
        # pessimistic bound, used only once Newton's method has stopped making progress
        # (an ill-conditioned or badly scaled X, a large y).
        z = np.abs(X.T @ nu)
        err = np.abs(beta) * (1 + abs(log_a2) + z) + w * (np.abs(X.T) @ np.abs(nu))
        floor = np.linalg.norm(np.abs(X) @ err + np.abs(y))
        return rnorm <= FLOOR * np.finfo(float).eps * floor

    nu = np.zeros(X.shape[0])
    beta, w, g, r, rnorm = at(nu)
    best, flat = rnorm, 0  # flat: iterations since the residual last halved
    stalled = False
    for _ in range(max_iter):
        if rnorm <= tol or (flat >= FLAT and at_floor(beta, w, nu, rnorm)):
            return (beta, nu) if return_dual else beta
        step = -_solve_hessian(X, w, r)
        decrement = -(r @ step)  # λ² = ∇gᵀ(∇²g)⁻¹∇g > 0
        # g is summed from terms as large as Σw: where the decrease Newton promises is
        # below its rounding error, the Armijo test on g would pass or fail at random, and a
        # step must shrink the residual instead (the Newton step decreases ‖∇g‖² too).
        noise = 64 * np.finfo(float).eps * (np.sum(w) + abs(y @ nu))
        # The first steps from ν = 0 scale as 1/α²: no trial moves any (Xᵀν)_i by more
        # than MAX_MOVE (a factor e^MAX_MOVE on β_i), and a step too small to move Xᵀν at
        # all is a stall.
        move = np.abs(X.T @ step).max()
        t = min(1.0, MAX_MOVE / move)
        smallest = 4 * np.finfo(float).eps * (1 + np.abs(X.T @ nu).max())
        while True:
            trial = at(nu + t * step)
            if np.isfinite(trial[2]) and np.isfinite(trial[4]) and (
                    trial[4] < rnorm if decrement <= noise
                    else trial[2] <= g - 0.25 * t * decrement):
                break
            t *= 0.5
            stalled = t * move < smallest
            if stalled:
                break
        if stalled:
            break
        nu = nu + t * step
        beta, w, g, r, rnorm = trial
        best, flat = (rnorm, 0) if rnorm <= 0.5 * best else (best, flat + 1)
    if rnorm <= tol or at_floor(beta, w, nu, rnorm):
        return (beta, nu) if return_dual else beta
    raise RuntimeError(
        f"diagonal_limit: Newton's line search stalled at residual {rnorm:.3g} (target "
        f"{tol:.3g}) for alpha = {alpha:g}" if stalled else
        f"diagonal_limit: no convergence in {max_iter} Newton iterations (residual "
        f"{rnorm:.3g}, target {tol:.3g}) for alpha = {alpha:g}: raise max_iter (α far below "
        "1e-16 needs hundreds)")


def _solve_hessian(X, w, r) -> np.ndarray:
    # (X diag(w) Xᵀ)⁻¹ r by Cholesky; when rounding makes the Hessian look indefinite (the
    # weights 2α² cosh(Xᵀν) spanning ~1e16 at tiny α), through the QR factorisation
    # diag(√w)Xᵀ = QR instead, RᵀR = X diag(w) Xᵀ, which never squares the conditioning.
    import scipy.linalg

    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor((X * w) @ X.T), r)
    except np.linalg.LinAlgError:
        R = scipy.linalg.qr(np.sqrt(w)[:, None] * X.T, mode="r")[0][: X.shape[0]]
        return scipy.linalg.cho_solve((R, False), r)


def min_l2_interpolant(X, y) -> np.ndarray:
    """argmin ‖β‖₂ subject to Xβ = y: β = X⁺y, the kernel regime's limit (Woodworth et al.
    2020: `diagonal_limit` as α → ∞, where Q_α(β) ≈ ‖β‖²/(4α²)).

    X: (n, d) with n ≤ d and full row rank; y: (n,). Returns β: (d,), float64.
    """
    X, y = _interpolation_problem(X, y)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def min_l1_interpolant(X, y) -> np.ndarray:
    """argmin ‖β‖₁ subject to Xβ = y (basis pursuit; Chen, Donoho & Saunders 1998): the rich
    regime's limit (Woodworth et al. 2020: `diagonal_limit` as α → 0, where
    Q_α(β) ≈ log(1/α²)‖β‖₁).

    X: (n, d) with n ≤ d and full row rank; y: (n,). Returns β: (d,), float64.

    Solved as the linear program min 1ᵀ(p + m) s.t. X(p − m) = y, p, m ≥ 0, β = p − m, by
    HiGHS (scipy.optimize.linprog). Its answer is a vertex: β is supported on at most n
    columns S. The values on S are then recomputed from X_S β_S = y by least squares, which
    brings the residual from the solver's feasibility tolerance to rounding, and kept if they
    have β's signs (so ‖β‖₁ stays the LP's linear objective, still optimal). Raises
    ValueError on bad input, RuntimeError when the solver fails.
    """
    X, y = _interpolation_problem(X, y)
    from scipy.optimize import linprog

    n, d = X.shape
    res = linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None),
                  method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                           "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise RuntimeError(f"min_l1_interpolant: linprog failed ({res.message})")
    beta = res.x[:d] - res.x[d:]
    # The support: what the solver's tolerance cannot tell from zero is zero.
    support = np.abs(beta) > 1e-9 * max(1.0, np.abs(beta).max())
    if 0 < support.sum() <= n:
        XS = X[:, support]
        refined, _, rank, _ = np.linalg.lstsq(XS, y, rcond=None)
        if rank == support.sum() and np.all(np.sign(refined) == np.sign(beta[support])):
            beta = np.zeros(d)
            beta[support] = refined
    return beta


def _interpolation_problem(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = _real("X", X, 2, "(n, d)")
    y = _real("y", y, 1, "(n,)")
    n, d = X.shape
    if y.shape[0] != n:
        raise ValueError(f"X holds {n} samples and y {y.shape[0]}: X must be (n, d) and y (n,)")
    if n == 0 or d == 0:
        raise ValueError(f"X must have at least one sample and one feature, got shape {X.shape}")
    if n > d:
        raise ValueError(f"X of shape {X.shape} has more samples than features: an "
                         "interpolant of n samples needs n ≤ d (and X of full row rank)")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite (no NaN or inf)")
    rank = np.linalg.matrix_rank(X)
    if rank < n:
        raise ValueError(f"X must have full row rank n = {n} so that every y is interpolated, "
                         f"got rank {rank}")
    return X, y


def _real(name, value, ndim, expected) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.ndim != ndim:
        raise ValueError(f"{name} must be a real array of shape {expected}, got dtype "
                         f"{a.dtype} and shape {a.shape}")
    return a.astype(np.float64)


def _positive(name, value) -> float:
    a = np.asarray(value)
    if (isinstance(value, bool) or a.ndim != 0 or a.dtype.kind not in "iuf"
            or not (np.isfinite(a) and a > 0)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(a)
