"""`zasjax flow`: the gradient flow (diffrax) beside gradient descent at several step sizes.

Writes, into `--out DIR`:

* `flow.csv`: `t, loss_flow, loss_gd_<lr>…` at `--n-save` equally spaced t ∈ [0, t_max]
  (GD at step round(t/η));
* `flow_summary.json`: Theorem 4.1's ratio max_t R(t)/(e^{−2t}R(0)), the flow's invariant
  drift, the GD-to-flow gaps and their log-log slope in η, and the run's settings;
* `flow.png`: R(t) against e^{−2t}R(0), with the GD curves on top (log-y).

The options are the fields of `zasjax.FlowSpec`; every input is checked before anything is
computed or written.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from .._compare import compare_gd_flow, compare_gd_flow_modes
from .._flow import FlowSpec
from .._inits import make_init
from .._options import add_options, given
from .._run import STATUS_NAMES
from .._sharpness import zas_minimum_sharpness
from .._store import check_folder, write_csv, write_json
from .._targets import load_target, make_target
from .._theory import flow_rate_ratios, zas_lr_bound

#: ODE tolerances when none are given: tight in float64, what float32 can resolve otherwise.
DEFAULT_TOLERANCES = {"float64": (1e-8, 1e-10), "float32": (1e-5, 1e-7)}


HELP = "gradient flow via diffrax, beside GD"
DESCRIPTION = "Solve dW/dt = -∇R(W) with diffrax and compare GD at t = ηk."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `flow` options: the fields of `FlowSpec`."""
    add_options(parser, FlowSpec)


def prepare(args: argparse.Namespace):
    """Every check, before any work or file (ValueError: a usage error)."""
    spec = FlowSpec(**given(args, FlowSpec))
    check_folder(spec.out)
    phi = None if spec.target_file is None else load_target(spec.target_file,
                                                            (spec.dim, spec.dim))
    return spec, phi


def execute(job) -> int:
    spec, phi = job
    if spec.dtype == "float64":  # the command's process-wide setting
        jax.config.update("jax_enable_x64", True)
    run(spec, phi)
    return 0


def _warn_unstable(spec, phi, lrs, cmp) -> None:
    """Learning rates GD cannot follow the flow with: they diverged, or (from ZAS) exceed
    2/λ_max at the solution the flow reaches, so their gaps say nothing about O(η)."""
    bad = {f"{lr:g}" for lr, v in zip(lrs, cmp.gd_status) if STATUS_NAMES[int(v)] == "diverged"}
    if spec.init == "zas":
        s_max = float(np.linalg.svd(np.asarray(phi, float), compute_uv=False)[0])
        limit = 2.0 / float(zas_minimum_sharpness(s_max, spec.depth))
        bad |= {f"{lr:g}" for lr in lrs if lr > limit}
    if bad:
        where = f" (2/λ_max at the solution is {limit:.3g})" if spec.init == "zas" else ""
        print(f"zasjax flow: warning: GD at η = {', '.join(sorted(bad))} is beyond its "
              f"stability limit{where}; those gaps to the flow say nothing about O(η)",
              file=sys.stderr)


def run(spec: FlowSpec, phi_file: np.ndarray | None = None) -> dict:
    """Run `spec` into the folder `spec.out`; returns the summary also written to
    flow_summary.json. `phi_file`: the matrix of `spec.target_file`, read already."""
    out = spec.out
    if spec.target_file is not None and phi_file is None:
        phi_file = load_target(spec.target_file, (spec.dim, spec.dim))
    if spec.dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError("dtype float64 needs JAX's 64-bit mode: call "
                         "jax.config.update('jax_enable_x64', True) first (--x64 does)")
    dtype = jnp.dtype(spec.dtype) if spec.dtype else jnp.dtype(
        jax.dtypes.canonicalize_dtype(float))
    dname = jnp.dtype(dtype).name
    rtol = spec.rtol if spec.rtol is not None else DEFAULT_TOLERANCES[dname][0]
    atol = spec.atol if spec.atol is not None else DEFAULT_TOLERANCES[dname][1]
    lrs = list(spec.lrs)

    k_init, k_target = jax.random.split(jax.random.key(spec.seed))
    d, L = spec.dim, spec.depth
    if phi_file is not None:
        phi = jnp.asarray(phi_file, dtype)
        target_name = os.fspath(spec.target_file)
    else:
        phi = make_target(spec.target, k_target, (d, d), dtype)
        target_name = spec.target
    ts = np.linspace(0.0, spec.t_max, spec.n_save)
    if spec.engine == "modes":
        cmp = compare_gd_flow_modes(phi, L, lrs, spec.t_max, ts=ts, rtol=rtol, atol=atol)
    else:
        W0 = make_init(spec.init, k_init, (d,) * (L + 1), dtype=dtype)
        cmp = compare_gd_flow(W0, phi, lrs, spec.t_max, ts=ts, rtol=rtol, atol=atol)
    _warn_unstable(spec, phi, lrs, cmp)
    flow = cmp.flow
    loss_flow = np.asarray(flow.losses, float)
    ratios = np.asarray(flow_rate_ratios(jnp.asarray(ts, dtype), flow.losses), float)
    bound = loss_flow[0] * np.exp(-2.0 * ts)

    labels = [f"{lr:g}" for lr in lrs]
    steps = [np.rint(ts / lr).astype(int) for lr in lrs]
    gd_at_ts = [cmp.gd_losses[i][steps[i]] for i in range(len(lrs))]
    columns = ["t", "loss_flow"] + [f"loss_gd_{s}" for s in labels]
    rows = [{"t": float(t), "loss_flow": float(loss_flow[j]),
             **{f"loss_gd_{s}": float(gd_at_ts[i][j]) for i, s in enumerate(labels)}}
            for j, t in enumerate(ts)]

    os.makedirs(out, exist_ok=True)
    files = {name: os.path.join(out, name) for name in ("flow.csv", "flow_summary.json",
                                                        "flow.png")}
    summary = {
        "max_ratio_to_exp_bound": float(np.nanmax(ratios)),
        "max_invariant_drift_flow": float(np.max(np.asarray(flow.invariant_drift))),
        "gd_gap_slope": cmp.slope,
        "gd_gaps": dict(zip(labels, map(float, cmp.gaps))),
        "gd_invariant_drift": dict(zip(labels, map(float, cmp.gd_drifts))),
        "gd_drift_slope": cmp.drift_slope,
        "gd_status": {s: STATUS_NAMES[int(v)] for s, v in zip(labels, cmp.gd_status)},
        "flow_ok": bool(flow.ok),
        "flow_solver_steps": int(flow.n_steps),
        "loss0": float(loss_flow[0]),
        "final_loss_flow": float(loss_flow[-1]),
        "theorem_4_1_applies": spec.init == "zas",
        "theorem_4_3_lr_bound": float(zas_lr_bound(L, phi)),
        "engine": spec.engine,
        "config": {"init": spec.init, "target": target_name, "dim": d, "depth": L,
                   "t_max": spec.t_max, "n_save": spec.n_save, "lrs": lrs, "seed": spec.seed,
                   "rtol": rtol, "atol": atol, "dtype": dname, "solver": "Tsit5+PID"},
        "files": files,
    }
    write_csv(files["flow.csv"], rows, columns)
    from .._plots import flow_vs_gd

    flow_vs_gd(files["flow.png"], ts, loss_flow, bound,
               {f"η={s}": (lr * np.arange(len(cmp.gd_losses[i])), cmp.gd_losses[i])
                for i, (s, lr) in enumerate(zip(labels, lrs))},
               title=f"{spec.init}, Φ={os.path.basename(target_name)}, d={d}, L={L}")
    write_json(files["flow_summary.json"], summary)
    return summary


__all__ = ["add_arguments", "prepare", "execute", "run", "DEFAULT_TOLERANCES"]
