# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Arora, Cohen, Hu & Luo (NeurIPS 2019): implicit regularization in deep matrix factorization
#
# Gradient descent on a depth-L factorization W_{L:1} = W_L ⋯ W_1 from a small initialisation
# completes a low-rank matrix from few of its entries (or few Gaussian measurements) — and
# the deeper the factorization, the fewer observations it needs. Depth 1 (the matrix
# itself) changes only what it observes; the minimum-nuclear-norm solution, the convex
# answer that depth 2 was conjectured to find, is set beside them.
#
# The full study is the paper's completion problem: a random 100 × 100 target of rank 5,
# 2000..5000 of its 10,000 entries observed, depths 1..4, three seeds (about 12 minutes on
# 2 CPU cores); and sensing at 2000 Gaussian measurements, which takes hours there (each
# step reads 160 MB of measurements per run, and plain GD's last phase is slow; an
# interrupted run resumes from `OUT/sweeps/`). `PROBLEMS=completion` runs the first alone.
# Set `ZASJAX_QUICK=1` for the smoke size (20 × 20, rank 2, completion only; under a minute).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import dmf

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/dmf-quick" if QUICK else "runs/dmf")

# %%
cfg = dmf.Config.quick() if QUICK else dmf.Config()
if os.environ.get("PROBLEMS"):
    cfg = dmf.Config.from_options(cfg, {"problems": tuple(os.environ["PROBLEMS"].split(","))})
summary = reproduce.run(cfg, OUT)

# %% [markdown]
# Median reconstruction error ‖W − Φ‖_F/‖Φ‖_F and effective rank of the solution, per method
# and number of observations (the target's effective rank is printed first):

# %%
print(f"effective rank of the targets: {summary['target_effective_rank']:.2f}")
for e in summary["results"]:
    print(f"{e['problem']:>10} {e['method']:>12} N={e['observations']:>5}  error "
          f"{e['reconstruction_error']:.3g}  effective rank {e['effective_rank']:.3g}")
print(summary["claims"])

# %% [markdown]
# ![reconstruction error and effective rank](../runs/dmf/dmf.png)
