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
# # Diagonal linear networks: kernel and rich regimes, one coordinate at a time
#
# A diagonal linear network of depth $L$ multiplies its layers entry by entry,
#
# $$\beta = w_+^{(L)} \odot \cdots \odot w_+^{(1)} - w_-^{(L)} \odot \cdots \odot w_-^{(1)}
# \in \mathbb{R}^d,$$
#
# every weight starting at $\alpha$ (so $\beta(0) = 0$), and gradient descent trains it on
# linear regression, $R(\beta) = \frac{1}{2n} \lVert X\beta - y \rVert^2$ with $X$ of shape
# $(n, d)$. It is the simplest network whose implicit bias depends on the scale of its
# initialisation, and the field's other toy model beside deep matrix factorization:
#
# * **Kernel to rich.** With fewer samples than features ($n < d$) infinitely many $\beta$
#   fit the data. From a large $\alpha$, GD ends near the minimum-$\ell_2$ interpolant (the
#   kernel regime); from a small $\alpha$, near the minimum-$\ell_1$ one (the rich regime),
#   which recovers a sparse $\beta^*$ from few samples. At depth 2 the limit is known for
#   every $\alpha$: it minimises Woodworth et al.'s potential $Q_\alpha$ among the
#   interpolants (COLT 2020, Theorem 1), `zj.diagonal_limit`. Deeper networks reach the
#   rich regime at larger $\alpha$.
# * **Incremental learning.** From a small $\alpha$ the coordinates of $\beta$ are learned
#   one after another, the largest $|\beta^*_i|$ first, each after a plateau (Gissin et al.,
#   ICLR 2020; Li et al., NeurIPS 2021). When the coordinates decouple ($X^\top X / n
#   \approx I$), each follows the mode ODE $\dot\sigma = c\,\sigma^{2-2/N}(s - \sigma)$ from
#   $\sigma_0 = \alpha^N$ to $s = |\beta^*_i|$; `zj.learning_times` measures when each
#   coordinate reaches half its final value, `zj.mode_half_time` predicts it.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import zasjax as zj

jax.config.update("jax_enable_x64", True)
QUICK = os.environ.get("ZASJAX_QUICK", "1") == "1"

# %% [markdown]
# ## Kernel to rich: test error against α, depths 2 and 3, in one sweep
#
# A few problems: Gaussian covariates $X$ of shape $(n, d)$, a $k$-sparse $\beta^*$ with
# entries $\pm 1$, noiseless labels $y = X\beta^*$. Each is handed to a grid as its data
# (`data=`, the Python side of `--data-file`; `seeds` only labels the problem in the rows),
# and one `zj.sweep` runs every grid: each configuration until $R \le 10^{-10}$ or
# `max_iters`. The rows carry $\lVert \beta - \beta^* \rVert$ (`beta_error`), and
# `save=("end-to-end",)` keeps each run's final $\beta$ for the comparison with the depth-2
# limit below. (A grid can also draw a problem per seed itself — `samples=(n,)`,
# `sparsity=k` — as `zasjax sweep --model diagonal` does; given data, the problems are in
# hand here for the interpolants.) The step per depth is below the stability bound at the
# largest $\alpha$, $2 / (2L\,\alpha^{2L-2}\lambda_{\max}(X^\top X/n))$, with
# $\lambda_{\max} \approx (1 + \sqrt{d/n})^2 \approx 5.8$ here.

# %%
d, n, k = 40, 20, 2
alphas = np.logspace(-2, 0, 5 if QUICK else 11)
depths = (2, 3)
rng = np.random.default_rng(0)
data = []
for _ in range(2 if QUICK else 8):
    X = rng.standard_normal((n, d))
    b = np.zeros(d)
    b[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k)
    data.append((X, X @ b, b))

grids = tuple(zj.Grid(model="diagonal", objective="linear-regression", dims=(d,),
                      depths=depths, init_scale=tuple(alphas), seeds=(i,),
                      lrs={2: (0.05,), 3: (0.035,)}, eps=1e-10,
                      max_iters=10_000 if QUICK else 40_000,
                      data=dict(X=X, y=y, beta_star=b))
              for i, (X, y, b) in enumerate(data))
with tempfile.TemporaryDirectory() as tmp:
    zj.sweep(zj.SweepSpec(grids=grids, dtype="float64", save=("end-to-end",)),
             os.path.join(tmp, "sweep"))
    runs = zj.load_sweep(os.path.join(tmp, "sweep"), arrays=True)
print(runs.groupby(["depth", "init_scale"])["status"].agg(", ".join).to_string())

# %% [markdown]
# The two ends and the exact depth-2 limit, on each problem: `zj.min_l2_interpolant`
# ($X^+y$), `zj.min_l1_interpolant` (a linear program), and `zj.diagonal_limit` on a finer
# grid of $\alpha$ (Newton's method on the mirror form $\beta = 2\alpha^2 \sinh(X^\top\nu)$).

# %%
l2_error = np.mean([np.linalg.norm(zj.min_l2_interpolant(X, y) - b) for X, y, b in data])
l1_error = max(np.linalg.norm(zj.min_l1_interpolant(X, y) - b) for X, y, b in data)
fine = np.logspace(-3, 0.5, 36)
limit_error = np.mean([[np.linalg.norm(zj.diagonal_limit(X, y, a) - b) for a in fine]
                       for X, y, b in data], axis=0)
print(f"min-ℓ2 interpolant: ‖β − β*‖ = {l2_error:.3f} (mean);  min-ℓ1: {l1_error:.1e} (worst)")

# %%
fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
for i, L in enumerate(depths):
    at = runs[runs.depth == L]
    ax.plot(at.init_scale, at.beta_error, "o", color=f"C{i}", alpha=0.35)
    med = at.groupby("init_scale")["beta_error"].median()
    ax.plot(med.index, med.values, "-", color=f"C{i}", label=f"GD, depth {L} (median)")
ax.plot(fine, limit_error, "k:", label="diagonal_limit (depth 2, mean)")
ax.axhline(l2_error, color="grey", ls="--", label="min-ℓ2 interpolant (kernel)")
ax.set(xscale="log", yscale="log", xlabel=r"init scale $\alpha$",
       ylabel=r"$\|\beta - \beta^*\|$",
       title=f"d = {d}, n = {n}, {k}-sparse β*: the min-ℓ1 interpolant is β* itself")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What you see: at $\alpha = 1$ both depths sit at the minimum-$\ell_2$ interpolant's
# error; as $\alpha$ shrinks the error falls towards the minimum-$\ell_1$ interpolant's,
# which is zero here (basis pursuit recovers a 2-sparse $\beta^*$ from 20 samples), and
# depth 3 gets there at a larger $\alpha$ than depth 2. At depth 2 the runs lie on the
# exact limit. The runs from the smaller $\alpha$ stop at `max_iters` (the status table
# above) with losses between $10^{-10}$ and $10^{-4}$: the last bit of fitting moves
# coordinates that are still of size $\sim\alpha^L$, which is slow — yet at depth 2 they
# are already within 2 % of $\lVert\beta^*\rVert$ of the limit.
#
# The checks: every depth-2 run ends within a few percent of $\lVert\beta^*\rVert$ of
# `diagonal_limit` (GD with a finite step is $O(\eta)$ from the flow's limit, and the runs
# stopped at `max_iters` are nearly there); the large-$\alpha$ end is the kernel one; the
# small-$\alpha$ end is near $\beta^*$, nearer at depth 3; and depth 3 is no worse than
# depth 2 at any $\alpha$.

# %%
gaps = []
for row in runs[runs.depth == 2].itertuples():
    X, y, b = data[row.seed]  # the seed column names the problem
    gaps.append(np.linalg.norm(row.end_to_end - zj.diagonal_limit(X, y, row.init_scale))
                / np.linalg.norm(b))
print(f"depth 2, {len(gaps)} runs: ‖β_GD − β_limit‖/‖β*‖ ≤ {max(gaps):.2e}")
assert max(gaps) < 0.05

med = runs.groupby(["depth", "init_scale"])["beta_error"].median()
for L in depths:
    assert abs(med[L, alphas[-1]] - l2_error) < 0.15 * l2_error   # kernel regime
assert med[2, alphas[0]] < 0.2 * l2_error                          # rich regime ...
assert med[3, alphas[0]] < 0.02 * l2_error                         # ... sooner at depth 3
assert l1_error < 1e-8                                             # basis pursuit: β*
assert all(med[3, a] <= med[2, a] * 1.05 for a in alphas)

# %% [markdown]
# ## Incremental learning: which coordinate is learned when
#
# Now $n \gg d$, so that $X^\top X / n \approx I$ and the coordinates nearly decouple, and
# $\beta^* = (4, -3, 2, 1, 0, \dots, 0)$. From $\alpha = 0.01$ each coordinate of the
# support waits near $\beta_i(0) = 0$ — its branch's product $\alpha^N$ grows slowly — then
# jumps to $\beta^*_i$; a negative $\beta^*_i$ is learned by the $w_-$ branch in the same
# way. `zj.learning_curve` runs GD on any parametrization (here `zj.Diagonal()`, the
# parameters `(N, 2, d)`: each layer's $w_+$ and $w_-$) and records the loss and the
# modes — a diagonal network's coordinates — every few steps; `zj.learning_times` turns
# the records into the iteration at which each coordinate first reaches half its final
# value.
#
# The prediction's constant $c$. For $N$ separate layers and the loss with $\tfrac12$ and
# $1/n$, $c = N$: the default of `zj.mode_half_time` (see `zasjax._learning_times`; Li et
# al.'s shared-$u$ network under their loss without $\tfrac12$ has $c = 2N^2$). Gradient
# descent at step $\eta$ takes $t_{1/2}/\eta$ iterations.

# %%
d2, n2, alpha = 10, 4000, 0.01
beta_star = np.zeros(d2)
beta_star[:4] = [4.0, -3.0, 2.0, 1.0]
X2 = np.random.default_rng(7).standard_normal((n2, d2))
problem = zj.LinearRegression(jnp.asarray(X2), jnp.asarray(X2 @ beta_star))
lrs = {2: 0.002, 3: 0.01}          # β_4 = 1 is learned in ~2,300 and ~9,900 iterations
curve = jax.jit(zj.learning_curve, static_argnames=("n_steps", "every", "model"))
records = [jax.tree.map(np.asarray, curve(jnp.full((N, 2, d2), alpha), problem, lrs[N],
                                          n_steps=12_000, every=10, model=zj.Diagonal()))
           for N in depths]
its = records[0]["step"]
betas = np.array([r["modes"] for r in records])     # (depth, record, coordinate)
losses = np.array([r["loss"] for r in records])

support = np.flatnonzero(beta_star)
measured = np.array([zj.learning_times(betas[i], its) for i in range(len(depths))])
predicted = np.array([zj.mode_half_time(alpha**N, np.abs(beta_star[support]), N) / lrs[N]
                      for N in depths])
for i, N in enumerate(depths):
    print(f"depth {N}: measured {measured[i, support]}, predicted "
          f"{np.round(predicted[i])}, off the support {measured[i, support.max() + 1:]}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
for ax, i, N in zip(axes, range(len(depths)), depths):
    for j in range(d2):
        on = j in support
        ax.plot(its, betas[i, :, j], color=f"C{j}" if on else "lightgrey", lw=1.5 if on else 1,
                label=f"β_{j + 1}, β* = {beta_star[j]:g}" if on else None)
    for j, t in zip(support, predicted[i]):
        ax.axvline(t, color=f"C{j}", ls=":", lw=1)
        ax.plot(measured[i, j], betas[i, np.searchsorted(its, measured[i, j]), j], "k|", ms=12)
    bx = ax.twinx()
    bx.plot(its, losses[i], color="k", alpha=0.3, lw=1)
    bx.set(yscale="log", ylabel="loss (grey)")
    ax.set(xlabel="iteration", ylabel=r"$\beta_i$",
           title=f"depth {N}, α = {alpha}, η = {lrs[N]}: dotted = mode_half_time / η")
    ax.set_ylim(-3.7, 6.3)  # room above the curves for the legend
    ax.legend(fontsize=8, loc="upper right", ncol=2)
plt.show()

# %% [markdown]
# What you see: the coordinates jump in the order of $|\beta^*_i|$, each at the time the
# ODE predicts (the dotted lines; the ticks mark `learning_times`), the loss resting on a
# plateau between the jumps (`zj.plateaus` gives their levels). At depth 2 the plateaus'
# lengths go as $\ln(s/\alpha^2)/(2s)$, at depth 3 as $\alpha^{-1}/s$: deeper networks
# wait longer from the same $\alpha$ and jump more sharply. The coordinates off the support
# never get a learning time (NaN: they end at the level of the initialisation).
#
# The checks: the order; every time within 10 % of the prediction (the coupling through
# $X^\top X/n - I$, of order $\sqrt{d/n} = 0.05$, the finite step and the records every 10
# iterations make up the rest: a few percent); $\beta$
# reaches $\beta^*$, the least-squares solution ($n > d$); and the off-support coordinates
# are never learned.

# %%
for i, N in enumerate(depths):
    order = support[np.argsort(measured[i, support])]
    assert list(order) == list(support[np.argsort(-np.abs(beta_star[support]))])
    rel = measured[i, support] / predicted[i] - 1
    print(f"depth {N}: measured / predicted − 1 = {np.round(rel, 3)}")
    assert np.all(np.abs(rel) < 0.10)
    assert np.all(np.isnan(measured[i, support.max() + 1:]))
    assert np.allclose(betas[i, -1], beta_star, atol=1e-3)
levels = zj.plateaus(losses[0], measured[0, support], its).loss
print("depth 2 loss plateaus:", np.array2string(levels, precision=3))
assert np.all(np.diff(levels) < 0)  # each jump lowers the loss
