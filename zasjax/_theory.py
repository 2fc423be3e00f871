"""Closed-form convergence guarantees, and monitors that check them along actual runs.

Wu, Wang & Ma (NeurIPS 2019), from the zero-asymmetric init (ZAS: W_L = 0, W_l = I) on
R = ½‖W_L⋯W_1 − Φ‖²_F with square Φ, any depth L:

* Theorem 4.1 (gradient flow): R(t) ≤ e^{−2t} R(0);
* Theorem 4.3 (gradient descent): with φ = max{2‖Φ‖_F, 3L^{−1/2}, 1} and
  η ≤ min{(4L³φ⁶)⁻¹, (144L²φ⁴)⁻¹}, R(t) ≤ (1 − η/2)^t R(0).

Arora, Cohen, Golowich & Hu (ICLR 2019, arXiv:1810.02281), Theorem 1: deficiency margin
c > 0 and δ-balancedness at init give a linear rate for gradient descent (see
`arora_conditions` for the constants and a caveat).

The monitors report the worst ratio of the measured loss to the guaranteed one along a run:
≤ 1 (up to rounding, or the ODE tolerance for the flow) means the guarantee held.
This module sits above the runners it drives (`_run`, `_flow`) and beside `_diagnostics`;
nothing imports it back.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._flow import gradient_flow_jit
from ._inits import make_init
from ._measures import balancedness, deficiency_margin
from ._run import run

# ---------------------------------------------------------------------------------------------
# Validation (static, before tracing)
# ---------------------------------------------------------------------------------------------


def _check_depth(L) -> int:
    if isinstance(L, bool) or int(L) != L or int(L) < 1:
        raise ValueError(f"depth L must be an integer >= 1, got {L!r}")
    return int(L)


def _check_square(phi, what: str = "target Φ") -> None:
    if jnp.ndim(phi) != 2 or jnp.shape(phi)[0] != jnp.shape(phi)[1]:
        raise ValueError(f"{what} must be a square (d, d) matrix for the ZAS residual "
                         f"network, got shape {jnp.shape(phi)}")


def _check_lr(lr) -> None:
    if not isinstance(lr, jax.core.Tracer) and not np.all(np.asarray(lr) > 0):
        raise ValueError(f"learning rate must be > 0, got {lr}")


class RateCheck(NamedTuple):
    """Measured loss against a guaranteed decay along one run.

    `ratios: (n,)` R(t_j) / bound(t_j) (NaN after a run finished); `max_ratio` their max
    (≤ 1: the guarantee held); `worst` the index of the max; `times: (n,)` t_j (steps for
    GD, continuous time for the flow); `losses: (n,)`; `lr` the step used (NaN for the flow).
    """

    max_ratio: float
    worst: int
    ratios: np.ndarray
    times: np.ndarray
    losses: np.ndarray
    lr: float

    @property
    def holds(self) -> bool:
        return bool(self.max_ratio <= 1.0)


def _rate_check(times, losses, log_bound, lr) -> RateCheck:
    losses = np.asarray(losses, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.exp(np.log(losses) - log_bound)
    finite = np.where(np.isfinite(ratios), ratios, -np.inf)
    worst = int(np.argmax(finite))
    return RateCheck(float(ratios[worst]), worst, ratios, np.asarray(times), losses, lr)


# ---------------------------------------------------------------------------------------------
# Wu-Wang-Ma: Theorem 4.1 (flow) and Theorem 4.3 (GD) from ZAS
# ---------------------------------------------------------------------------------------------


def zas_phi(L: int, phi: jax.Array) -> jax.Array:
    """φ = max{2‖Φ‖_F, 3L^{−1/2}, 1}, the constant of Theorem 4.3. `phi: (d, d)`."""
    L = _check_depth(L)
    _check_square(phi)
    return jnp.maximum(jnp.maximum(2.0 * jnp.linalg.norm(phi), 3.0 / math.sqrt(L)), 1.0)


def zas_lr_bound(L: int, phi: jax.Array) -> jax.Array:
    """The step-size bound of Wu-Wang-Ma Theorem 4.3,

        η* = min{(4L³φ⁶)⁻¹, (144L²φ⁴)⁻¹},  φ = max{2‖Φ‖_F, 3L^{−1/2}, 1},

    under which GD from ZAS satisfies R(t) ≤ (1 − η/2)^t R(0). `phi: (d, d)` is the target
    matrix Φ (vmappable over it); L is static.
    """
    f = zas_phi(L, phi)
    return jnp.minimum(1.0 / (4.0 * L**3 * f**6), 1.0 / (144.0 * L**2 * f**4))


def gd_rate_ratios(losses: jax.Array, lr) -> jax.Array:
    """R(t) / ((1 − η/2)^t R(0)) for t = 0..n−1 given `losses: (n,)` = R(W_t) (Theorem 4.3)."""
    t = jnp.arange(losses.shape[0], dtype=losses.dtype)
    return jnp.exp(jnp.log(losses) - jnp.log(losses[0]) - t * jnp.log1p(-0.5 * lr))


def flow_rate_ratios(ts: jax.Array, losses: jax.Array) -> jax.Array:
    """R(t) / (e^{−2t} R(0)) given the flow's `losses: (n,)` at times `ts: (n,)`, ts[0] = 0
    (Theorem 4.1)."""
    return jnp.exp(jnp.log(losses) - jnp.log(losses[0]) + 2.0 * ts)


def check_gd_rate(phi: jax.Array, L: int, lr=None, n_steps: int = 1000,
                  init: str = "zas", key: jax.Array | None = None) -> RateCheck:
    """Run GD (core runner, float dtype of `phi`) from `init` (default ZAS) at step `lr`
    (default: the Theorem 4.3 bound `zas_lr_bound(L, phi)`) for `n_steps` steps, measure R
    at every step, and report max_t R(t) / ((1 − η/2)^t R(0)). ≤ 1 means the rate held.
    """
    L = _check_depth(L)
    _check_square(phi)
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    phi = jnp.asarray(phi)
    lr = float(zas_lr_bound(L, phi)) if lr is None else lr
    _check_lr(lr)
    if not lr < 2:
        raise ValueError(f"the (1 − η/2)^t rate needs 0 < η < 2, got {lr}")
    key = jax.random.key(0) if key is None else key
    d = phi.shape[0]
    W0 = make_init(init, key, (d,) * (L + 1), dtype=phi.dtype)
    tiny = float(jnp.finfo(phi.dtype).tiny)  # stop only at an exact solution
    res = run(W0, phi, lr=lr, eps=tiny, max_iters=int(n_steps))
    t = np.arange(res.losses.shape[0])
    losses = np.asarray(res.losses, float)
    return _rate_check(t, losses, math.log(losses[0]) + t * math.log1p(-0.5 * lr), float(lr))


def check_flow_rate(phi: jax.Array, L: int, t_max: float = 5.0, n_save: int = 101,
                    init: str = "zas", key: jax.Array | None = None, rtol: float = 1e-8,
                    atol: float = 1e-10) -> RateCheck:
    """Solve the gradient flow (diffrax, `_flow.gradient_flow`) from `init` (default ZAS) and
    report max_t R(t) / (e^{−2t} R(0)) over `n_save` equally spaced t ∈ [0, t_max]
    (Theorem 4.1). ≤ 1 up to the ODE tolerance means the rate held.
    """
    L = _check_depth(L)
    _check_square(phi)
    if not t_max > 0 or int(n_save) < 2:
        raise ValueError(f"need t_max > 0 and n_save >= 2, got {t_max} and {n_save}")
    phi = jnp.asarray(phi)
    key = jax.random.key(0) if key is None else key
    d = phi.shape[0]
    W0 = make_init(init, key, (d,) * (L + 1), dtype=phi.dtype)
    ts = jnp.linspace(0.0, t_max, int(n_save), dtype=phi.dtype)
    sol = gradient_flow_jit(W0, phi, ts, rtol=float(rtol), atol=float(atol))
    losses = np.asarray(sol.losses, float)
    t = np.asarray(ts, float)
    return _rate_check(t, losses, math.log(losses[0]) - 2.0 * t, float("nan"))


# ---------------------------------------------------------------------------------------------
# Arora, Cohen, Golowich & Hu (ICLR 2019), Theorem 1
# ---------------------------------------------------------------------------------------------


class AroraConditions(NamedTuple):
    """Theorem 1 of Arora et al. evaluated at one initialisation (arrays; vmappable).

    `margin` = σ_min(Φ) − ‖W_{N:1} − Φ‖_F (the deficiency margin c if > 0); `delta` the
    balancedness max_l ‖W_{l+1}ᵀW_{l+1} − W_lW_lᵀ‖_F; `delta_max` the balancedness Theorem 1
    asks for; `lr_max` its step-size bound; `holds`: margin > 0 and delta ≤ delta_max;
    `rate` = c^{2(N−1)/N}: for η ≤ lr_max, R(t) ≤ R(0)·exp(−η·rate·t).
    """

    margin: jax.Array
    delta: jax.Array
    delta_max: jax.Array
    lr_max: jax.Array
    holds: jax.Array
    rate: jax.Array


def arora_conditions(W0: jax.Array, phi: jax.Array, widths=None) -> AroraConditions:
    """Check the hypotheses of Arora et al. (2019), Theorem 1, at `W0: (N, D, D)`.

    As transcribed from the paper (arXiv:1810.02281, Theorem 1; whitened data, loss
    ℓ = ½‖W_{N:1} − Φ‖²_F up to a constant): if W_{N:1}(0) has deficiency margin c > 0
    (Definition 2) and the layers are δ-balanced (Definition 1) with

        δ ≤ c² / (256 · N³ · ‖Φ‖_F^{2(N−1)/N}),

    and η ≤ c^{(4N−2)/N} / (6144 · N³ · ‖Φ‖_F^{(6N−4)/N}), then ℓ(T) ≤ ε for every
    T ≥ log(ℓ(0)/ε) / (η c^{2(N−1)/N}); equivalently ℓ(t) ≤ ℓ(0) exp(−η c^{2(N−1)/N} t).
    The theorem also needs hidden widths ≥ min(d_0, d_N), which the balanced init enforces.
    Caveat: the numeric constants (256, 6144) were transcribed from the published statement
    and not re-derived here; `check_arora_rate` tests the implied rate on actual runs.
    """
    N = _check_depth(jnp.shape(W0)[0] if widths is None else len(widths) - 1)
    c = deficiency_margin(W0, phi, widths)
    delta = balancedness(W0, widths)
    norm = jnp.linalg.norm(phi)
    cpos = jnp.maximum(c, 0.0)
    delta_max = cpos**2 / (256.0 * N**3 * norm ** (2.0 * (N - 1) / N))
    lr_max = cpos ** ((4.0 * N - 2) / N) / (6144.0 * N**3 * norm ** ((6.0 * N - 4) / N))
    return AroraConditions(c, delta, delta_max, lr_max, (c > 0) & (delta <= delta_max),
                           cpos ** (2.0 * (N - 1) / N))


def check_arora_rate(W0: jax.Array, phi: jax.Array, lr=None, n_steps: int = 1000,
                     widths=None) -> RateCheck:
    """Run GD from `W0` at `lr` (default: Theorem 1's bound) and report
    max_t R(t) / (R(0) exp(−η c^{2(N−1)/N} t)); meaningful only where
    `arora_conditions(W0, phi, widths).holds`. Give `widths` for rectangular (padded)
    networks, e.g. scalar regression, so σ_min(Φ) is taken over the true block."""
    if jnp.ndim(W0) != 3:
        raise ValueError(f"W0 must have shape (N, D, D), got {jnp.shape(W0)}")
    cond = arora_conditions(W0, phi, widths)
    if lr is None:
        if not bool(cond.holds):
            raise ValueError(f"Theorem 1's conditions do not hold at W0 (margin "
                             f"{float(cond.margin):.3g} must be > 0, balancedness "
                             f"{float(cond.delta):.3g} <= {float(cond.delta_max):.3g}); "
                             "pass lr explicitly to monitor the rate anyway")
        lr = float(cond.lr_max)
    _check_lr(lr)
    tiny = float(jnp.finfo(W0.dtype).tiny)
    res = run(W0, phi, lr=lr, eps=tiny, max_iters=int(n_steps))
    t = np.arange(res.losses.shape[0])
    losses = np.asarray(res.losses, float)
    return _rate_check(t, losses, math.log(losses[0]) - float(lr) * float(cond.rate) * t,
                       float(lr))


__all__ = ["zas_phi", "zas_lr_bound", "gd_rate_ratios", "flow_rate_ratios", "RateCheck",
           "check_gd_rate", "check_flow_rate", "AroraConditions", "arora_conditions",
           "check_arora_rate"]
