# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Razin & Cohen (NeurIPS 2020): implicit regularization may not be explainable by norms
#
# Complete the 2 × 2 matrix [[?, 1], [1, 0]]. Every solution has determinant −1; started
# from det W_{L:1}(0) > 0, gradient descent on a deep factorization stays on the positive
# side (on a balanced factorization the singular values cannot reach 0), so it can fit the
# three observations only in the limit |W_11| → ∞: the loss goes to 0 while every norm and
# quasi-norm grows without bound and the effective rank falls to 1. Rank, not norm, is
# what the dynamics minimise.
#
# We run depths 2, 3, 4 from iid Gaussian layers (their default) and from balanced layers
# of the same size, three init scales each, with their step and budget (5·10⁶ steps,
# a few CPU minutes), and check the claim run by run; a run that left the det > 0 branch
# is certified by the bound |W_11| ≥ (1 − √(2R))²/√(2R) failing. Set `ZASJAX_QUICK=1` for
# the smoke size (depths 2 and 3, 2·10⁵ steps).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import razin

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/razin-quick" if QUICK else "runs/razin")

# %%
cfg = razin.Config.quick() if QUICK else razin.Config()
summary = reproduce.run(cfg, OUT)

# %%
for e in summary["results"]:
    h = e["at_horizon"]
    print(f"{e['init']:>8} L={e['depth']} α={e['init_std']:g}: stop at step "
          f"{e['stop_step']}, |W11| {h['unobserved_abs']:.3g}, effective rank "
          f"{h['effective_rank']:.4f}, det > 0: {e['det_positive']}, claim {e['claim_holds']}")
print(summary["branches"])

# %% [markdown]
# ![unobserved entry, norms and effective rank](../runs/razin/razin.png)
