# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Zou, Long & Gu (ICLR 2020): training deep linear ResNets with fixed transforms
#
# f(x) = B (I + W_L) ⋯ (I + W_1) A x with A (m × d) and B (k × m) fixed, every W_l = 0 at
# init, so f = BAx at t = 0. A and B are layers of the stacked network whose trainable mask
# is 0. GD and minibatch SGD (columns sampled without replacement) both reach the global
# minimum; with Gaussian transforms the speed depends on the width m through the
# conditioning of A and B, and the "modified identity" A = [I; 0], B = [0, I] at m = d + k
# is perfectly conditioned. A plain linear net (Xavier, all layers trainable) of the same
# widths is the baseline.
#
# Set `ZASJAX_QUICK=1` for the smoke size (m ∈ {12, 48}, L ∈ {4, 16}, 300 steps).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import zou

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/zou-quick" if QUICK else "runs/zou")

# %%
cfg = zou.Config.quick() if QUICK else zou.Config()
summary = reproduce.run(cfg, OUT)

# %% [markdown]
# Final training loss relative to the initial one (best step-size factor c of the grid):

# %%
for name, table in summary["tables"].items():
    for width, by_depth in table["relative_loss"].items():
        cells = "  ".join(f"L={L}: {v:.1e}" for L, v in by_depth.items())
        print(f"{name:>20} m={width:>3}  {cells}")

# %% [markdown]
# ![relative loss vs width](../runs/zou/zou.png)
