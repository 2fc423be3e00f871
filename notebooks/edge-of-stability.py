# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sharpness and the edge of stability on deep linear networks
#
# Gradient descent $W \leftarrow W - \eta\nabla R(W)$ is linearly stable at a minimum only
# if the **sharpness** $\lambda_{\max}(\nabla^2 R) \le 2/\eta$. `sharpness` computes the top
# Hessian eigenvalues by block Lanczos on Hessian-vector products (never forming the
# Hessian); `trajectory(..., sharpness=EdgeOfStability(every=s))` records it along a run.
#
# From ZAS the minimum that gradient flow reaches has a closed-form sharpness (derivation in
# `zasjax/_sharpness.py`): with $x^{L-1}(x-1) = s_1^2$ ($s_1$ = largest singular value of
# $\Phi$),
# $$\lambda_{\max} = x^{L-2}\,(Lx - L + 1) \approx L s_1^2 \quad (L \to \infty),$$
# so the learning rates that can settle at that minimum shrink like $2/(L s_1^2)$ — the
# $\eta \approx 1/L$ of Wu-Wang-Ma's Figure 2.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import zasjax as zj
from zasjax._diagnostics import EdgeOfStability, trajectory
from zasjax._run import Whitened
from zasjax._sharpness import sharpness, zas_minimum, zas_minimum_sharpness

zj.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel (about 4x); before JAX computes

jax.config.update("jax_enable_x64", True)
QUICK = os.environ.get("ZASJAX_QUICK", "1") == "1"

# %% [markdown]
# ## Sharpness at the solution from ZAS, against depth
#
# Lanczos on the exact mode-form minimum agrees with the closed form; the best learning rate
# of a Figure 2 tuning run (Φ = −1, d = 1, grid $2^{-12}..2^{-1}$ with 2 per octave,
# iterations to $10^{-10}$) lies between $1/\lambda_{\max}$ and $2/\lambda_{\max}$: stable at
# the solution, and near the rate $1/\lambda_{\max}$ that contracts its stiffest direction
# fastest. (GD's minimum is slightly flatter than the flow's: each step shrinks the
# invariant $a^2 - b^2$ below 1.)

# %%
depths = (1, 4, 16) if QUICK else (1, 2, 4, 8, 16, 32, 64)
phi = -jnp.ones((1, 1))
lrs = jnp.asarray(zj.lr_grid(2.0**-12, 0.5, per_octave=2))
closed = np.array([float(zas_minimum_sharpness(1.0, L)) for L in depths])
lanczos_jit = jax.jit(sharpness)  # one compiled Lanczos per depth (eagerly: op by op, ~2x slower)
lanczos = np.array([float(lanczos_jit(zas_minimum(phi, L), Whitened(phi)).max) for L in depths])
np.testing.assert_allclose(lanczos, closed, rtol=1e-9)


def iterations_to_eps(L):
    W0 = zj.make_init("zas", None, (1,) * (L + 1), dtype=jnp.float64)
    res = jax.vmap(lambda lr: zj.run(W0, phi, lr=lr, eps=1e-10, max_iters=2_000))(lrs)
    return np.where(np.asarray(res.converged), np.asarray(res.iterations), np.inf)


best = np.array([float(lrs[np.argmin(iterations_to_eps(L))]) for L in depths])
for L, lam, eta in zip(depths, closed, best):
    print(f"L = {L:3d}: λ_max = {lam:8.3f}, 2/λ_max = {2 / lam:.4f}, best η = {eta:.4f}, "
          f"best η·λ_max = {eta * lam:.3f}")
# Beyond depth 1 (where the grid's top 1/2 binds), the best rate is stable at the solution.
assert np.all(best[1:] * closed[1:] < 2) and np.all(best[1:] * closed[1:] > 1)

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.loglog(depths, 2 / closed, "o-", label=r"$2/\lambda_{\max}$ at the ZAS solution")
ax.loglog(depths, best, "s--", label=r"best $\eta$ (tuned)")
ax.set(xlabel="depth L", ylabel=r"$\eta$", title=r"$\Phi=-1$, d = 1, from ZAS")
ax.legend()
plt.show()

# %% [markdown]
# ## Progressive sharpening and the edge of stability
#
# $L = 4$, $d = 2$, $\Phi = 2\times$ Gaussian, from ZAS, at three learning rates set against
# the flow minimum's sharpness $\lambda^*$:
#
# * $\eta = 1.5/\lambda^*$: the sharpness rises from ≈ 5 at ZAS to $\lambda^* < 2/\eta$ as
#   the product grows (**progressive sharpening**), and GD converges there;
# * $\eta = 2.2/\lambda^*$: the sharpness overshoots $2/\eta$ early and GD gets stuck in a
#   period-2 orbit above $2/\eta$ whose loss does not go to zero;
# * $\eta = 3/\lambda^*$: no minimum of the mode family is stable; GD is chaotic, and its
#   sharpness keeps returning to the band $2/\eta \pm 10\%$ (**edge of stability**).

# %%
L, d = 4, 2
W0 = zj.make_init("zas", None, (d,) * (L + 1), dtype=jnp.float64)
phi2 = 2.0 * zj.make_target("gaussian", jax.random.key(1), (d, d), jnp.float64)
lam_star = float(zas_minimum_sharpness(jnp.linalg.svd(phi2, compute_uv=False)[0], L))
factors = jnp.array([1.5, 2.2, 3.0])
n_steps = 300 if QUICK else 2_000
traj = jax.jit(jax.vmap(lambda lr: trajectory(W0, phi2, lr, n_steps, every=1,
                                              sharpness=EdgeOfStability(every=2))))
out = traj(factors / lam_star)
print(f"λ* = {lam_star:.3f}")
for f, first, band, loss in zip(factors, out["eos_first_step"], out["eos_band_records"],
                                out["loss"][:, -1]):
    print(f"η = {f:.1f}/λ*: first step above 2/η: {int(first)}, records within ±10% of 2/η: "
          f"{int(band)}, final loss {float(loss):.2e}")

lam = np.asarray(out["sharpness"])
assert int(out["eos_first_step"][0]) == -1 and out["loss"][0, -1] < 1e-20
assert lam[0, 0] < 0.5 * lam_star and abs(lam[0, -1] - lam_star) < 0.05 * lam_star
assert int(out["eos_first_step"][1]) >= 0 and out["loss"][1, -1] > 1e-3
assert int(out["eos_first_step"][2]) >= 0 and int(out["eos_band_records"][2]) > 0

fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
steps = np.asarray(out["sharpness_step"][0])
for i, f in enumerate(np.asarray(factors)):
    line, = axes[0].plot(steps, lam[i], lw=1, label=rf"$\eta = {f}/\lambda^*$")
    axes[0].axhline(2 * lam_star / f, color=line.get_color(), ls="--", lw=1)
    axes[1].semilogy(np.asarray(out["step"][i]), np.asarray(out["loss"][i]), lw=1)
axes[0].axhline(lam_star, color="k", ls=":", label=r"$\lambda^*$ (flow minimum)")
axes[0].set(xlabel="step", ylabel=r"$\lambda_{\max}(\nabla^2 R)$",
            title=r"sharpness (dashed: $2/\eta$)")
axes[0].legend(fontsize=8)
axes[1].set(xlabel="step", ylabel="R", title="loss")
plt.show()
