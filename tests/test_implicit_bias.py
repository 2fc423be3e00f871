"""The implicit bias of depth-2 diagonal networks (zasjax._implicit_bias), in float64: Woodworth
et al.'s limit interpolates and has the mirror form, minimises Q_α among interpolants, tends
to the minimum-ℓ2 interpolant as α → ∞ and the minimum-ℓ1 one as α → 0, and is where gradient
descent of the network itself ends, within O(η)."""

import decimal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zasjax._implicit_bias import (
    diagonal_limit,
    min_l1_interpolant,
    min_l2_interpolant,
    q_alpha,
)

ALPHAS = [1e-4, 1e-2, 1.0, 1e2]

# Jitted once per shape: run eagerly, every new shape recompiles each primitive (seconds).
Q = jax.jit(q_alpha)
Q_BATCH = jax.jit(jax.vmap(q_alpha, in_axes=(0, None)))
GRAD_Q = jax.jit(jax.grad(q_alpha))


def sparse_problem(n, d, seed):
    """Gaussian X: (n, d), y = Xβ* with β* 3-sparse (entries 1, −2, 1.5)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta_star = np.zeros(d)
    beta_star[rng.choice(d, 3, replace=False)] = [1.0, -2.0, 1.5]
    return X, X @ beta_star, beta_star


@pytest.fixture(scope="module")
def problem():
    return sparse_problem(20, 60, seed=0)


def null_space(X):
    """An orthonormal basis (d − n, d) of {v : Xv = 0}."""
    return np.linalg.svd(X)[2][X.shape[0]:]


# α = 1e-16 too, where the Hessian's weights 2α² cosh(Xᵀν) span ~1e32.
@pytest.mark.parametrize("alpha", [*ALPHAS, 1e-16])
def test_limit_interpolates_in_mirror_form(problem, alpha):
    X, y, _ = problem
    beta, nu = diagonal_limit(X, y, alpha, return_dual=True)
    assert beta.shape == (60,) and beta.dtype == np.float64
    assert np.abs(X @ beta - y).max() <= 1e-12  # measured 3e-15 .. 3e-13
    # Optimality (Theorem 1's Lagrange condition): ∇Q_α(β) = arcsinh(β/(2α²)) lies in the
    # row space of X, i.e. is orthogonal to its null space.
    z = np.arcsinh(beta / (2 * alpha**2))
    assert np.linalg.norm(null_space(X) @ z) <= 1e-12 * np.linalg.norm(z)  # measured ≤ 6e-16
    # ... and ν is the multiplier: z = Xᵀν.
    np.testing.assert_allclose(z, X.T @ nu, rtol=0, atol=1e-12 * (1 + np.abs(z).max()))


def test_newton_through_qr(problem, monkeypatch):
    """The QR route of the Newton system alone gives the same limit as Cholesky."""
    import scipy.linalg

    X, y, _ = problem
    expected = diagonal_limit(X, y, 1e-2)

    def fail(*args, **kwargs):
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(scipy.linalg, "cho_factor", fail)
    beta = diagonal_limit(X, y, 1e-2)
    assert np.abs(X @ beta - y).max() <= 1e-12
    np.testing.assert_allclose(beta, expected, rtol=0, atol=1e-12)


def test_kernel_regime(problem):
    """α → ∞: β = 2α² sinh(Xᵀν) with Xᵀν = O(α⁻²) differs from the row-space interpolant
    X⁺y by its cubic term, O(α⁻⁴)."""
    X, y, _ = problem
    l2 = min_l2_interpolant(X, y)
    assert np.abs(X @ l2 - y).max() <= 1e-12
    assert np.linalg.norm(null_space(X) @ l2) <= 1e-12 * np.linalg.norm(l2)
    dist = {a: np.linalg.norm(diagonal_limit(X, y, a) - l2) / np.linalg.norm(l2)
            for a in (10.0, 100.0)}
    assert dist[100.0] <= 1e-9  # measured 5.6e-11
    assert 0.9e4 <= dist[10.0] / dist[100.0] <= 1.1e4  # α⁻⁴: measured 1.00e4


def test_rich_regime(problem):
    """α → 0: Q_α(β) ≈ log(1/α²)‖β‖₁ + Σ|β_i|(log|β_i| − 1), so the limit nears basis
    pursuit, here the 3-sparse β* itself (n = 20 Gaussian samples recover it)."""
    X, y, beta_star = problem
    l1 = min_l1_interpolant(X, y)
    assert np.abs(l1 - beta_star).max() <= 1e-12  # measured 1e-15
    # Off the support, β_i = 2α² sinh(z_i) with z_i ≈ log(1/α²)·c_i, |c_i| < 1 (a dual
    # certificate), so the distance falls as a power of α that depends on the problem:
    # measured 8.9e-2, 1.5e-2, 2.6e-3, 7.5e-5 at α = 1e-2, 1e-3, 1e-4, 1e-6 (≈ α^0.77), and
    # ‖β‖₁ above ‖β_ℓ1‖₁ by 5.1e-2, 7.9e-3, 1.3e-3, 3.6e-5 of it.
    alphas = [1e-2, 1e-3, 1e-4, 1e-6]
    limits = [diagonal_limit(X, y, a) for a in alphas]
    dist = [np.linalg.norm(b - l1) / np.linalg.norm(l1) for b in limits]
    excess = [np.abs(b).sum() / np.abs(l1).sum() - 1 for b in limits]
    assert dist[0] > 3 * dist[1] > 9 * dist[2] > 81 * dist[3]  # at least α^0.48
    assert dist[2] <= 5e-3 and dist[3] <= 2e-4
    assert 0 < excess[2] <= 3e-3 and 0 < excess[3] <= 1e-4


def test_min_l1_against_the_dual_lp():
    """A dense y, where basis pursuit is not β*: ‖β‖₁ equals the dual LP's optimum
    max yᵀν s.t. ‖Xᵀν‖_∞ ≤ 1 (strong duality), solved here independently; no interpolant
    drawn at random, nor the diagonal limit, has a smaller ℓ1 norm."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(1)
    X = rng.standard_normal((15, 40))
    y = rng.standard_normal(15)
    l1 = min_l1_interpolant(X, y)
    assert np.abs(X @ l1 - y).max() <= 1e-12
    assert np.count_nonzero(l1) <= 15  # a vertex
    dual = linprog(-y, A_ub=np.vstack([X.T, -X.T]), b_ub=np.ones(80), bounds=(None, None),
                   method="highs")
    assert dual.status == 0
    np.testing.assert_allclose(np.abs(l1).sum(), -dual.fun, rtol=1e-9)
    others = [diagonal_limit(X, y, a) for a in (1e-4, 1.0)]
    others += list(l1 + rng.standard_normal((5, 25)) @ null_space(X))
    assert all(np.abs(b).sum() > np.abs(l1).sum() for b in others)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_limit_minimises_q_alpha(problem, alpha):
    """Q_α, convex, is smallest at the limit along the feasible lines β + t·v, Xv = 0."""
    X, y, _ = problem
    beta = diagonal_limit(X, y, alpha)
    v = np.random.default_rng(2).standard_normal((4, 40)) @ null_space(X)
    v *= np.linalg.norm(beta) / np.linalg.norm(v, axis=1, keepdims=True)
    t = np.array([-1.0, -1e-2, 1e-2, 1e-1, 1.0])
    others = (beta + t[:, None, None] * v).reshape(-1, beta.size)  # (20, d)
    assert np.abs(X @ others.T - y[:, None]).max() <= 1e-12
    q = np.asarray(Q_BATCH(jnp.asarray(np.vstack([beta, others])), alpha))
    assert (q[1:] > q[0]).all()


def _q_reference(beta, alpha):
    """α² Σ q(β_i/α²) from the formula as written, in decimal arithmetic with the digits its
    cancellations need (2 − √(4 + z²) at z ~ 1e-300: ~600)."""
    D = decimal.Decimal
    total = D(0)
    for b in beta:
        with decimal.localcontext() as ctx:
            ctx.Emin, ctx.Emax = -99999, 99999
            z = abs(D(b)) / D(alpha) ** 2  # q is even
            # 2 − √(4 + z²) loses 2·log10(1/z) digits for z < 1.
            ctx.prec = 40 + 2 * max(0, -z.adjusted())
            z = abs(D(b)) / D(alpha) ** 2
            total += D(alpha) ** 2 * (
                2 - (4 + z * z).sqrt() + z * (z / 2 + (z * z / 4 + 1).sqrt()).ln())
    return float(total)


@pytest.mark.parametrize("alpha", [1e-200, 1e-4, 1e-2, 1.0, 1e2, 1e150])
def test_q_alpha_against_high_precision(alpha):
    values = [1e-300, 1e-8, 0.3, -2.0, 1e5, 1e300]
    for b in values:
        ref = _q_reference([b], alpha)
        if ref >= 1e-300:  # not an underflow
            np.testing.assert_allclose(float(Q(np.array([b]), alpha)), ref, rtol=2e-15)
    beta = np.array([0.0, *values[1:5]])
    np.testing.assert_allclose(float(Q(beta, alpha)), _q_reference(beta, alpha), rtol=4e-15)
    assert float(Q(np.zeros(5), alpha)) == 0.0
    assert float(Q(-beta, alpha)) == float(Q(beta, alpha))


@pytest.mark.parametrize("alpha", ALPHAS)
def test_q_alpha_gradient_is_the_mirror_map(alpha):
    """∇Q_α(β) = arcsinh(β/(2α²)) (q'(z) = arcsinh(z/2)), through every branch, and 0 at 0."""
    beta = np.array([0.0, 1e-9, -3e-5, 0.3, -2.0, 1e3])
    grad = GRAD_Q(jnp.asarray(beta), alpha)
    np.testing.assert_allclose(np.asarray(grad), np.arcsinh(beta / (2 * alpha**2)),
                               rtol=1e-13, atol=0)


@jax.jit
def _gd(X, y, alpha, eta):
    """Gradient descent on R = (1/2n)‖X(w₊² − w₋²) − y‖² from w₊ = w₋ = α·1, until R ≤ 1e-20."""
    n = X.shape[0]

    def step(carry):
        i, wp, wm, _ = carry
        r = X @ (wp * wp - wm * wm) - y
        g = X.T @ r / n  # ∇_β R; ∇_{w₊} R = 2w₊⊙g, ∇_{w₋} R = −2w₋⊙g
        return i + 1, wp - 2 * eta * wp * g, wm + 2 * eta * wm * g, r @ r / (2 * n)

    w0 = jnp.full(X.shape[1], alpha)
    i, wp, wm, loss = jax.lax.while_loop(lambda c: (c[3] > 1e-20) & (c[0] < 10**6), step,
                                         (0, w0, w0, jnp.asarray(1.0)))
    return wp * wp - wm * wm, loss


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0])
def test_gradient_descent_ends_at_the_limit(alpha):
    """GD's limit is the flow's within O(η): the error halves with the step. Measured
    ‖β_GD − β_∞‖ ≈ 0.18η, 0.29η and 0.034η at α = 0.01, 0.1, 1 (n = 10, d = 30); halving
    η multiplies it by 0.51, 0.50 and 0.48."""
    X, y, _ = sparse_problem(10, 30, seed=3)
    limit = diagonal_limit(X, y, alpha)
    err = {}
    for eta in (0.01, 0.005):
        beta, loss = _gd(jnp.asarray(X), jnp.asarray(y), jnp.asarray(alpha), jnp.asarray(eta))
        assert float(loss) <= 1e-20
        err[eta] = np.linalg.norm(np.asarray(beta) - limit)
    assert err[0.01] <= 0.5 * 0.01
    assert 0.4 <= err[0.005] / err[0.01] <= 0.6


GOOD_X = np.random.default_rng(4).standard_normal((3, 5))
GOOD_Y = np.ones(3)
BAD_PROBLEMS = {
    "X 1-D": (np.ones(5), GOOD_Y, "shape"),
    "y 2-D": (GOOD_X, np.ones((3, 1)), "shape"),
    "X complex": (GOOD_X + 1j, GOOD_Y, "real"),
    "n mismatch": (GOOD_X, np.ones(4), "samples"),
    "n > d": (GOOD_X.T, np.ones(5), "n ≤ d"),
    "NaN in X": (np.where(GOOD_X > 1, np.nan, GOOD_X), GOOD_Y, "finite"),
    "inf in y": (GOOD_X, np.array([1.0, np.inf, 0.0]), "finite"),
    "rank deficient": (np.vstack([GOOD_X[:2], GOOD_X[0] + GOOD_X[1]]), GOOD_Y, "row rank"),
}
SOLVERS = {
    "diagonal_limit": lambda X, y: diagonal_limit(X, y, 0.1),
    "min_l1": min_l1_interpolant,
    "min_l2": min_l2_interpolant,
}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", BAD_PROBLEMS)
def test_bad_problems(solver, case):
    X, y, message = BAD_PROBLEMS[case]
    with pytest.raises(ValueError, match=message):
        SOLVERS[solver](X, y)


@pytest.mark.parametrize("alpha", [0.0, -1.0, np.nan, np.inf, True, np.ones(2), "1"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha must be a positive finite"):
        diagonal_limit(GOOD_X, GOOD_Y, alpha)
    with pytest.raises(ValueError, match="alpha must be a positive finite"):
        q_alpha(np.ones(3), alpha)


def test_bad_beta_and_iterations(problem):
    with pytest.raises(ValueError, match=r"vector \(d,\)"):
        q_alpha(np.ones((2, 3)), 1.0)
    X, y, _ = problem
    with pytest.raises(ValueError, match="max_iter"):
        diagonal_limit(X, y, 1.0, max_iter=0)
    with pytest.raises(RuntimeError, match="no convergence in 2 Newton iterations"):
        diagonal_limit(X, y, 1e-4, max_iter=2)
