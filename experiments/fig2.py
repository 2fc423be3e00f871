# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Figure 2: ZAS iterations to 1e-10 against depth
#
# Wu, Wang & Ma (NeurIPS 2019), Figure 2: gradient descent from the zero-asymmetric
# initialisation, η tuned per depth, float64. The paper reads iterations ∝ L^γ with γ ≈ 1/2
# for Φ = −I and γ ≈ 1 for a Gaussian Φ. η = 1 solves any target in one step from ZAS
# (W_L ← Φ), so γ is fitted with η ≤ 1/2, on the depths whose best η lies inside the grid.
#
# Set `ZASJAX_QUICK=1` for the CI size (d = 1 and 2, depths 1..64, ~30 s on 2 CPU cores).
# The full size (depths to 4096 for d ≤ 2, to 1024 for d = 100, 5 seeds) is a GPU job.

# %%
import os

from zasjax import reproduce
from zasjax.reproduce import fig2

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/fig2-quick" if QUICK else "runs/fig2")

# %%
cfg = fig2.Config.quick() if QUICK else fig2.Config()
summary = reproduce.run(cfg, OUT)

# %%
for case in summary["settings"]["cases"]:
    e = summary[case]
    print(f"{case}: γ = {e['gamma']:.3f} on L in {e['fit_depths']} "
          f"(all depths: {e['gamma_all_depths']:.3f})")
    for row in e["table"]:
        print(f"   L={row['depth']:>5}  η={row['lr']:.3g}  iterations={row['iterations']}")
    for t in e["investigation"]["gamma_vs_lr_top"]:
        print(f"   grid top {t['lr_top']:<6g} γ(all)={t['gamma_all_depths']:.3f}  "
              f"γ(interior)={t['gamma_interior']:.3f}")

# %% [markdown]
# ![iterations vs depth](../runs/fig2/fig2.png)
