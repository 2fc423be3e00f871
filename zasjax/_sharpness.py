"""Sharpness: the top eigenvalues of the Hessian ∇²R(W), by Lanczos on Hessian-vector products.

Gradient descent W ← W − η∇R(W) is linearly stable near a point only while the sharpness
λ_max(∇²R) ≤ 2/η (on a quadratic it is stable iff every eigenvalue lies in (0, 2/η)).
`sharpness` computes the top-k eigenvalues without ever forming the Hessian: each Lanczos
step is one product v ↦ ∇²R(W)v = d/dε ∇R(W + εv), a `jax.jvp` of the gradient (through
`jax.linearize`, so the gradient's forward pass is done once).

Masks. A run multiplies every update by `mask` (0 on fixed and padded entries), so its
linearisation is W ← W − ηM∇²R(W) with M = diag(mask); the eigenvalues of M∇²R are those of
M^{½}∇²R M^{½}, which is the operator used here. For a 0/1 mask that is the Hessian
restricted to the trainable entries: frozen layers and padding have no curvature directions.

Closed form at the minimum reached from ZAS (tested in `tests/test_sharpness.py`).
Let Φ = U diag(s) Vᵀ (square d × d) and start from ZAS: W_l = I (l < L), W_L = 0. The
gradients keep the mode form

    W_1 = … = W_{L−1} = V diag(a) Vᵀ,   W_L = U diag(b) Vᵀ,   W_{L:1} = U diag(a^{L−1}b) Vᵀ,

since with r = a^{L−1}b − s, ∇_{W_L} = U diag(r a^{L−1}) Vᵀ and ∇_{W_l} = V diag(r b a^{L−2}) Vᵀ
for every l < L (a, b start at 1, 0). Per mode ȧ = −r b a^{L−2}, ḃ = −r a^{L−1}, so
d/dt (a² − b²) = 0: the invariant D_{L−1} = W_LᵀW_L − W_{L−1}W_{L−1}ᵀ = −I (Wu-Wang-Ma
eq. 4.3) is a² − b² = c = 1 per mode. (One GD step multiplies c by 1 − η²r²a^{2L−4}, so GD
ends slightly below 1.) At the minimum a^{L−1}b = s, so x = a² solves

    x^{L−1}(x − c) = s²,    b² = x − c.

At a global minimum (residual E = 0) the Hessian is the Gauss-Newton term JᵀJ, with
JΔ = Σ_l W_{L:l+1} Δ_l W_{l−1:1}; its nonzero eigenvalues are those of JJᵀ: M ↦ Σ_l
(W_{L:l+1}W_{L:l+1}ᵀ) M (W_{l−1:1}ᵀW_{l−1:1}), which in the basis M = U e_i e_jᵀ Vᵀ is diagonal:

    λ_ij = x_j^{L−1} + b_i² Σ_{l=1}^{L−1} x_i^{L−1−l} x_j^{l−1},     i, j = 1..d,

and all other L·d² − d² eigenvalues are 0. Every term grows with s_i and s_j, so the top one
is i = j at the largest singular value s_1:

    λ_max = x^{L−1} + (L − 1) b² x^{L−2} = x^{L−2}(L x − (L − 1)c),   x^{L−1}(x − c) = s_1².

Depth 1: ∇²R = I, λ_max = 1 exactly. Depth 2, Φ = −1: x = golden ratio, λ_max = 2x − 1 = √5.
For large L, x − 1 ≈ log(L s²)/L, so λ_max ≈ L s_1² (1 + 1/log(L s_1²)): the stable
learning rates at the ZAS solution shrink like 2/(L s_1²).

Everything acts on ONE network; vmap in the caller.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._objectives import Regression


class Sharpness(NamedTuple):
    """Top-k eigenpairs of M^{½}∇²R(W)M^{½} (under vmap every field gains a batch axis).

    `eigenvalues: (k,)` largest first; `vectors: (k, L, D, D)` orthonormal Ritz vectors (zero
    off the mask);
    `residuals: (k,)` the true ‖Hu − θu‖ of each; `converged: ()` whether every residual is
    ≤ rtol·max|θ| (so each |θ − λ| ≤ that bound); `iterations: ()` block Lanczos steps (k
    Hessian-vector products each; k more are spent on the residuals).
    """

    eigenvalues: jax.Array
    vectors: jax.Array
    residuals: jax.Array
    converged: jax.Array
    iterations: jax.Array

    @property
    def max(self) -> jax.Array:
        """λ_max, the sharpness."""
        return self.eigenvalues[..., 0]


def _gradient(objective):
    """W ↦ ∇R(W) for a `Whitened`/`Regression` objective (the full-batch loss, even when the
    objective draws minibatches) or a callable R(W)."""
    if isinstance(objective, Regression) and objective.batch_size is not None:
        objective = Regression(objective.X, objective.Y)
    if hasattr(objective, "value_and_grad"):
        key = jax.random.key(0)  # unused by full-batch objectives
        return lambda W: objective.value_and_grad(W, key, jnp.matmul, "sequential")[1]
    if callable(objective):
        return jax.grad(objective)
    raise ValueError(f"objective must have value_and_grad(W, key, matmul, prefix) or be a "
                     f"callable loss R(W); got {type(objective).__name__}")


def hessian_vector_product(W: jax.Array, objective, mask: jax.Array | None = None):
    """The operator V ↦ M^{½} ∇²R(W) M^{½} V on arrays shaped like `W: (L, D, D)`.

    `mask` is `(L, D, D)` or broadcastable, entries ≥ 0. One `jax.linearize` of the gradient;
    each call is then one forward-mode pass.
    """
    root = jnp.ones((), W.dtype) if mask is None else jnp.sqrt(jnp.asarray(mask, W.dtype))
    _, lin = jax.linearize(_gradient(objective), W)
    return lambda V: root * lin(root * V)


def _padded_projection(T, active):
    """T with every inactive index (no basis vector yet) given a diagonal below all
    eigenvalues of the active block (a Gershgorin bound − 1), so a static-shape `eigh` sorts
    the spurious eigenvalues last."""
    radius = jnp.sum(jnp.abs(T), axis=1) - jnp.abs(jnp.diag(T))
    low = jnp.min(jnp.where(active, jnp.diag(T) - radius, jnp.inf)) - 1.0
    return T + jnp.diag(jnp.where(active, 0.0, low)), active


def sharpness(W: jax.Array, objective, k: int = 1, *, mask: jax.Array | None = None,
              max_iters: int = 64, rtol: float | None = None,
              key: jax.Array | None = None) -> Sharpness:
    """Top-k eigenvalues of the Hessian of R at `W: (L, D, D)`, restricted to `mask`.

    `objective`: `Whitened(phi)`, `Regression(X, Y)` (full batch), or any callable R(W).
    Block Lanczos with block size k (so an eigenvalue repeated up to k times is found with
    its multiplicity; at the ZAS minimum λ_ij = λ_ji, see the module docstring), full
    reorthogonalisation (each new block is orthogonalised twice against all previous
    vectors) and Rayleigh-Ritz on T = QᵀHQ, for at most `max_iters` block steps (static;
    the basis is capped at L·D² vectors), stopping early once the top-k Ritz pairs have
    estimated residuals ≤ rtol·max|θ| (default rtol: √(machine ε) of W's dtype). Columns that
    break down (the Krylov space became invariant) restart from fresh random vectors.
    `iterations` counts block steps (k Hessian-vector products each). `key` seeds the start
    block (default key(0)). Jit- and vmap-able (over W, objective, mask, key); `k`,
    `max_iters` and `rtol` are static.
    """
    if jnp.ndim(W) != 3 or W.shape[1] != W.shape[2]:
        raise ValueError(f"W must have shape (L, D, D), got {jnp.shape(W)}")
    n = W.size
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of weights), got {k}")
    if int(max_iters) < 1:
        raise ValueError(f"max_iters must be >= 1, got {max_iters}")
    if mask is not None:
        try:
            jnp.broadcast_shapes(jnp.shape(mask), W.shape)
        except ValueError:
            raise ValueError(f"mask {jnp.shape(mask)} does not broadcast to W {W.shape}") from None
    p = int(k)
    m = max(1, min(int(max_iters), n // p))   # block steps; basis size m·p ≤ n
    size = m * p
    dtype = W.dtype
    eps = float(jnp.finfo(dtype).eps)
    rtol = eps**0.5 if rtol is None else float(rtol)
    key = jax.random.key(0) if key is None else key
    root = jnp.broadcast_to(jnp.ones((), dtype) if mask is None else
                            jnp.sqrt(jnp.asarray(mask, dtype)), W.shape).reshape(-1)
    hvp = hessian_vector_product(W, objective, mask)

    def op(v):
        return hvp(v.reshape(W.shape)).reshape(-1)

    def orthogonalise(Q, V):
        # V: (p, n). Twice is enough (Kahan-Parlett): one pass leaves O(ε·cond) behind.
        V = V - (V @ Q.T) @ Q
        return V - (V @ Q.T) @ Q

    def orthonormal(V):
        """Rows of V orthonormalised (QR, twice) and the triangular factor of the first pass:
        V = R_ᵀ Vq. Near-zero diagonal entries of R mark rows with nothing new."""
        Vq, R = jnp.linalg.qr(V.T)
        return jnp.linalg.qr(Vq)[0].T, R

    def random_block(i):
        return root[None, :] * jax.random.normal(jax.random.fold_in(key, i), (p, n), dtype)

    # Breakdown: what is left after reorthogonalisation is rounding, not a new direction.
    tiny = 100.0 * eps * (n**0.5)

    def top_k(T, active):
        Tp, active = _padded_projection(T, active)
        theta, Y = jnp.linalg.eigh(Tp)
        theta, Y = theta[::-1], Y[:, ::-1] * active[:, None].astype(Y.dtype)   # largest first
        filled = jnp.sum(active)
        scale = jnp.maximum(jnp.abs(theta[0]), jnp.abs(theta[jnp.maximum(filled - 1, 0)]))
        return theta[:p], Y[:, :p], scale

    def cond(c):
        return ~c[-1]

    def body(c):
        j, Q, T, live, restarted, exhausted, _ = c
        rows = j * p + jnp.arange(p, dtype=j.dtype)
        B = lax.dynamic_slice_in_dim(Q, j * p, p)             # (p, n) the current block
        Z = jax.vmap(op)(B)                                    # H B
        t = Z @ Q.T                                            # (p, size); later rows are zero
        T = T.at[rows, :].set(t).at[:, rows].set(t.T)
        theta, Y, scale = top_k(T, live)
        Wn = orthogonalise(Q, Z - t @ Q)
        Wq, R = orthonormal(Wn)
        norms = jnp.linalg.norm(Z, axis=1)
        broke = jnp.abs(jnp.diag(R)) <= tiny * jnp.max(norms)
        # A block of random vectors orthogonal to an invariant space, all mapped to ~0: the
        # rest of the spectrum is 0 (with probability 1), so there is nothing more to find.
        exhausted = exhausted | (jnp.all(restarted) & (jnp.max(norms) <= tiny * scale))
        fresh = random_block(j + 1)
        fresh = orthogonalise(Q, fresh / jnp.linalg.norm(fresh, axis=1, keepdims=True))
        fresh_q, Rf = orthonormal(jnp.where(broke[:, None], fresh, Wq))
        # Rows with nothing left to add (the masked space is full) stay zero and inactive.
        new = jnp.abs(jnp.diag(Rf)) > tiny   # every row has norm ≤ 1
        exhausted = exhausted | ~jnp.any(new)
        nxt = jnp.where(new[:, None] & ~exhausted, fresh_q, 0.0)
        start = jnp.minimum(j + 1, m - 1) * p
        more = j + 1 < m
        Q = jnp.where(more, lax.dynamic_update_slice_in_dim(Q, nxt, start, 0), Q)
        live = jnp.where(more, lax.dynamic_update_slice_in_dim(live, new & ~exhausted, start, 0),
                         live)
        # H Q_jᵀ = Q_jᵀ T_j + W_j E_jᵀ with W_j = Rᵀ Wq, so a Ritz pair's residual is
        # ‖R y_j‖ (y_j: its entries on the last block); broken rows contribute ~0.
        R_eff = jnp.where(broke[:, None], 0.0, R)
        Y_last = lax.dynamic_slice_in_dim(Y, j * p, p)         # (p, p)
        res = jnp.linalg.norm(R_eff @ Y_last, axis=0)
        ok = jnp.all(res <= rtol * scale)
        return j + 1, Q, T, live, broke, exhausted, ok | exhausted | (j + 1 >= m)

    Q0, _ = orthonormal(random_block(0))
    init = (jnp.zeros((), jnp.int32), jnp.zeros((size, n), dtype).at[:p].set(Q0),
            jnp.zeros((size, size), dtype), jnp.arange(size) < p, jnp.ones((p,), bool),
            jnp.zeros((), bool), jnp.zeros((), bool))
    steps, Q, T, live, _, _, _ = lax.while_loop(cond, body, init)

    theta, Y, scale = top_k(T, live)
    theta = jnp.where(jnp.all(jnp.isfinite(T)), theta, jnp.nan)  # e.g. W of a diverged run
    # Unit Ritz vectors; exact zeros off the mask (QR leaves rounding there).
    U = (Y.T @ Q) * (root != 0)[None, :].astype(Q.dtype)
    residuals = jnp.linalg.norm(jax.vmap(op)(U) - theta[:, None] * U, axis=1)
    converged = jnp.all(residuals <= rtol * scale)
    return Sharpness(theta, U.reshape(p, *W.shape), residuals, converged, steps)


# ---------------------------------------------------------------------------------------------
# Closed form at the ZAS minimum (module docstring)
# ---------------------------------------------------------------------------------------------


def _zas_mode(s: jax.Array, L: int, c) -> jax.Array:
    """x = a² with x^{L−1}(x − c) = s², x ≥ c, for 0 < c ≤ 1: bisection on [c, c + s²/c^{L−1}],
    where the left side is increasing.

    Compared in log space, (L−1) log x + log(x − c) against 2 log s: x^{L−1} overflows at
    large L, and XLA:CPU evaluated x**1023 inside this loop as NaN (jax 0.10.2).
    """
    lo = jnp.full_like(s, c)
    hi = c + s * s / c ** (L - 1)
    target = 2.0 * jnp.log(s)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = (L - 1) * jnp.log(mid) + jnp.log(mid - c) > target
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = lax.fori_loop(0, 200, body, (lo, hi))
    return 0.5 * (lo + hi)


def _check_depth(L) -> int:
    if isinstance(L, bool) or int(L) != L or int(L) < 1:
        raise ValueError(f"depth L must be an integer >= 1, got {L!r}")
    return int(L)


def zas_minimum(phi: jax.Array, L: int) -> jax.Array:
    """The global minimum `(L, d, d)` that gradient flow from ZAS reaches on Φ: `phi: (d, d)`,
    W_l = V diag(a) Vᵀ (l < L), W_L = U diag(b) Vᵀ with a² = x, b = s/a^{L−1}, x^{L−1}(x − 1) = s²
    (module docstring). L is static."""
    L = _check_depth(L)
    phi = jnp.asarray(phi)
    if L == 1:
        return phi[None]
    U, s, Vt = jnp.linalg.svd(phi)
    a = jnp.sqrt(_zas_mode(s, L, 1.0))
    lower = (Vt.T * a[None, :]) @ Vt
    top = (U * (s / a ** (L - 1))[None, :]) @ Vt
    return jnp.concatenate([jnp.broadcast_to(lower, (L - 1, *phi.shape)), top[None]])


def zas_minimum_eigenvalues(s: jax.Array, L: int, c=1.0) -> jax.Array:
    """The d² nonzero Hessian eigenvalues λ_ij at the mode-form minimum with singular values
    `s: (d,)` and invariant a² − b² = `c` (scalar or `(d,)`, 1 from ZAS under gradient flow),
    largest first, `(d²,)`:

        λ_ij = x_j^{L−1} + (x_i − c_i) Σ_{l=1}^{L−1} x_i^{L−1−l} x_j^{l−1},  x^{L−1}(x − c) = s².
    """
    L = _check_depth(L)
    s = jnp.atleast_1d(jnp.asarray(s))
    if L == 1:
        return jnp.ones((s.shape[0] ** 2,), s.dtype)
    c = jnp.broadcast_to(jnp.asarray(c, s.dtype), s.shape)
    x = jax.vmap(lambda si, ci: _zas_mode(si, L, ci))(s, c)
    l = jnp.arange(1, L, dtype=s.dtype)[None, None, :]
    xi, xj = x[:, None, None], x[None, :, None]
    lam = xj[..., 0] ** (L - 1) + (x - c)[:, None] * jnp.sum(xi ** (L - 1 - l) * xj ** (l - 1),
                                                             axis=-1)
    return jnp.sort(lam.reshape(-1))[::-1]


def zas_minimum_sharpness(s_max, L: int, c=1.0) -> jax.Array:
    """λ_max = x^{L−2}(L·x − (L−1)c) with x^{L−1}(x − c) = s_max², the sharpness at the
    minimum reached from ZAS (c = 1; module docstring). Vmappable over `s_max`; 1 at L = 1.
    One compiled program serves every depth (L is passed as data)."""
    return _minimum_sharpness(s_max, _check_depth(L), c)


@jax.jit
def _minimum_sharpness(s_max, L, c):
    s_max = jnp.asarray(s_max)
    if not jnp.issubdtype(s_max.dtype, jnp.floating):
        s_max = s_max.astype(jnp.result_type(float))
    L, c = jnp.asarray(L, s_max.dtype), jnp.asarray(c, s_max.dtype)
    x = _zas_mode(s_max, L, c)
    lam = jnp.exp((L - 2) * jnp.log(x)) * (L * x - (L - 1) * c)  # x^{L−2} may overflow alone
    return jnp.where(L == 1, jnp.ones_like(lam), lam)



__all__ = ["Sharpness", "sharpness", "hessian_vector_product", "zas_minimum",
           "zas_minimum_eigenvalues", "zas_minimum_sharpness"]
