# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Figure 1: the landscape of L = 2, d = 1, Φ = −1 and two gradient-descent paths
#
# Wu, Wang & Ma (NeurIPS 2019), Section 3. With one weight per layer the loss is
# R(w₁, w₂) = ½(w₂w₁ + 1)²: a saddle at the origin and global minima on the hyperbola
# w₂w₁ = −1. Gradient descent (η = 0.1) from the near-identity point (0.999, 1.001) has to
# drive the product w₂w₁ from ≈ 1 through 0 to −1 and so passes right by the saddle; from
# ZAS (1, 0) it slides straight down to the minimum. Gradient flow conserves w₁² − w₂²;
# gradient descent multiplies it by 1 − η²(w₂w₁ + 1)² per step, which the study checks.
#
# Set `ZASJAX_QUICK=1` for the smoke size (a smaller budget; both paths converge anyway).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import fig1

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/fig1-quick" if QUICK else "runs/fig1")

# %%
cfg = fig1.Config.quick() if QUICK else fig1.Config()
summary = reproduce.run(cfg, OUT)

# %% [markdown]
# Iterations to R ≤ 10⁻¹⁰, where each path ends, and the near-identity path's stay on the
# saddle plateau (|R − ½| ≤ 0.025 with ‖∇R‖ ≤ 0.1).

# %%
print(f"η = {summary['lr']}: near-identity {summary['iterations_near_identity']} iterations, "
      f"ZAS {summary['iterations_zas']} iterations")
for name, p in summary["paths"].items():
    print(f"{name:>13}: end (w1, w2) = ({p['end'][0]:+.4f}, {p['end'][1]:+.4f}), "
          f"flow end ({p['flow_end'][0]:+.4f}, {p['flow_end'][1]:+.4f}), "
          f"w1²−w2²: {p['invariant_start']:+.4f} -> {p['invariant_end']:+.4f} "
          f"(predicted {p['invariant_end_predicted']:+.4f}), "
          f"closest to saddle {p['closest_to_saddle']:.3f}, plateau {p['plateau_length']} its")

# %% [markdown]
# ![landscape with both paths](../runs/fig1/fig1.png)
