# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Shamir (2019): exponential convergence time in 1-D, and ZAS
#
# A scalar deep linear network w_L ⋯ w_1 trained to Φ = −1. With Xavier (w ~ N(0, 1)) or
# near-identity (1 + N(0, 1/L)) initialisation gradient descent needs exp(Ω(L)) iterations;
# from ZAS it does not. η is tuned per (init, depth) by one rule for every init (lowest
# median iterations over seeds). Growth is measured by the log-linear rate and by the
# local power-law exponent on the lower and upper half of the depths.
#
# Set `ZASJAX_QUICK=1` for the CI size (depths to 16, 64 seeds, cap 20,000, ~1 min on CPU).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import shamir

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/shamir-quick" if QUICK else "runs/shamir")

# %%
cfg = shamir.Config.quick() if QUICK else shamir.Config()
summary = reproduce.run(cfg, OUT)

# %%
for init in shamir.INITS:
    e = summary[init]
    print(f"{init}: rate {e['log_linear_rate']:.3f}/layer, γ {e['power_law_gamma']:.2f}, "
          f"local γ {e['local_gamma_lower']:.2f} → {e['local_gamma_upper']:.2f}, "
          f"super-polynomial: {e['superpolynomial']}")
    for row in e["table"]:
        print(f"   L={row['depth']:>3}  η={row['lr']:.3g}  success={row['success_rate']:.2f}  "
              f"median={row['median_iterations']}")

# %% [markdown]
# ![iterations vs depth](../runs/shamir/shamir.png)
# ![success within the cap](../runs/shamir/shamir_success.png)
