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
# # Implicit regularization: deep matrix factorization prefers low rank
#
# Fill in a low-rank matrix from a few of its entries by gradient descent on a product of
# $L$ square layers, $W_{L:1} = W_L \cdots W_1$, started near zero. Nothing in the loss
# asks for low rank — $R = \tfrac12 \sum_{(i,j) \in \Omega} ((W_{L:1} - \Phi)_{ij})^2$ only
# fits the observed entries — yet the solutions GD finds have low rank, and more so the
# deeper the factorization (Arora, Cohen, Hu & Luo, NeurIPS 2019). Depth 1, the matrix
# itself, leaves every unobserved entry where it started. The convex alternative, the
# matrix of least nuclear norm that fits the observations, is set beside them.
#
# * `zj.completion_problem` draws a random rank-$r$ target and the observed entries;
# * `zj.trajectory` records the effective rank (Roy & Vetterli) and the reconstruction
#   error $\lVert W_{L:1} - \Phi \rVert_F / \lVert \Phi \rVert_F$ along GD, here for depths
#   1–3 and several seeds in one vmapped call (depth as data: shallower nets are padded
#   with identity layers that never train, `zj.pad_depth`);
# * `zj.nuclear_norm_completion` is the convex baseline (needs cvxpy);
# * `zj.sweep` runs a grid of observation counts × depths × seeds as one program.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import zasjax as zj

zj.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

jax.config.update("jax_enable_x64", True)
QUICK = os.environ.get("ZASJAX_QUICK", "1") == "1"

d, r = (16, 2) if QUICK else (40, 3)
n = int(0.45 * d * d)                  # observed entries
depths, seeds = (1, 2, 3), 4 if QUICK else 8
scale = 1e-3 * d**0.5                  # ‖W_{L:1}(0)‖_F: Arora et al.'s init_scale 1e-3
steps = 4_000 if QUICK else 20_000

problem = zj.completion_problem(jax.random.key(0), (d, d), r, n)
s1 = float(jnp.linalg.norm(problem.phi, 2))
print(f"{d} × {d} target of rank {r}, {n} of {d * d} entries observed, σ_1(Φ) = {s1:.1f}")

# %% [markdown]
# ## GD at depths 1–3, vmapped over seeds
#
# Each depth gets its own step, $\eta_L = 1 / (L\,\sigma_1(\Phi)^{2-2/L})$: the sharpness of
# the factorization at a solution grows like $L\,\sigma_1^{2-2/L}$, so this is half the
# stability limit at every depth.

# %%
C = max(depths)


@jax.jit
def inits(keys):
    """`(depths × seeds, C, d, d)`: every depth's small Gaussian init for every seed, padded
    to depth C with identity layers (mask 0: they never train), and the masks.

    One draw of C iid N(0, 1) layers per seed serves every depth: the depth-L init is its
    first L layers times (scale / ‖W_{L:1}‖_F)^{1/L}, which is `make_init("small-gaussian",
    key, (d,) * (L + 1), scale)` — layer l comes from split(key, ·)[l] at any depth — at a
    third of the compile time.
    """
    G = jax.vmap(lambda k: zj.make_init("gaussian", k, (d,) * (C + 1), scale=1.0))(keys)
    W, M = [], []
    for L in depths:
        w = G[:, :L] * (scale / jnp.linalg.norm(jax.vmap(zj.end_to_end)(G[:, :L]),
                                                axis=(1, 2)))[:, None, None, None] ** (1 / L)
        w, m = jax.vmap(lambda w: zj.pad_depth(w, jnp.ones((L, 1, 1)), C))(w)
        W.append(w)
        M.append(jnp.broadcast_to(m, w.shape))
    return jnp.concatenate(W), jnp.concatenate(M)


W0, masks = inits(jax.random.split(jax.random.key(1), seeds))
lrs = jnp.asarray([1.0 / (L * s1 ** (2 - 2 / L)) for L in depths for _ in range(seeds)])

every = steps // 200
record = jax.jit(jax.vmap(lambda W, m, lr: zj.trajectory(W, problem, lr, steps, every, mask=m)))
traj = jax.tree.map(np.asarray, record(W0, masks, lrs))
t = traj["step"][0]
error = traj["reconstruction_error"].reshape(len(depths), seeds, -1)
erank = traj["effective_rank"].reshape(len(depths), seeds, -1)
loss = traj["loss"].reshape(len(depths), seeds, -1)

# %% [markdown]
# The nuclear-norm minimiser of the same problem (skipped, with a note, without cvxpy):

# %%
try:
    X_nuc = zj.nuclear_norm_completion(np.asarray(problem.phi), np.asarray(problem.observed))
    nuc = dict(error=float(zj.reconstruction_error(jnp.asarray(X_nuc), problem.phi)),
               erank=float(zj.effective_rank(jnp.asarray(X_nuc))))
except zj.MissingExtraError as e:
    nuc = None
    print(f"no baseline: {e}")

# %%
fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
for i, L in enumerate(depths):
    for j in range(seeds):
        kw = dict(color=f"C{i}", alpha=0.7, label=f"depth {L}" if j == 0 else None)
        ax.plot(t, loss[i, j], **kw)
        bx.plot(t, error[i, j], **kw)
        cx.plot(t, erank[i, j], **kw)
if nuc is not None:
    bx.axhline(nuc["error"], color="k", ls="--", label="nuclear-norm minimiser")
    cx.axhline(nuc["erank"], color="k", ls="--", label="nuclear-norm minimiser")
cx.axhline(float(zj.effective_rank(problem.phi)), color="grey", ls=":", label="target Φ")
ax.set(yscale="log", xlabel="step", ylabel="R (observed entries)", title="training loss")
bx.set(yscale="log", xlabel="step", ylabel=r"$\|W_{L:1} - \Phi\|_F / \|\Phi\|_F$",
       title="reconstruction error")
cx.set(yscale="log", xlabel="step", ylabel="effective rank", title="effective rank of $W_{L:1}$")
for a in (ax, bx, cx):
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
plt.show()

# %% [markdown]
# What you see: every depth drives the training loss down, but only the factorizations
# (depth ≥ 2) complete the matrix. Depth 1 changes only the observed entries, so its error
# stays near $\sqrt{1 - n/d^2}$ and its effective rank near full. From a small init the
# factorizations first learn the large singular directions one after another — plateaus in
# the loss, steps in the effective rank — and stop near the rank of the target; depth 3
# does so more sharply than depth 2, which lands close to the nuclear-norm minimiser.

# %%
final_error = error[:, :, -1]
med = {L: float(np.median(final_error[i])) for i, L in enumerate(depths)}
print({L: f"{e:.3g}" for L, e in med.items()}, nuc)
assert med[1] > 0.5                             # depth 1 completes nothing
assert med[3] < 0.1 * med[1] and med[3] < med[2]  # depth helps
assert np.median(erank[2, :, -1]) < 1.5 * r     # near the rank of the target
if nuc is not None:
    assert med[3] < nuc["error"]                # and beats the convex baseline here

# %% [markdown]
# ## A sweep: observations × depth
#
# The same question on a grid with `zj.sweep`: each seed draws its own target, observed
# set and init (so the points are problems, not just inits), and every configuration runs
# until its loss is below `eps` — one compiled program for every depth and count. Rows
# carry the reconstruction error and effective rank of the final $W_{L:1}$.

# %%
counts = (int(0.3 * d * d), int(0.45 * d * d), int(0.6 * d * d))
lr_at = {L: (0.5 / (L * (d / r**0.5) ** (2 - 2 / L)),) for L in depths}  # σ_1 ≈ d/√r
grid = zj.Grid(inits=("small-gaussian",), targets=("low-rank",), rank=r, dims=(d,),
               depths=depths, seeds=tuple(range(3 if QUICK else 8)), lrs=lr_at,
               objective="completion", observations=counts, init_scale=(scale,),
               eps=1e-4, max_iters=steps)
rows = zj.sweep(grid, dtype="float64", progress=False)

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for i, L in enumerate(depths):
    med_L = [np.median([x["reconstruction_error"] for x in rows
                        if x["depth"] == L and x["observations"] == c]) for c in counts]
    ax.plot(counts, med_L, "o-", color=f"C{i}", label=f"depth {L}")
ax.set(yscale="log", xlabel="observed entries", ylabel="median reconstruction error",
       title=f"{d} × {d}, rank {r}: error vs observations")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
plt.show()
print({(x["depth"], x["observations"]): x["status"] for x in rows if x["seed"] == 0})
