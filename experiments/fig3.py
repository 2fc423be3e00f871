# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Figure 3: escaping saddles, ZAS against near-identity
#
# Wu, Wang & Ma (NeurIPS 2019), Section 5: depth L = 6, Φ = −I, η = 0.01, here with
# d = 25 (the paper does not give d; 25 is Shamir's multi-dimensional setting). The paper
# shows ZAS converging at once and near-identity runs stuck on saddle plateaus, 2 of 5
# escaping within its budget.
#
# For Φ = −I a saddle with k eigen-directions of W_{L:1} stuck at 0 has R = k/2. With
# d = 25 odd, det W_{L:1} must change sign (near-identity starts with det > 0, and
# det(−I) = −1), so every near-identity run has to cross the k = 1 saddle R = ½. The
# plateau detector looks at every k/2 with a band of ±0.05 and a gradient 10× below the
# ZAS bound √(2R) of eq. (4.8).
#
# `ZASJAX_QUICK=1`: 30,000 iterations (≈ 25 s of CPU time); otherwise 200,000.

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import fig3

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/fig3-quick" if QUICK else "runs/fig3")

# %%
cfg = fig3.Config.quick() if QUICK else fig3.Config()
summary = reproduce.run(cfg, OUT)

# %% [markdown]
# Iterations to R ≤ 10⁻¹⁰ and the time spent on saddle plateaus, per run.

# %%
print(f"budget {summary['max_iters']} iterations; escaped {summary['escaped_within_budget']}"
      f" of {len(summary['iterations_near_identity'])} near-identity runs")
for r in summary["runs"]:
    name = "ZAS" if r["init"] == "zas" else f"near-identity #{r['seed']}"
    print(f"{name:>17}: iterations {r['iterations']}, plateau {r['plateau_length']} its "
          f"{r['plateau_lengths_by_saddle']}, escape at {r['plateau_escape']}, "
          f"det sign at start {r['det_sign']:+d}, "
          f"positive real eigenvalues {r['positive_real_eigenvalues']}")

# %% [markdown]
# ![loss curves](../runs/fig3/fig3.png)
