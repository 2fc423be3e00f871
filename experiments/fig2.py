# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Figure 2: ZAS iterations to 1e-10 against depth, to L = 2^20
#
# Wu, Wang & Ma (NeurIPS 2019), Figure 2: gradient descent from the zero-asymmetric
# initialisation, η tuned per depth, float64. The paper reads iterations ∝ L^γ with γ ≈ 1/2
# for Φ = −I and γ ≈ 1 for a Gaussian Φ. From ZAS the run is d scalar pairs (the exact mode
# engine, `zasjax._modes`), so every depth 1..2^20 costs O(d) a step; the full network
# reruns the chosen η at small depths and must agree. The summary gives the local exponent
# per octave; REPRODUCTION.md explains where it heads (½, from below; 1 while L s_min² ≲ 1).
#
# Set `ZASJAX_QUICK=1` for the CI size (d = 1 and 2, depths 1..64, ~10 s on 2 CPU cores).
# The full size runs all four cases, d ≤ 2 at two depths per octave to 2^20, d = 100 at one
# per octave (Gaussian d = 100 needs ~10^7 iterations a seed at 2^20: see REPRODUCTION.md).

# %%
import os

import zasjax
from zasjax import reproduce
from zasjax.reproduce import fig2

zasjax.use_cpu_loop_kernels()  # XLA:CPU: a layer loop as one kernel; before JAX computes

QUICK = os.environ.get("ZASJAX_QUICK") == "1"
OUT = os.environ.get("ZASJAX_OUT", "runs/fig2-quick" if QUICK else "runs/fig2")

# %%
cfg = fig2.Config.quick() if QUICK else fig2.Config()
summary = reproduce.run(cfg, OUT)

# %%
for case in summary["settings"]["cases"]:
    e = summary[case]
    print(f"{case}: γ = {e['gamma']:.3f} on L in {e['fit_depths'][0]}..{e['fit_depths'][-1]}; "
          f"last two octaves {e['gamma_last_two_octaves']:.3f}; "
          f"{e['cross_check']['engine']} engine agrees on "
          f"{e['cross_check']['agree']}/{e['cross_check']['compared']}")
    for row, o in zip(e["table"], [None, *e["local_gamma"]]):
        print(f"   L={row['depth']:>8}  η·L·s_max²={row['eta_L_smax2']:.3g}  "
              f"η·λ_max={row['eta_lambda']:.3g}  iterations={row['iterations']}"
              + (f"  γ_loc={o['gamma']:.3f}" if o else ""))

# %% [markdown]
# ![iterations and local exponent vs depth](../runs/fig2/fig2.png)
