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
# # The two-parameter landscape: depth 2, width 1, target $\Phi = -1$
#
# The smallest network where depth matters has two scalar layers,
# $W = (w_1, w_2)$ with $W_{2:1} = w_2 w_1$, and the loss (eq. (2.3) with $L = 2$, $d = 1$)
#
# $$R(w_1, w_2) = \tfrac12 (w_2 w_1 - \Phi)^2, \qquad \Phi = -1 .$$
#
# It is Shamir's hard case in miniature: the identity start $(1, 1)$ has product $+1$ and
# must reach $-1$, so one weight has to change sign. Everything in this notebook follows
# from three facts, which we derive and then check numerically.
#
# **Critical points.** $\nabla R = r\,(w_2, w_1)$ with residual $r = w_1 w_2 - \Phi =
# w_1 w_2 + 1$. It vanishes on the hyperbola $w_1 w_2 = -1$ (global minima, $R = 0$) and at
# the origin, a saddle with $R = \tfrac12$.
#
# **A conserved quantity.** Under the gradient flow $\dot w = -\nabla R$,
# $\tfrac{d}{dt}(w_2^2 - w_1^2) = -2 r w_1 w_2 + 2 r w_1 w_2 = 0$. This is the invariant
# $D_1 = W_2^\top W_2 - W_1 W_1^\top$ of Wu, Wang & Ma, eq. (4.3) and Lemma 4.2, in one
# dimension: every flow line stays on one hyperbola $w_2^2 - w_1^2 = c$.
#
# **The stable manifold of the saddle.** Near the origin $R \approx \tfrac12 - \Phi\, w_1 w_2
# = \tfrac12 + w_1 w_2$, with Hessian $\begin{pmatrix} 0 & 1 \\ 1 & 0 \end{pmatrix}$:
# curvature $+1$ along $(1, 1)$ (attracting) and $-1$ along $(1, -1)$ (repelling). So for
# $\Phi = -1$ the attracting line is $w_1 = w_2$ (for $\Phi = +1$ it would be
# $w_1 = -w_2$). Globally: the swap $w_1 \leftrightarrow w_2$ leaves $R$ unchanged, so the
# line $w_1 = w_2 = a$ is invariant under both the flow and gradient descent, and on it
# $\dot a = -(1 + a^2)\,a$, which goes to $0$ from every $a$. Off the line it cannot: a
# start with $c \ne 0$ keeps $c \ne 0$, while the origin has $c = 0$; and the other line
# of $c = 0$, $w_1 = -w_2$, runs into the minima $\pm(1, -1)$. Hence
#
# $$\{\text{starts whose flow converges to the saddle}\} = \{w_1 = w_2\}.$$
#
# Gradient descent with step $\eta$ keeps the line (same symmetry) and contracts along it
# while $\eta(1 + a^2) < 2$; beside it the distance to the line grows by $1 + \eta$ per step
# near the origin, so escaping from an offset $\delta$ takes about
# $\ln(1/\delta) / \ln(1 + \eta)$ iterations.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import zasjax as zj

zj.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel (about 4x); before JAX computes

jax.config.update("jax_enable_x64", True)
QUICK = os.environ.get("ZASJAX_QUICK", "1") == "1"

PHI = -1.0
phi = jnp.full((1, 1), PHI)
LR = 0.05                       # GD step for the trajectories and the escape times
T_FLOW = 12.0                   # flow horizon
N_SAVE = 121 if QUICK else 481  # flow samples per trajectory
N_GD = 400 if QUICK else 1000   # GD steps per trajectory


def net(w1, w2):
    """(w1, w2) → the library's stacked network W: (..., 2, 1, 1), layer 1 first."""
    return jnp.stack([jnp.asarray(w1, float), jnp.asarray(w2, float)], -1)[..., None, None]


def coords(W):
    """W: (..., 2, 1, 1) → (w1, w2) as numpy arrays."""
    W = np.asarray(W)
    return W[..., 0, 0, 0], W[..., 1, 0, 0]


# %% [markdown]
# ## Trajectories from several starts
#
# `zj.gradient_flow` solves $\dot W = -\nabla R(W)$ with diffrax (Tsit5, adaptive steps); it
# acts on one network, so `jax.vmap` runs all starts at once. Gradient descent paths come from a
# five-line `lax.scan` around `zj.loss_and_grad` (`zj.run` returns the end point and the
# loss curve, not the path).

# %%
starts = {
    "ZAS (1, 0)": (1.0, 0.0),
    "near-identity (0.999, 1.001)": (0.999, 1.001),
    "(1.001, 0.999)": (1.001, 0.999),
    "on the line (1.5, 1.5)": (1.5, 1.5),
    "on the line (-1, -1)": (-1.0, -1.0),
    "(0.3, 1.8)": (0.3, 1.8),
    "(-1.5, -0.5)": (-1.5, -0.5),
    "(1.8, -0.2)": (1.8, -0.2),
}
W0 = net(*np.array(list(starts.values())).T)            # (n, 2, 1, 1)
ts = jnp.linspace(0.0, T_FLOW, N_SAVE)
flows = jax.jit(jax.vmap(lambda W: zj.gradient_flow(W, phi, ts)))(W0)


@jax.jit
def gd_path(W0):
    def step(W, _):
        _, grad = zj.loss_and_grad(W, phi)
        return W - LR * grad, W
    return jax.lax.scan(step, W0, None, length=N_GD)[1]  # (N_GD, 2, 1, 1): W_0 .. W_{N-1}


paths = jax.vmap(gd_path)(W0)
assert bool(jnp.all(flows.ok)), "the ODE solver failed"

# %%
g = np.linspace(-2.2, 2.2, 301)
G1, G2 = np.meshgrid(g, g, indexing="xy")
R = 0.5 * (G1 * G2 - PHI) ** 2

fig, ax = plt.subplots(figsize=(9, 6.5), layout="constrained")
ax.contourf(G1, G2, np.log10(R + 1e-3), levels=30, cmap="Greys")
h = np.linspace(0.45, 2.2, 100)
ax.plot(h, -1 / h, color="gold", lw=3, label=r"minima $w_1 w_2 = -1$")
ax.plot(-h, 1 / h, color="gold", lw=3)
ax.plot(g, g, "k--", lw=1.5, label=r"stable manifold $w_1 = w_2$")
for (name, _), fw, gw in zip(starts.items(), flows.W, paths):
    line, = ax.plot(*coords(fw), lw=2, label=name)
    ax.plot(*coords(gw), ".", ms=2, color=line.get_color())
    ax.plot(*coords(fw[0]), "o", color=line.get_color())
ax.plot(0, 0, "kx", ms=10, mew=2)
ax.set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), xlabel="$w_1$ (layer 1)", ylabel="$w_2$ (layer 2)",
       aspect="equal", title=r"$R = \frac{1}{2}(w_2 w_1 + 1)^2$: flow (lines), GD (dots)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
plt.show()

# %% [markdown]
# What you see: each flow line follows its hyperbola $w_2^2 - w_1^2 = c$ into the valley of
# minima; the two starts on the dashed line slide into the saddle at the origin and stay;
# the near-identity start $(0.999, 1.001)$ sits $\approx 10^{-3}$ beside the line, so it
# first heads for the saddle, lingers, and only then leaves along the repelling direction to
# the minimum near $(-1, 1)$ — $w_1$ changes sign. Swap the two coordinates and it ends near
# $(1, -1)$ instead. ZAS starts on $c = -1$, far from the line, and goes straight down.
#
# ZAS even has a closed-form end point: $w_2^2 - w_1^2 = -1$ and $w_1 w_2 = -1$ give
# $w_1^2 = \varphi = (1 + \sqrt5)/2$, the golden ratio, so the flow from ZAS ends at
# $(\sqrt\varphi, -1/\sqrt\varphi) \approx (1.272, -0.786)$.
#
# ## Checks
#
# The invariant $D_1 = w_2^2 - w_1^2$ (`zj.invariants`) must be constant along every flow
# line (up to the ODE tolerance), the ZAS end point must be the golden-ratio point, starts
# on the line must end at the saddle, and every other start at a minimum.

# %%
D = jax.vmap(jax.vmap(zj.invariants))(flows.W)[..., 0, 0, 0]      # (n starts, n times)
drift = np.max(np.abs(D - D[:, :1]))
print(f"max |D_1(t) - D_1(0)| along the flows: {drift:.2e}")
assert drift < 1e-6

golden = (1 + 5**0.5) / 2
zas_end = np.array(coords(flows.W[0, -1]))
print("flow from ZAS ends at", zas_end, "expected", (golden**0.5, -golden**-0.5))
assert np.allclose(zas_end, (golden**0.5, -golden**-0.5), atol=1e-6)

on_line = np.array([w1 == w2 for w1, w2 in starts.values()])
final_loss = np.asarray(flows.losses[:, -1])
final_norm = np.abs(np.asarray(flows.W[:, -1])).max(axis=(1, 2, 3))
assert np.allclose(final_loss[on_line], 0.5, atol=1e-8) and np.all(final_norm[on_line] < 1e-3)
assert np.all(final_loss[~on_line] < 1e-8), final_loss
ni_end = coords(flows.W[1, -1])
assert ni_end[0] < 0 < ni_end[1], "near-identity should cross to the minimum near (-1, 1)"

# %% [markdown]
# ## The stable manifold, numerically, with gradient descent
#
# Now `zj.run` (the library's GD runner, vmapped) from a row of points exactly on
# $w_1 = w_2$ and the same points shifted by $\delta$ across it. On the line GD can never
# reach $R \le \varepsilon$: it runs to `max_iters` with $W \to 0$ and $R \to \tfrac12$.
# Beside it, every run converges.

# %%
EPS, MAX_ITERS = 1e-10, 3_000
a = np.linspace(-2.0, 2.0, 9 if QUICK else 41)
run_all = jax.jit(jax.vmap(lambda W: zj.run(W, phi, lr=LR, eps=EPS, max_iters=MAX_ITERS)))
res_on = run_all(net(a, a))
res_off = run_all(net(a, a + 1e-3))
for ai, s_on, l_on, s_off, k_off in zip(a, res_on.status, res_on.final_loss,
                                         res_off.status, res_off.iterations):
    print(f"a = {ai:+.2f}:  on the line {zj.STATUS_NAMES[int(s_on)]:>9}, R = {float(l_on):.6f}"
          f"   |   beside it {zj.STATUS_NAMES[int(s_off)]} after {int(k_off)} iterations")

assert np.all(np.asarray(res_on.status) == zj.MAX_ITERS)
assert np.allclose(np.asarray(res_on.final_loss), 0.5, atol=1e-12)
assert float(jnp.abs(res_on.W).max()) < 1e-12
assert np.all(np.asarray(res_off.status) == zj.CONVERGED)

# %% [markdown]
# ## Escape time against the distance to the manifold
#
# Start at $(1 - \delta, 1 + \delta)$ (near-identity is $\delta = 10^{-3}$) and measure how
# long the loss stays within 5% of the saddle value $\tfrac12$ with `zj.plateau`. Near the
# origin the offset grows by $1 + \eta$ per step, so the escape time should grow linearly in
# $\log_{10}(1/\delta)$ with slope $\ln 10 / \ln(1 + \eta)$ iterations per decade: a point
# exactly on the manifold has $\delta = 0$ and never escapes.

# %%
deltas = 10.0 ** -np.arange(1, 8 if QUICK else 13)
res_d = run_all(net(1 - deltas, 1 + deltas))
escape = np.asarray(jax.vmap(lambda l: zj.plateau(l, 0.5).escape)(res_d.losses))
assert np.all(np.asarray(res_d.status) == zj.CONVERGED) and np.all(escape > 0)

decades = np.log10(1 / deltas)
slope = np.polyfit(decades, escape, 1)[0]
predicted = np.log(10) / np.log1p(LR)
print(f"escape time grows by {slope:.1f} iterations per decade of 1/delta "
      f"(linearisation: {predicted:.1f})")

fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
ax.plot(decades, escape, "o-", label="GD, measured (zj.plateau)")
ax.plot(decades, escape[-1] + predicted * (decades - decades[-1]), "k--",
        label=r"slope $\ln 10 / \ln(1 + \eta)$")
ax.set(xlabel=r"$\log_{10}(1/\delta)$", ylabel="iterations on the plateau", title=r"escape "
       r"from the saddle, start $(1 - \delta, 1 + \delta)$")
ax.legend()
plt.show()

assert np.all(np.diff(escape) > 0)
assert abs(slope / predicted - 1) < 0.1, (slope, predicted)
