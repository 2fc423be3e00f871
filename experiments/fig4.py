# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Figure 4: nonlinear ResNets on Fashion-MNIST, mZAS against Xavier
#
# Wu, Wang & Ma (NeurIPS 2019), Section 6. The residual network of eq. (6.1),
# z_l = z_{l-1} + U_l ReLU(V_l z_{l-1}), is trained by full-batch gradient descent on the
# first 1,000 Fashion-MNIST training images, at depths 100, 200, 2,000 and 10,000. With the
# modified zero-asymmetric initialisation (eq. (6.2): every U = 0) it trains at any depth
# with a learning rate of order 1/L; with Xavier the initial loss is astronomically large
# and gradient descent diverges. The paper reports training accuracy, and so do we.
#
# Set `ZASJAX_QUICK=1` for the smoke size (depths 10 and 100, 1,000 steps, ~2 min on CPU);
# `ZASJAX_FASHION_MNIST` must name the folder with the official IDX files.

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import fig4

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/fig4-quick" if QUICK else "runs/fig4")

# %% [markdown]
# One vmapped run per (init, depth) covers its learning-rate grid around
# η*(L) = min(0.03, 0.75 / L); re-running this cell resumes from `OUT/checkpoints`.

# %%
cfg = fig4.Config.quick() if QUICK else fig4.Config()
summary = reproduce.run(cfg, OUT)

# %%
for run in summary["runs"]:
    print(f"{run['init']:>7} L={run['depth']:>6}  lr={run['lr']:.2e}  "
          f"final acc={run['final_train_accuracy']:.3f}  diverged={run['diverged']}")

# %% [markdown]
# ![training accuracy vs iteration](../runs/fig4/fig4.png)
