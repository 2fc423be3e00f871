# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Arora, Cohen, Golowich & Hu (ICLR 2019): balanced initialisation and deficiency margin
#
# Theorem 1: if the end-to-end matrix at init has deficiency margin c > 0
# (‖W_{N:1}(0) − Φ‖_F ≤ σ_min(Φ) − c) and the layers are δ-balanced with
# δ ≤ c²/(256 N³ ‖Φ‖_F^{2(N−1)/N}), then gradient descent with
# η ≤ c^{(4N−2)/N}/(6144 N³ ‖Φ‖_F^{(6N−4)/N}) satisfies ℓ(t) ≤ ℓ(0) exp(−η c^{2(N−1)/N} t).
# For scalar regression (Φ a 1 × d_0 row) the balanced initialisation meets both conditions
# with a probability that does not depend on depth.
#
# We draw ≥ 100 seeds per depth (one vmapped run each), for the balanced init and for
# iid Gaussian layers scaled to the same expected end-to-end size, and measure the
# success probability (c > 0 at init and ℓ ≤ ε within the budget) and the linear rate.
#
# Set `ZASJAX_QUICK=1` for the smoke size (depths 2, 4, 8; 100 seeds; ~1-2 min on 2 cores).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import arora

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/arora-quick" if QUICK else "runs/arora")

# %%
cfg = arora.Config.quick() if QUICK else arora.Config()
summary = reproduce.run(cfg, OUT)

# %% [markdown]
# The closed-form probability that the balanced init has a positive margin: the end-to-end
# matrix is A ~ N(0, s² I) whatever the depth, and c > 0 ⟺ ‖A − Φ‖ < ‖Φ‖.

# %%
print(f"exact P(c > 0), balanced: {summary['exact_margin_probability_balanced']:.3f}")
for e in summary["results"]:
    print(f"{e['init']:>8} N={e['depth']:>3}  success {e['success_probability']:.2f}  "
          f"c>0 {e['margin_positive_fraction']:.2f}  converged {e['converged_fraction']:.2f}  "
          f"rate {e['median_measured_rate']:.3g}  bound {e['median_bound_rate']:.3g}")

# %% [markdown]
# At Theorem 1's own step size (≈1e-10 here) the bound must hold at every step:

# %%
for e in summary["results"]:
    if "theorem_check" in e:
        c = e["theorem_check"]
        print(f"N={e['depth']:>3}: min measured/bound rate {c['min_rate_ratio']:.1f}, "
              f"max ℓ(t)/bound(t) {c['max_loss_over_bound']:.6f}")

# %% [markdown]
# ![success probability and rates](../runs/arora/arora.png)
